"""Per-case metrics against hand-computed values and MONAI's reference implementation.

MONAI is imported unconditionally: the dev extra installs it, so a missing MONAI fails the run instead of
silently skipping the cross-check.
"""

import math

import monai.metrics as monai_metrics
import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.morphology import skeletonize

from nnunet_medsam_fusion.evaluation.conventions.ours import (
    STATUS_BOTH_EMPTY,
    STATUS_EMPTY_PREDICTION,
    STATUS_EMPTY_REFERENCE,
    STATUS_OK,
    binary_metrics,
)
from nnunet_medsam_fusion.evaluation.kernels.skeletons import centerline_dice
from nnunet_medsam_fusion.evaluation.kernels.surface import crop_to_union, directed_surface_distances, surface_voxels

SPACINGS = [(1.0, 1.0, 1.0), (2.0, 0.7, 0.5), (0.6, 0.3, 0.3)]


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grid = np.indices(shape).astype(float)
    squared = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True))
    return squared <= radius**2


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("shift", [1, 3])
def test_shifted_plate_distances_are_shift_times_spacing(spacing, axis, shift):
    # A one-voxel plate and a copy moved along `axis`: every surface voxel is exactly shift*spacing away.
    ref = np.zeros((12, 14, 16), dtype=bool)
    index = [slice(2, 10), slice(3, 11), slice(4, 12)]
    index[axis] = 4
    ref[tuple(index)] = True
    pred = np.roll(ref, shift, axis=axis)
    m = binary_metrics(pred, ref, spacing)
    assert m["status"] == STATUS_OK
    assert m["hd95"] == pytest.approx(shift * spacing[axis])
    assert m["asd"] == pytest.approx(shift * spacing[axis])
    assert m["dice"] == m["iou"] == m["precision"] == m["recall"] == m["f1"] == 0.0


@pytest.mark.parametrize("spacing", SPACINGS)
def test_one_voxel_vessel_shifted_sideways(spacing):
    ref = np.zeros((30, 9, 9), dtype=bool)
    ref[:, 4, 4] = True  # a one-voxel-wide vessel along z
    pred = np.roll(ref, 1, axis=2)
    m = binary_metrics(pred, ref, spacing)
    assert m["hd95"] == pytest.approx(spacing[2])
    assert m["asd"] == pytest.approx(spacing[2])
    assert m["cldice"] == 0.0
    assert (m["tp"], m["fp"], m["fn"]) == (0, 30, 30)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_identical_masks_are_perfect(spacing):
    ref = ball((20, 24, 24), (10, 12, 12), 6)
    m = binary_metrics(ref, ref.copy(), spacing)
    for name in ("dice", "iou", "precision", "recall", "f1", "cldice"):
        assert m[name] == pytest.approx(1.0)
    assert m["hd95"] == 0.0 and m["asd"] == 0.0


def test_nested_spheres_overlap_counts():
    ref = ball((24, 24, 24), (12, 12, 12), 8)
    pred = ball((24, 24, 24), (12, 12, 12), 6)
    n_ref, n_pred = ref.sum(), pred.sum()
    m = binary_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(n_pred / n_ref)
    assert m["dice"] == pytest.approx(2 * n_pred / (n_pred + n_ref))
    assert m["iou"] == pytest.approx(n_pred / n_ref)
    assert m["f1"] == pytest.approx(m["dice"])
    # Concentric spheres of radius 6 and 8: surfaces lie about 2 mm apart.
    assert 1.0 < m["asd"] < 3.0 and 1.5 < m["hd95"] < 3.0


def test_spacing_scales_distances_along_its_axis():
    ref = ball((20, 20, 20), (10, 10, 10), 5)
    pred = np.roll(ref, 2, axis=0)
    iso = binary_metrics(pred, ref, (1.0, 1.0, 1.0))
    stretched = binary_metrics(pred, ref, (3.0, 1.0, 1.0))
    assert iso["hd95"] == pytest.approx(2.0)
    # A 3 mm slice step makes some nearest surface voxels lie in-plane, so 2 mm < HD95 <= 2 * 3 mm.
    assert 2.0 < stretched["hd95"] <= 6.0
    assert stretched["asd"] > iso["asd"]
    assert stretched["dice"] == iso["dice"]


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("spacing", SPACINGS[1:])
def test_matches_monai_hd95_and_assd(seed, spacing):
    rng = np.random.default_rng(seed)
    ref = ball((18, 26, 30), rng.uniform(5, 13, 3), 5, spacing=(1, 1, 1))
    pred = np.roll(ref, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2)) | (rng.random(ref.shape) > 0.995)
    pred[0, :4, :4] = True  # touches the image border
    m = binary_metrics(pred, ref, spacing)

    def as_tensor(a):
        return torch.from_numpy(a)[None, None].float()

    hd95 = monai_metrics.compute_hausdorff_distance(as_tensor(pred), as_tensor(ref), percentile=95,
                                                    spacing=spacing)
    assd = monai_metrics.compute_average_surface_distance(as_tensor(pred), as_tensor(ref), symmetric=True,
                                                          spacing=spacing)
    assert m["hd95"] == pytest.approx(float(hd95), rel=1e-5)
    assert m["asd"] == pytest.approx(float(assd), rel=1e-5)


