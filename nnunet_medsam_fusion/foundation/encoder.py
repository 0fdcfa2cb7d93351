"""The frozen foundation encoder wrapper: nnU-Net patch in, list of feature maps out.

The wrapper owns the input convention of each family (intensity mapping, resize, pixel normalisation; see
``preprocessing.py`` and docs/design.md) so the fused network can hand it nnU-Net's normalised patches directly.
It keeps the wrapped image encoder frozen (no grad, eval mode) whatever the parent does, runs it in bf16 where the
hardware computes bf16 natively (``precision.py``), and in micro-batches that fit a memory budget.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .architectures import BOWANG_MEDSAM2
from .precision import encoder_dtype
from .spec import STRETCH, FoundationSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MEMORY_BUDGET = 4 * 2**30  # bytes of encoder activations per micro-batch (see bytes_per_image)


def min_max_scale(images: Tensor) -> Tensor:
    """Scale each image (B, 1, H, W) to [0, 1]; a constant image becomes all zeros instead of NaN."""
    flat = images.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1, 1) - low
    # A constant image has span 0 and numerator 0: dividing by the smallest positive float gives exactly 0.
    return (images - low) / span.clamp_min(torch.finfo(images.dtype).tiny)


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
    (B, C, H, W) patch gives maps of about (H, W) / stride * input_size / max(H, W).
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
        side = self.spec.input_size
        if self.spec.resize == STRETCH:
            return side, side
        return resized_extent(height, width, side, max(self.feature_strides))

    def preprocess(self, x: Tensor) -> Tensor:
        """Channel 0 -> [0, 1] (fixed window, or per-patch min-max) -> resize (+ pad) -> family normalisation
        -> 3 channels at input_size x input_size."""
        if x.ndim != 4:
            raise ValueError(f"FoundationEncoder expects a (B, C, H, W) batch, got shape {tuple(x.shape)}.")
        grey = x[:, :1].float()
        window = self.spec.intensity_window
        images = min_max_scale(grey) if window is None else window_scale(grey, window)
        side = self.spec.input_size
        if self.spec.resize == STRETCH:  # the legacy path, exactly as model folders before the window ran it
            if images.shape[-2:] != (side, side):
                images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
        else:
            extent = self.valid_extent(*images.shape[-2:])
            if images.shape[-2:] != extent:  # antialiasing only where it shrinks (it is a no-op filter upwards)
                shrinks = extent[0] < images.shape[-2] or extent[1] < images.shape[-1]
                images = F.interpolate(images, size=extent, mode="bilinear", align_corners=False, antialias=shrinks)
                images = images.clamp(0.0, 1.0)
            images = F.pad(images, (0, side - extent[1], 0, side - extent[0]))  # black below and right
        # The per-channel affine normalisation commutes with the replication: normalise after expanding.
        return (images.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std

    def crop_to_patch(self, features: list[Tensor], height: int, width: int) -> list[Tensor]:
        """Drop the feature cells that see only padding (none for a square patch or the stretch resize)."""
        rows, cols = self.valid_extent(height, width)
        return [f[..., : rows // s, : cols // s] for f, s in zip(features, self.feature_strides, strict=True)]

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.ndim != 4:
            raise ValueError(f"FoundationEncoder expects a (B, C, H, W) batch, got shape {tuple(x.shape)}.")
        dtype = encoder_dtype(x.device)
        parts = []
        with torch.no_grad():
            for chunk in x.split(self.micro_batch_size(dtype)):
                images = self.preprocess(chunk)
                precision = nullcontext() if dtype is None else torch.autocast(x.device.type, dtype=dtype)
                with precision:
                    parts.append(self.crop_to_patch(self.encode_images(images), *x.shape[-2:]))
        features = parts[0] if len(parts) == 1 else [torch.cat(level) for level in zip(*parts, strict=True)]
        return [feature.to(x.dtype) for feature in features]

    def extra_repr(self) -> str:
        return (
            f"family={self.spec.family}, size={self.spec.size}, input_size={self.spec.input_size}, "
            f"intensity_window={self.spec.intensity_window}, resize={self.spec.resize}, "
            f"feature_channels={self.feature_channels}, feature_strides={self.feature_strides}"
        )
