"""Which slices of a 3D patch the frozen 2D encoder sees, and how their features fill the skip's depth.

The 2D encoder runs on slices along the patch's first spatial axis: the axis nnU-Net's ``2d`` configuration
slices (for TOF-MRA the axial slices; nnU-Net puts the out-of-plane axis first). ``step`` > 1 encodes about every
``step``-th slice, centred in equal bins of the patch depth and symmetric under reversal (so a patch mirrored
along the slice axis encodes the same slices; only the middle one of an odd number on an even depth has no
mirror image). The features of the encoded slices are then interpolated
linearly, at their true positions, to the centre of every depth cell of the skip they are fused into.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def slice_positions(depth: int, step: int) -> list[int]:
    """Indices of the slices to encode: ``ceil(depth / step)`` bin centres, rounded symmetrically."""
    if depth < 1 or step < 1:
        raise ValueError(f"slice_positions needs depth >= 1 and step >= 1, got depth={depth}, step={step}.")
    count = math.ceil(depth / step)
    first_half = [math.floor((i + 0.5) * depth / count - 0.5 + 0.5) for i in range(count // 2)]
    middle = [math.floor((depth - 1) / 2)] if count % 2 else []
    return first_half + middle + [depth - 1 - p for p in reversed(first_half)]


def depth_weights(positions: list[int], depth: int, cells: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> Tensor:
    """(cells, len(positions)) matrix: linear interpolation from slices at ``positions`` (of ``depth``) to the
    centres ``(j + 0.5) * depth / cells - 0.5`` of ``cells`` equal depth cells; constant beyond the ends."""
    source = torch.tensor(positions, dtype=torch.float64)
    target = (torch.arange(cells, dtype=torch.float64) + 0.5) * depth / cells - 0.5
    weights = torch.zeros(cells, len(positions), dtype=torch.float64)
    upper = torch.searchsorted(source, target).clamp(1, max(len(positions) - 1, 1))
    for j, (t, hi) in enumerate(zip(target.tolist(), upper.tolist(), strict=True)):
        if len(positions) == 1:
            weights[j, 0] = 1.0
            continue
        lo = hi - 1
        fraction = min(max((t - positions[lo]) / (positions[hi] - positions[lo]), 0.0), 1.0)
        weights[j, lo], weights[j, hi] = 1.0 - fraction, fraction
    return weights.to(dtype=dtype, device=device)