def test_asd_pools_both_directed_sets_like_medpy_0_5_2():
    """medpy 0.5.2's assd concatenates both directed distance sets before the mean; so do we. With a large
    prediction holding a far false island the mean of the two directed means would differ."""
    spacing = (1.0, 0.8, 0.8)
    ref = ball((24, 30, 30), (12, 8, 8), 5)
    pred = ref | ball((24, 30, 30), (12, 22, 22), 3)
    to_ref = directed_surface_distances(surface_voxels(pred), surface_voxels(ref), spacing)
    to_pred = directed_surface_distances(surface_voxels(ref), surface_voxels(pred), spacing)
    pooled = np.concatenate([to_ref, to_pred]).mean()
    assert binary_metrics(pred, ref, spacing)["asd"] == pytest.approx(pooled)
    assert abs(pooled - (to_ref.mean() + to_pred.mean()) / 2) > 0.2


@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_mask_rules(ndim):
    shape = (10, 12, 14)[:ndim]
    spacing = (1.0, 0.5, 0.5)[:ndim]
    empty = np.zeros(shape, dtype=bool)
    full = np.zeros(shape, dtype=bool)
    full[(slice(2, 6),) * ndim] = True

    both = binary_metrics(empty, empty, spacing)
    assert both["status"] == STATUS_BOTH_EMPTY
    assert all(both[k] == 1.0 for k in ("dice", "iou", "precision", "recall", "f1", "cldice"))
    assert both["hd95"] == both["asd"] == 0.0

    for pred, ref, status in ((empty, full, STATUS_EMPTY_PREDICTION), (full, empty, STATUS_EMPTY_REFERENCE)):
        m = binary_metrics(pred, ref, spacing)
        assert m["status"] == status
        assert all(m[k] == 0.0 for k in ("dice", "iou", "precision", "recall", "f1", "cldice"))
        assert math.isnan(m["hd95"]) and math.isnan(m["asd"])


def tube(length=40, radius=2, size=11):
    grid = np.indices((length, size, size)).astype(float)
    centre = size // 2
    return (grid[1] - centre) ** 2 + (grid[2] - centre) ** 2 <= radius**2


def test_cldice_of_a_straight_tube():
    ref = tube()
    assert centerline_dice(ref, ref) == pytest.approx(1.0)
    # The centreline alone is topologically perfect (clDice 1) although its Dice is low.
    centreline = np.zeros_like(ref)
    centreline[:, 5, 5] = True
    assert centerline_dice(centreline, ref) == pytest.approx(1.0)
    assert binary_metrics(centreline, ref, (1, 1, 1))["dice"] < 0.2


def test_cldice_of_a_broken_one_voxel_vessel():
    ref = np.zeros((40, 7, 7), dtype=bool)
    ref[:, 3, 3] = True
    broken = ref.copy()
    broken[18:22] = False  # a 4-voxel gap: skeleton sensitivity 36/40, precision 1
    expected = 2 * 0.9 * 1.0 / (0.9 + 1.0)
    assert centerline_dice(broken, ref) == pytest.approx(expected)


def test_cldice_mask_with_empty_skeleton_is_its_own_skeleton():
    ref = np.zeros((7, 7, 9), dtype=bool)
    ref[2:4, 2:4, 2:7] = True  # 2 x 2 x 5 voxels: 3D thinning leaves nothing
    assert not skeletonize(ref).any()
    pred = ref.copy()
    pred[:, :, 5:7] = False  # covers 12 of the 20 voxels that stand in for the skeleton
    expected = 2 * 1.0 * 0.6 / (1.0 + 0.6)
    assert centerline_dice(pred, ref) == pytest.approx(expected)
    assert centerline_dice(ref, ref) == 1.0


def test_cldice_skeletonises_the_array_in_its_axis_order():
    """3D thinning depends on axis order: clDice is computed on the arrays as given ((z, y, x) from SimpleITK)."""
    ref = ndimage.binary_dilation(np.random.default_rng(0).random((20, 24, 28)) > 0.97, iterations=2)
    pred = np.roll(ref, 1, axis=2)
    skeleton_pred, skeleton_ref = skeletonize(pred), skeletonize(ref)
    precision = np.count_nonzero(skeleton_pred & ref) / np.count_nonzero(skeleton_pred)
    sensitivity = np.count_nonzero(skeleton_ref & pred) / np.count_nonzero(skeleton_ref)
    as_given = centerline_dice(pred, ref)
    assert as_given == pytest.approx(2 * precision * sensitivity / (precision + sensitivity))
    reversed_axes = centerline_dice(pred.transpose(2, 1, 0), ref.transpose(2, 1, 0))
    assert abs(as_given - reversed_axes) > 1e-3


def test_cldice_of_a_broken_tube_is_lower():
    ref = tube()
    broken = ref.copy()
    broken[18:24] = False
    value = centerline_dice(broken, ref)
    assert 0.5 < value < 0.95


@pytest.mark.parametrize("ndim", [2, 3])
def test_surface_of_a_block_is_its_shell(ndim):
    mask = np.zeros((8,) * ndim, dtype=bool)
    mask[(slice(2, 6),) * ndim] = True
    surface = surface_voxels(mask)
    assert surface.sum() == 4**ndim - 2**ndim  # block minus its interior


def test_crop_keeps_all_foreground():
    pred = np.zeros((50, 60, 70), dtype=bool)
    ref = np.zeros_like(pred)
    pred[10:12, 20:22, 30:33] = True
    ref[40, 50, 60] = True
    cp, cr = crop_to_union(pred, ref)
    assert cp.sum() == pred.sum() and cr.sum() == ref.sum()
    assert cp.shape == (33, 33, 33)


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        binary_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1, 1))
