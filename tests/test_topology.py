"""Betti numbers, Betti-number errors and false islands on shapes whose topology is known by construction."""

import numpy as np
import pytest

from nnunet_medsam_fusion.evaluation.conventions.ours import binary_metrics
from nnunet_medsam_fusion.evaluation.kernels.skeletons import centreline
from nnunet_medsam_fusion.evaluation.kernels.topology import (
    FAR_ISLAND_DISTANCE,
    betti_numbers,
    false_islands,
    topology_metrics,
)


def tube(shape=(40, 15, 15), radius=2):
    """A straight vessel along the first axis."""
    grid = np.indices(shape[1:])
    disc = (grid[0] - shape[1] // 2) ** 2 + (grid[1] - shape[2] // 2) ** 2 <= radius**2
    return np.broadcast_to(disc, shape).copy()


def ring(shape=(7, 24, 24), inner=5, outer=8):
    """A closed vessel loop (a thick annulus, three slices deep): b0 = 1, b1 = 1."""
    grid = np.indices(shape[1:])
    radius = np.hypot(grid[0] - shape[1] / 2 + 0.5, grid[1] - shape[2] / 2 + 0.5)
    mask = np.zeros(shape, dtype=bool)
    mask[2:5] = (radius >= inner) & (radius <= outer)
    return mask


def test_solids_with_known_betti_numbers():
    block = np.zeros((10, 10, 10), dtype=bool)
    block[2:8, 2:8, 2:8] = True
    assert betti_numbers(block) == (1, 0, 0)
    hollow = block.copy()
    hollow[4:6, 4:6, 4:6] = False  # an enclosed cavity
    assert betti_numbers(hollow) == (1, 0, 1)
    drilled = block.copy()
    drilled[:, 4:6, 4:6] = False  # a tunnel through the block: a solid torus
    assert betti_numbers(drilled) == (1, 1, 0)
    assert betti_numbers(ring()) == (1, 1, 0)
    two_rings = np.concatenate([ring(), ring()], axis=0)
    assert betti_numbers(two_rings) == (2, 2, 0)
    assert betti_numbers(np.zeros((5, 5, 5), dtype=bool)) == (0, 0, 0)


def test_foreground_is_26_connected_background_6_connected():
    corners = np.zeros((4, 4, 4), dtype=bool)
    corners[1, 1, 1] = corners[2, 2, 2] = True  # touching at a corner only: one component
    assert betti_numbers(corners)[0] == 1
    # A 3x3x3 shell with its centre empty and every face centre removed: the centre background voxel touches
    # the outside only through faces, so it is no longer a cavity (6-connected background).
    shell = np.ones((3, 3, 3), dtype=bool)
    shell[1, 1, 1] = False
    assert betti_numbers(shell) == (1, 0, 1)
    shell[0, 1, 1] = False
    assert betti_numbers(shell)[2] == 0


def test_masks_touching_the_border_score_like_embedded_ones():
    # Betti numbers belong to the foreground set; outside the image is background (euler_number's padding).
    drilled = np.ones((6, 6, 6), dtype=bool)
    drilled[:, 2:4, 2:4] = False
    embedded = np.pad(drilled, 3)
    assert betti_numbers(drilled) == betti_numbers(embedded) == (1, 1, 0)


def test_tube_plus_two_islands():
    ref = tube()
    pred = ref.copy()
    pred[5:8, 0:2, 0:2] = True  # far corner islands, more than 5 voxels (mm) from the tube
    pred[30:32, 13:15, 0:2] = True
    m = topology_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert (m["pred_betti0"], m["ref_betti0"]) == (3, 1)
    assert m["betti0_error"] == 2 and m["betti1_error"] == 0
    assert m["false_islands"] == 2 and m["false_island_voxels"] == 3 * 2 * 2 + 2 * 2 * 2


def test_ring_broken_once():
    ref = ring()
    pred = ref.copy()
    pred[:, 10:14, :10] = False  # cut the loop on one side
    m = topology_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["betti1_error"] == 1 and m["betti0_error"] == 0
    assert m["false_islands"] == 0


def test_empty_prediction_and_empty_reference():
    ref = tube() | np.pad(ring((7, 15, 15), 3, 5), ((33, 0), (0, 0), (0, 0)))[:40]
    b0, b1, _ = betti_numbers(ref)
    empty = np.zeros_like(ref)
    m = topology_metrics(empty, ref, (1.0, 1.0, 1.0))
    assert (m["betti0_error"], m["betti1_error"], m["false_islands"], m["false_island_voxels"]) == (b0, b1, 0, 0)
    # Against an empty reference every predicted component is a false island.
    m = topology_metrics(ref, empty, (1.0, 1.0, 1.0))
    assert (m["false_islands"], m["false_island_voxels"]) == (b0, int(ref.sum()))
    assert binary_metrics(empty, empty, (1.0, 1.0, 1.0))["false_islands"] == 0


def test_identical_masks_have_no_topology_error():
    rng = np.random.default_rng(0)
    mask = rng.random((20, 24, 24)) > 0.8  # many components, loops and a cavity
    assert betti_numbers(mask)[2] > 0
    m = topology_metrics(mask, mask.copy(), (0.6, 0.3, 0.3))
    assert m["pred_betti0"] > 10 and m["pred_betti1"] > 10
    assert (m["betti0_error"], m["betti1_error"], m["false_islands"], m["false_island_voxels"]) == (0, 0, 0, 0)


def test_2d_case():
    annulus = ring()[3]
    assert betti_numbers(annulus) == (1, 1, 0)
    diagonal = np.eye(6, dtype=bool)  # pixels touching at corners: one 8-connected component, no hole
    assert betti_numbers(diagonal) == (1, 0, 0)
    pred = annulus.copy()
    pred[10:14, :10] = False
    pred[0, 23] = True  # an island in the corner, far from the loop
    m = binary_metrics(pred, annulus, (1.0, 1.0))  # the corner lies ~8 px from the loop
    assert (m["betti0_error"], m["betti1_error"], m["false_islands"], m["false_island_voxels"]) == (1, 1, 1, 1)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.5, 0.5)])
