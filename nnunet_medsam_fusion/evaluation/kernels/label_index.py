"""A sparse view of a 3D label map: its foreground voxels and the labels of their 26 neighbours.

Vessel label maps are mostly background, so contours, per-label connected components and label adjacency are
computed on the foreground voxels only (a few hundred thousand of a 560 x 560 x 150 volume) instead of on dense
crops whose bounding boxes stray false islands make nearly as large as the volume. The grid is padded by one
background voxel on every side, so every voxel has 26 neighbours and flat indices of two maps of the same shape
are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

OFFSETS = np.array([(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                    if (dz, dy, dx) != (0, 0, 0)])  # the 26-neighbourhood


@dataclass(eq=False)
class LabelIndex:
    """Foreground voxels of a label map (flat indices into the padded grid, ascending) and their neighbours."""

    padded_shape: tuple[int, ...]
    flat: np.ndarray  # (n,) flat indices of foreground voxels in the padded grid
    labels: np.ndarray  # (n,) their labels
    neighbour_labels: np.ndarray  # (n, 26) labels of their 26 neighbours (0 = background)
    neighbour_index: np.ndarray  # (n, 26) position of each neighbour in ``flat``, -1 for background

    @classmethod
    def of(cls, label_map: np.ndarray) -> LabelIndex:
        if label_map.ndim != 3:
            raise ValueError(f"LabelIndex needs a 3D label map, got shape {label_map.shape}")
        padded = np.pad(label_map, 1)
        shape = padded.shape
        flat = np.flatnonzero(padded)
        steps = OFFSETS @ np.array([shape[1] * shape[2], shape[2], 1])
        neighbours = flat[:, None] + steps[None, :]
        values = padded.ravel()
        neighbour_labels = values[neighbours]
        position = np.searchsorted(flat, neighbours)
        del neighbours
        index = np.where(neighbour_labels > 0, position, -1).astype(np.int32 if flat.size < 2**31 else np.int64)
        return cls(shape, flat, values[flat], neighbour_labels, index)

    @property
    def size(self) -> int:
        return len(self.flat)

    @cached_property
    def coords(self) -> np.ndarray:
        """(n, 3) voxel coordinates in the unpadded grid."""
        return np.stack(np.unravel_index(self.flat, self.padded_shape), axis=1) - 1

    @cached_property
    def counts(self) -> np.ndarray:
        """Voxel count of every label value 0..255 (0 unused)."""
        return np.bincount(self.labels, minlength=256)

    def present(self) -> list[int]:
        return [int(v) for v in np.flatnonzero(self.counts)]

    def boundary(self, member: np.ndarray, per_label: bool) -> np.ndarray:
        """Voxels of ``member`` with a 26-neighbour outside it (outside its label too when ``per_label``).

        With every voxel a member this is the 26-connected contour: SimpleITK LabelContour(fullyConnected=True).
        """
        inside = np.where(self.neighbour_index >= 0, member[np.maximum(self.neighbour_index, 0)], False)
        if per_label:
            inside &= self.neighbour_labels == self.labels[:, None]
        return member & ~inside.all(axis=1)

    @cached_property
    def label_contour(self) -> np.ndarray:
        """Contour of every label's own mask (a neighbour of another label or background)."""
        return self.boundary(np.ones(self.size, dtype=bool), per_label=True)

    @cached_property
    def binary_contour(self) -> np.ndarray:
        """Contour of the merged foreground."""
        return self.boundary(np.ones(self.size, dtype=bool), per_label=False)

    def components(self, per_label: bool) -> np.ndarray:
        """26-connected component id of every voxel, within its label when ``per_label``."""
        rows, columns = np.nonzero(self.neighbour_index >= 0)
        if per_label:
            same = self.neighbour_labels[rows, columns] == self.labels[rows]
            rows, columns = rows[same], columns[same]
        graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, self.neighbour_index[rows, columns])),
                           shape=(self.size, self.size))
        return connected_components(graph, directed=False)[1]

    @cached_property
    def betti0(self) -> dict[int, int]:
        """Number of 26-connected components of every present label."""
        if not self.size:
            return {}
        pairs = np.unique(np.stack([self.labels.astype(np.int64), self.components(per_label=True)]), axis=1)
        return {int(v): int(n) for v, n in zip(*np.unique(pairs[0], return_counts=True), strict=True)}

    @cached_property
    def binary_components(self) -> np.ndarray:
        """26-connected component id of every voxel of the merged foreground."""
        return self.components(per_label=False)

    @cached_property
    def betti0_binary(self) -> int:
        """Number of 26-connected components of the merged foreground."""
        return int(self.binary_components.max() + 1) if self.size else 0

    @cached_property
    def neighbours(self) -> dict[int, tuple[int, ...]]:
        """For every present label, the other labels among its voxels' 26 neighbours, ascending."""
        own = np.broadcast_to(self.labels[:, None], self.neighbour_labels.shape)
        touching = (self.neighbour_labels != 0) & (self.neighbour_labels != own)
        pairs = np.unique(np.stack([own[touching], self.neighbour_labels[touching]]).astype(np.int64), axis=1)
        found: dict[int, tuple[int, ...]] = {label: () for label in self.present()}
        for label in found:
            found[label] = tuple(int(v) for v in pairs[1][pairs[0] == label])
        return found

    def contains(self, flat: np.ndarray) -> np.ndarray:
        """Whether each padded flat index is a foreground voxel here."""
        if not self.size:
            return np.zeros(len(flat), dtype=bool)
        position = np.minimum(np.searchsorted(self.flat, flat), self.size - 1)
        return self.flat[position] == flat
