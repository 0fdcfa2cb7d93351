"""The frozen foundation encoder wrapper: nnU-Net patch in, list of feature maps out.

The wrapper owns the input convention of each family (intensity mapping, resize, pixel normalisation; see
``preprocessing.py`` and docs/design.md) so the fused network can hand it nnU-Net's normalised patches directly.
It keeps the wrapped image encoder frozen (no grad, eval mode) whatever the parent does, runs it in the precision
its spec records (``precision.py``), in micro-batches that fit a memory budget, and at inference reuses the
features of a tile it has seen with the same frozen weights (``feature_cache.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .architectures import BOWANG_MEDSAM2
from .feature_cache import DEFAULT_BUDGET_BYTES, FeatureCache
from .precision import encoder_autocast, encoder_dtype
from .spec import FoundationSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MEMORY_BUDGET = 4 * 2**30  # bytes of encoder activations per micro-batch (see bytes_per_image)


def window_scale(images: Tensor, window: tuple[float, float]) -> Tensor:
    """Map nnU-Net-normalised intensities linearly to [0, 1]: ``low`` -> 0, ``high`` -> 1, clipped outside."""
    low, high = window
    return ((images - low) / (high - low)).clamp(0.0, 1.0)


def resized_extent(height: int, width: int, side: int, multiple: int) -> tuple[int, int]:
    """Height and width of a (height, width) patch inside a side x side input, longest side resized to ``side``.

    The shorter side is rounded to a multiple of ``multiple`` (the encoder's coarsest feature stride, 16), so
    every feature level covers the image region with whole cells and cropping the features back is exact; the
    aspect ratio changes by at most multiple / 2 pixels of ``side``.
    """
    scale = side / max(height, width)

    def fit(length: int) -> int:
        return min(side, max(multiple, int(length * scale / multiple + 0.5) * multiple))

    return fit(height), fit(width)


class FoundationEncoder(nn.Module):
    """Frozen foundation image encoder: nnU-Net-normalised 2D patch -> list of feature maps.

    Only channel 0 of the patch is used (the foundation models were trained on single grey images replicated
    to RGB). Subclasses build ``image_encoder`` and implement ``encode_images`` and ``bytes_per_image``.
    Feature maps cover exactly the patch: with the aspect-keeping resize the padded part is cropped off, so a
    (B, C, H, W) patch gives the maps of :meth:`feature_grids`.

    ``feature_cache`` (a plain attribute, not module state) is used only under ``torch.inference_mode`` (what
    nnU-Net's predictor runs in), where the same tile comes back once per fold of an ensemble.
    """

    def __init__(
        self,
        spec: FoundationSpec,
        image_encoder: nn.Module,
        feature_channels: tuple[int, ...],
        feature_strides: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.spec = spec
        self.image_encoder = image_encoder
        self.feature_channels = tuple(feature_channels)
        self.feature_strides = tuple(feature_strides)
        self.memory_budget = DEFAULT_MEMORY_BUDGET
        self.feature_cache = FeatureCache(DEFAULT_BUDGET_BYTES)
        for parameter in self.image_encoder.parameters():
            parameter.requires_grad_(False)
        use_imagenet = spec.family == BOWANG_MEDSAM2
        mean = IMAGENET_MEAN if use_imagenet else (0.0, 0.0, 0.0)
        std = IMAGENET_STD if use_imagenet else (1.0, 1.0, 1.0)
        # Not persistent: they follow from the spec, so fused-network checkpoints need not carry them.
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.image_encoder.eval()

    def train(self, mode: bool = True) -> FoundationEncoder:
        """Stay in eval mode even while the parent network trains: the encoder is frozen."""
        return super().train(False)

    def encode_images(self, images: Tensor) -> list[Tensor]:
        """Run the wrapped image encoder on preprocessed (B, 3, S, S) images."""
        raise NotImplementedError

    def bytes_per_image(self, dtype: torch.dtype | None) -> int:
        """Estimated peak activation bytes of one image through the encoder (``dtype`` None: float32)."""
        raise NotImplementedError

    def micro_batch_size(self, dtype: torch.dtype | None) -> int:
        """How many images one encoder call takes so that its activations stay within ``memory_budget``."""
        return max(1, self.memory_budget // max(1, self.bytes_per_image(dtype)))

    def checkpoint_shapes(self) -> dict[str, torch.Size]:
        """Key -> shape that a checkpoint's ``image_encoder.*`` entries must have (prefix stripped)."""
        return {key: value.shape for key, value in self.image_encoder.state_dict().items()}

    def adapt_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Turn a validated checkpoint state dict into one that loads into ``image_encoder`` as built."""
        return state_dict

    def valid_extent(self, height: int, width: int) -> tuple[int, int]:
        """The part of the encoder input (rows, columns from the top left) that holds the patch."""
        return resized_extent(height, width, self.spec.input_size, max(self.feature_strides))

    def feature_grids(self, height: int, width: int) -> list[tuple[int, int]]:
        """(rows, columns) of every feature level for a (height, width) patch, after the crop to the patch."""
        rows, cols = self.valid_extent(height, width)
        return [(rows // stride, cols // stride) for stride in self.feature_strides]

    def preprocess(self, x: Tensor) -> Tensor:
        """Channel 0 -> [0, 1] by the fixed window -> resize (+ pad) -> family normalisation -> 3 channels at
        input_size x input_size."""
        if x.ndim != 4:
            raise ValueError(f"FoundationEncoder expects a (B, C, H, W) batch, got shape {tuple(x.shape)}.")
        if self.spec.intensity_window is None:
            raise ValueError(f"The foundation spec {self.spec} has no intensity window; give it the data set's "
                             "window (foundation.preprocessing.with_plans_window) before running the encoder.")
        images = window_scale(x[:, :1].float(), self.spec.intensity_window)
        side = self.spec.input_size
        extent = self.valid_extent(*images.shape[-2:])
        if images.shape[-2:] != extent:  # antialiasing only where it shrinks (it is a no-op filter upwards)
            shrinks = extent[0] < images.shape[-2] or extent[1] < images.shape[-1]
            images = F.interpolate(images, size=extent, mode="bilinear", align_corners=False, antialias=shrinks)
            images = images.clamp(0.0, 1.0)
        images = F.pad(images, (0, side - extent[1], 0, side - extent[0]))  # black below and right
        # The per-channel affine normalisation commutes with the replication: normalise after expanding.
        return (images.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std

    def crop_to_patch(self, features: list[Tensor], height: int, width: int) -> list[Tensor]:
        """Drop the feature cells that see only padding (none for a square patch)."""
        grids = self.feature_grids(height, width)
        return [f[..., :rows, :cols] for f, (rows, cols) in zip(features, grids, strict=True)]

    def forward(self, x: Tensor, levels: tuple[int, ...] | None = None) -> list[Tensor]:
        """The feature maps of ``levels`` (default: all), in that order, in ``x``'s dtype."""
        if x.ndim != 4:
            raise ValueError(f"FoundationEncoder expects a (B, C, H, W) batch, got shape {tuple(x.shape)}.")
        levels = tuple(range(len(self.feature_strides))) if levels is None else tuple(levels)
        if torch.is_inference_mode_enabled() and self.feature_cache.budget_bytes > 0:
            return self._reused_features(x, levels)
        return self.compute_features(x, levels)

    def compute_features(self, x: Tensor, levels: tuple[int, ...]) -> list[Tensor]:
        """Run the frozen encoder on ``x`` in micro-batches, in the recorded precision."""
        dtype = encoder_dtype(self.spec.precision, x.device)
        parts = []
        with torch.no_grad():
            for chunk in x.split(self.micro_batch_size(dtype)):
                with encoder_autocast(dtype, x.device):  # preprocessing in float32, whatever encloses it
                    features = self.crop_to_patch(self.encode_images(self.preprocess(chunk)), *x.shape[-2:])
                parts.append([features[level] for level in levels])
        features = parts[0] if len(parts) == 1 else [torch.cat(level) for level in zip(*parts, strict=True)]
        return [feature.to(x.dtype) for feature in features]

    @torch.compiler.disable
    def _reused_features(self, x: Tensor, levels: tuple[int, ...]) -> list[Tensor]:
        """Features image by image from the cache; the images it lacks computed together and stored."""
        cache = self.feature_cache
        cache.check_weights(list(self.image_encoder.parameters()) + list(self.image_encoder.buffers()))
        context = f"{encoder_dtype(self.spec.precision, x.device)}|{x.device}|{levels}"
        keys = [cache.key(image, context) for image in x.split(1)]
        found = [cache.lookup(key, x.device) for key in keys]
        missing = [i for i, features in enumerate(found) if features is None]
        if missing:
            computed = self.compute_features(x[missing], levels)
            for row, i in enumerate(missing):
                found[i] = [level[row:row + 1] for level in computed]
                cache.store(keys[i], found[i])
        return [torch.cat(level) for level in zip(*found, strict=True)]

    def extra_repr(self) -> str:
        return (
            f"family={self.spec.family}, size={self.spec.size}, input_size={self.spec.input_size}, "
            f"intensity_window={self.spec.intensity_window}, precision={self.spec.precision}, "
            f"feature_channels={self.feature_channels}, feature_strides={self.feature_strides}"
        )
