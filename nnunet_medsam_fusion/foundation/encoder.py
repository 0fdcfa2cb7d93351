"""The frozen foundation encoder wrapper: nnU-Net patch in, list of feature maps out.

The wrapper owns the intensity convention of each family so the fused network can hand it nnU-Net's z-scored
patches directly, and it keeps the wrapped image encoder frozen (no grad, eval mode) whatever the parent does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .architectures import BOWANG_MEDSAM2
from .spec import FoundationSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def min_max_scale(images: Tensor) -> Tensor:
    """Scale each image (B, 1, H, W) to [0, 1]; a constant image becomes all zeros instead of NaN."""
    flat = images.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1, 1) - low
    # A constant image has span 0 and numerator 0: dividing by the smallest positive float gives exactly 0.
    return (images - low) / span.clamp_min(torch.finfo(images.dtype).tiny)


class FoundationEncoder(nn.Module):
    """Frozen foundation image encoder: nnU-Net-normalised 2D patch -> list of feature maps.

    Only channel 0 of the patch is used (the foundation models were trained on single grey images replicated
    to RGB). Subclasses build ``image_encoder`` and implement ``encode_images``.
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

    def checkpoint_shapes(self) -> dict[str, torch.Size]:
        """Key -> shape that a checkpoint's ``image_encoder.*`` entries must have (prefix stripped)."""
        return {key: value.shape for key, value in self.image_encoder.state_dict().items()}

    def adapt_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Turn a validated checkpoint state dict into one that loads into ``image_encoder`` as built."""
        return state_dict

    def preprocess(self, x: Tensor) -> Tensor:
        """Channel 0 -> per-image [0, 1] -> family normalisation -> 3 channels at input_size x input_size."""
        if x.ndim != 4:
            raise ValueError(f"FoundationEncoder expects a (B, C, H, W) batch, got shape {tuple(x.shape)}.")
        images = min_max_scale(x[:, :1].float())
        side = self.spec.input_size
        if images.shape[-2:] != (side, side):
            images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False)
        # Bilinear resizing and the per-channel affine normalisation commute: resize the single channel first.
        return (images.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std

    def forward(self, x: Tensor) -> list[Tensor]:
        with torch.no_grad():
            images = self.preprocess(x)
            # bfloat16 on CUDA (SAM's activations overflow float16); plain float32 elsewhere.
            device_type = "cuda" if images.is_cuda else "cpu"
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=images.is_cuda):
                features = self.encode_images(images)
        return [feature.to(x.dtype) for feature in features]

    def extra_repr(self) -> str:
        return (
            f"family={self.spec.family}, size={self.spec.size}, input_size={self.spec.input_size}, "
            f"feature_channels={self.feature_channels}, feature_strides={self.feature_strides}"
        )
