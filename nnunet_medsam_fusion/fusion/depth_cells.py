"""What the frozen 2D encoder sees of a 3D patch: one image per depth cell of the finest fused stage.

A fused stage of depth ``d`` splits the patch's ``D`` slices (along its first axis, the axis nnU-Net's ``2d``
configuration slices) into ``d`` equal cells, and its skip holds one value per cell along depth. The encoder
computes only what these cells use: the patch is split into ``ceil(c / cells_per_image)`` equal *slabs*, ``c`` the
finest fused stage's cells (so with ``cells_per_image`` 1 the slabs are exactly those cells), and each slab becomes
encoder input by its representation:

- ``mip``: the maximum over the slab's slices, a slab maximum-intensity projection as radiologists read TOF-MRA: a
  bright vessel anywhere in the slab stays visible;
- ``mean``: the mean over the slab (a box filter along depth), summed in mirror-symmetric pairs;
- ``centre``: the slab's centre slice;
- ``slicesK`` (K = 2..9): K slices spread over the slab, each encoded, their features averaged.

A cell of a fused stage takes the features of the slabs it overlaps, weighted by the overlap, so levels of one
encoder that go to stages of different depth share the finest stage's images (a coarser cell averages the slabs
inside it). Slabs are symmetric under reversal of the slices, so a patch mirrored along depth sees the same images
(bit for bit, which the feature cache needs to reuse them), with two exceptions: an even count of slabs on an odd
depth (the middle edge cannot be symmetric), and ``centre`` or an odd ``slicesK`` on a middle slab of even length
(its centre falls between two slices; the one chosen has no mirror image).
Which representation and how many cells per image are recorded choices (``FoundationSpec``; docs/design.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

SPREAD = re.compile(r"slices([2-9])")


def slab_edges(depth: int, slabs: int) -> list[int]:
    """``slabs + 1`` slice indices splitting ``depth`` slices into equal slabs, mirror-symmetric (the middle edge of
    an even count on an odd depth rounds down)."""
    if not 1 <= slabs <= depth:
        raise ValueError(f"cannot split {depth} slices into {slabs} slabs")
    half = [math.floor(i * depth / slabs + 0.5) for i in range((slabs + 1) // 2)]
    middle = [depth // 2] if slabs % 2 == 0 else []
    return half + middle + [depth - e for e in reversed(half)]


def symmetric_round(position: float, depth: int) -> int:
    """The slice nearest ``position``; halves round towards the patch centre, so mirrored positions round alike."""
    return math.floor(position + 0.5) if position <= (depth - 1) / 2 else math.ceil(position - 0.5)


def slab_slices(start: int, stop: int, representation: str, depth: int) -> list[int]:
    """The slices of slab [start, stop) that are encoded one by one (``centre``, ``slicesK``)."""
    count = 1 if representation == "centre" else int(SPREAD.fullmatch(representation).group(1))
    count = min(count, stop - start)
    centres = [start + (i + 0.5) * (stop - start) / count - 0.5 for i in range(count)]
    return sorted({symmetric_round(c, depth) for c in centres})


@dataclass(frozen=True)
class DepthPlan:
    """For one patch depth and the depths of the fused stages: the slabs, how each becomes encoder images, and for
    each fused stage the (cells, images) weights that give a cell its features."""

    representation: str
    slabs: tuple[tuple[int, int], ...]
    slices: tuple[tuple[int, ...], ...]  # per slab the slices encoded one by one (empty for mip / mean)
    weights: tuple[Tensor, ...]  # per fused stage, (stage depth, images), float32, rows sum to 1

    @property
    def images_per_patch(self) -> int:
        return sum(len(s) or 1 for s in self.slices)

    def images(self, x: Tensor) -> Tensor:
        """The encoder's input for a (B, C, D, H, W) batch: (B * images, 1, H, W), batch-major (channel 0 only, the
        channel the encoder reads)."""
        volume = x[:, 0]
        per_slab = []
        for (start, stop), chosen in zip(self.slabs, self.slices, strict=True):
            if chosen:
                per_slab.append(volume[:, list(chosen)])
            elif self.representation == "mip":
                per_slab.append(volume[:, start:stop].amax(dim=1, keepdim=True))
            else:  # pairs (z, mirror of z) first: the sum is then the same for the patch mirrored along depth
                slab = volume[:, start:stop]
                per_slab.append((slab + slab.flip(1)).mean(dim=1, keepdim=True) / 2)
        images = torch.cat(per_slab, dim=1)  # (B, images, H, W)
        return images.reshape(-1, 1, *images.shape[2:])


def depth_plan(depth: int, stage_depths: Sequence[int], representation: str, cells_per_image: int) -> DepthPlan:
    """The plan for a patch of ``depth`` slices fused into stages of ``stage_depths`` cells (made once per shape:
    the network asks for it in every forward)."""
    return _depth_plan(depth, tuple(stage_depths), representation, cells_per_image)


@lru_cache(maxsize=64)
def _depth_plan(depth: int, stage_depths: tuple[int, ...], representation: str, cells_per_image: int) -> DepthPlan:
    finest = max(stage_depths)
    edges = slab_edges(depth, math.ceil(finest / cells_per_image))
    slabs = tuple(zip(edges[:-1], edges[1:], strict=True))
    one_image = representation in ("mip", "mean")
    slices = tuple(() if one_image else tuple(slab_slices(a, b, representation, depth)) for a, b in slabs)
    # slab -> its images, averaged
    counts = [len(s) or 1 for s in slices]
    to_images = torch.zeros(len(slabs), sum(counts), dtype=torch.float64)
    first = 0
    for row, count in enumerate(counts):
        to_images[row, first:first + count] = 1.0 / count
        first += count
    weights = []
    for cells in stage_depths:
        overlap = torch.tensor([[max(0.0, min(b, (j + 1) * depth / cells) - max(a, j * depth / cells))
                                 for a, b in slabs] for j in range(cells)], dtype=torch.float64)
        weights.append(((overlap / overlap.sum(dim=1, keepdim=True)) @ to_images).float())
    return DepthPlan(representation, slabs, slices, tuple(weights))