def test_false_island_distance_threshold_in_mm(spacing):
    ref = np.zeros((30, 30, 30), dtype=bool)
    ref[:, 0, 0] = True
    step = spacing[2]
    at_limit = int(round(FAR_ISLAND_DISTANCE / step))  # exactly FAR_ISLAND_DISTANCE mm away along x: near
    pred = ref.copy()
    pred[10, 0, at_limit] = True
    pred[20, 0, at_limit + 1] = True  # one voxel further: far
    islands, count = false_islands(pred, ref, spacing)
    assert count == 1 and islands[20, 0, at_limit + 1] and not islands[10, 0, at_limit]


def test_centreline_of_a_tube_and_of_a_thin_plate():
    line = centreline(tube())
    assert np.count_nonzero(line) >= 30 and np.all(line.sum(axis=(1, 2)) <= 1)  # one voxel per slice at most
    plate = np.zeros((6, 20, 20), dtype=bool)
    plate[2:4, 10, 5:15] = True  # 3D thinning removes it entirely: the plate is its own centreline
    assert np.array_equal(centreline(plate), plate)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_2d_holes_and_3d_cavities_match_a_direct_count(seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    image = rng.random((40, 40)) > 0.55
    # 2D: b1 = background components (4-connected) enclosed by the foreground, counted directly.
    holes = ndimage.binary_fill_holes(image) & ~image
    assert betti_numbers(image)[1] == ndimage.label(holes)[1]
    volume = rng.random((14, 14, 14)) > 0.35
    cavities = ndimage.binary_fill_holes(volume) & ~volume
    assert betti_numbers(volume)[2] == ndimage.label(cavities)[1]
    assert betti_numbers(volume)[0] == ndimage.label(volume, np.ones((3, 3, 3)))[1]
