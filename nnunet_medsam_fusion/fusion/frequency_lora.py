"""FrequencyLoRA: a learnable spectral filter plus a LoRA bottleneck, adapting frozen foundation features.

The paper names a frequency-domain LoRA applied to the MedSAM/MedSAM2 features before fusion but gives no
formula; the form below is our reading of it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_SPECTRAL_SIZE = (9, 9)


class FrequencyLoRA(nn.Module):
    """Residual adapter ``y = x + irfft2((G - 1) * rfft2(x)) + (alpha / rank) * up(down(x))``.

    Spectral branch: ``G`` is a real, per-channel gain over spatial frequency, so it can boost or damp
    frequency bands (e.g. the high frequencies that carry thin vessels) without shifting features in
    space. ``G`` is stored on a fixed ``spectral_size`` grid that spans the quadrant of absolute
    frequencies ``|f_h|, f_w`` from DC to Nyquist on both axes (corners aligned), and is resized
    bilinearly to the ``(H // 2 + 1, W // 2 + 1)`` quadrant of the actual input at run time, then
    mirrored to negative ``f_h``. This makes the same parameters valid for any feature size (the
    foundation feature size follows the encoder input size) and keeps ``G(-f) = G(f)``, so the
    filter is a real, zero-phase linear filter. The branch is written as ``(G - 1)`` so that at
    ``G = 1`` it is exactly zero rather than an FFT round trip.

    Low-rank branch: 1x1 convolutions ``channels -> rank -> channels`` without bias, scaled by
    ``alpha / rank`` as in LoRA. ``down`` is Kaiming-normal (linear gain, so ``down(x)`` keeps the
    variance of ``x``); ``up`` starts at zero.

    At initialisation (``G = 1``, ``up = 0``) the module is exactly the identity, so adding it to a
    pretrained pipeline changes nothing until training moves it. The FFT runs in float32
    (``norm="ortho"``) and the result is cast back to the input dtype: half-precision FFTs on CUDA only
    accept power-of-two sizes, which foundation feature maps need not have.

    Args:
        channels: feature channels ``C`` of the input ``(B, C, H, W)``.
        rank: bottleneck width, ``1 <= rank <= channels``.
        alpha: LoRA scale numerator; ``None`` means ``rank`` (scale 1).
        spectral_size: ``(rows, cols)`` of the gain grid over ``(|f_h|, f_w)``; ``None`` means (9, 9),
            the exact frequency quadrant of a 16x16 map.
    """

    def __init__(
        self,
        channels: int,
        rank: int = 8,
        alpha: float | None = None,
        spectral_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(
                f"FrequencyLoRA needs channels >= 1, got {channels}; pass the feature channel count."
            )
        if not 1 <= rank <= channels:
            raise ValueError(
                f"FrequencyLoRA rank must be in 1..channels ({channels}), got {rank}; "
                f"pass a rank between 1 and {channels}."
            )
        alpha = float(rank) if alpha is None else float(alpha)
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(
                f"FrequencyLoRA alpha must be a positive number, got {alpha}; pass e.g. alpha=rank."
            )
        spectral_size = DEFAULT_SPECTRAL_SIZE if spectral_size is None else tuple(spectral_size)
        if len(spectral_size) != 2 or min(spectral_size) < 1:
            raise ValueError(
                f"FrequencyLoRA spectral_size must be two sizes >= 1, got {spectral_size}; pass e.g. (9, 9)."
            )

        self.channels = channels
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        self.spectral_size = (int(spectral_size[0]), int(spectral_size[1]))

        self.gain = nn.Parameter(torch.ones(channels, *self.spectral_size))
        self.lora_down = nn.Conv2d(channels, rank, kernel_size=1, bias=False)
        self.lora_up = nn.Conv2d(rank, channels, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.lora_down.weight, nonlinearity="linear")
        nn.init.zeros_(self.lora_up.weight)

    def spectral_gain(self, height: int, width: int) -> Tensor:
        """Float32 gain ``G`` on the ``(height, width // 2 + 1)`` rfft2 grid of a ``height x width`` map."""
        quadrant = F.interpolate(
            self.gain.float().unsqueeze(0),
            size=(height // 2 + 1, width // 2 + 1),
            mode="bilinear",
            align_corners=True,
        ).squeeze(0)
        # Row k of the rfft2 grid holds frequency f_h = k for k <= height // 2, else k - height.
        rows = torch.arange(height, device=quadrant.device)
        return quadrant[:, torch.minimum(rows, height - rows)]

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"FrequencyLoRA expects (B, {self.channels}, H, W), got shape {tuple(x.shape)}; "
                "build it with channels equal to the feature map's channel count."
            )
        height, width = x.shape[-2:]
        spectrum = torch.fft.rfft2(x.float(), norm="ortho")
        spectral_delta = torch.fft.irfft2(
            spectrum * (self.spectral_gain(height, width) - 1.0), s=(height, width), norm="ortho"
        )
        low_rank = self.lora_up(self.lora_down(x)) * self.scale
        return x + spectral_delta.to(x.dtype) + low_rank.to(x.dtype)
