"""TopCoW convention against the official evaluation's own test cases (github CoWBenchmark/TopCoW_Eval_Metrics).

Every array here is rebuilt from the facts of the official test assets (shapes, label layout) and every expected
value is copied from the official tests or from test_assets/task_1_seg_output/expected_e2e_test_metrics.json;
nothing reads the official repository. Arrays are in SimpleITK numpy order (z, y, x), spacing likewise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from skimage.morphology import skeletonize

from nnunet_medsam_fusion.evaluation.conventions.topcow import (
    aggregate_topcow,
    flat_row,
    parse_roi_txt,
    roi_box,
    score_topcow_case,
)
from nnunet_medsam_fusion.evaluation.kernels.cow_variants import (
    aggregate_detections,
    aggregate_graphs,
    aggregate_topologies,
    balanced_accuracy,
    graph_metrics,
    variant_name,
)
from nnunet_medsam_fusion.evaluation.kernels.label_index import LabelIndex
from nnunet_medsam_fusion.evaluation.kernels.label_metrics import (
    class_average_table,
    cldice,
    hausdorff,
    hausdorff_from_index,
    index_pair,
    iou,
    voxel_metrics,
)
from nnunet_medsam_fusion.evaluation.kernels.skeletons import centerline_dice
from nnunet_medsam_fusion.evaluation.kernels.surface import surface_distance_metrics

ONE = (1.0, 1.0, 1.0)
NAN = float("nan")


# ---------------------------------------------------------------- official assets, rebuilt as arrays
def donut_pair() -> tuple[np.ndarray, np.ndarray]:
    """shape_5x7x9_3D_1donut(.nii.gz, _multiclass.mha): a label-1 ring, the prediction's x=3 side is label 6."""
    ref = np.zeros((9, 7, 5), dtype=np.uint8)
    ref[2:5, 2:6, 1:4] = 1
    ref[2:5, 3:5, 2] = 0
    pred = ref.copy()
    pred[2:5, 2:6, 3] = 6
    return pred, ref


def cubes_pair() -> tuple[np.ndarray, np.ndarray]:
    """shape_8x8x8_3D_8Cubes_{gt,pred}: eight 4x4x4 cubes labelled 1-8; the prediction drops label 4, hollows
    label 2 (2x2x2) and tunnels labels 6 and 8 through z."""
    z, y, x = np.indices((8, 8, 8))
    ref = (1 + (x >= 4) + 2 * (y >= 4) + 4 * (z >= 4)).astype(np.uint8)
    pred = ref.copy()
    pred[ref == 4] = 0
    pred[1:3, 1:3, 5:7] = 0
    pred[4:8, 1:3, 5:7] = 0
    pred[4:8, 5:7, 5:7] = 0
    return pred, ref


def flat(rows: list[list[int]]) -> np.ndarray:
    """A 2D official asset stored as a 3D image one slice thick."""
    return np.asarray(rows, dtype=np.uint8)[None]


# official e2e per-case values (expected_e2e_test_metrics.json, "case" block)
E2E_CASES = [
    {"B0err_BA": 0, "B0err_ClsAvgB0err": 0.5, "B0err_L-ICA": 1, "B0err_MergedBin": 0,
     "Dice_BA": 0.7499999999999999, "Dice_ClsAvgDice": 0.37499999999999994, "Dice_L-ICA": 0.0,
     "Dice_MergedBin": 1.0, "HD95_BA": 1.4142135381698608, "HD95_ClsAvgHD95": 45.70710676908493,
     "HD95_L-ICA": 90.0, "HD95_MergedBin": 0.0, "HD_BA": 1.4142135381698608, "HD_ClsAvgHD": 45.70710676908493,
     "HD_L-ICA": 90.0, "HD_MergedBin": 0.0, "clDice": 1.0},
    {"B0err_BA": 0, "B0err_ClsAvgB0err": 0.125, "B0err_L-ICA": 0, "B0err_L-MCA": 0.0, "B0err_L-PCA": 0.0,
     "B0err_MergedBin": 0, "B0err_R-ICA": 1.0, "B0err_R-MCA": 0.0, "B0err_R-PCA": 0.0, "B0err_R-Pcom": 0.0,
     "Dice_BA": 1.0, "Dice_ClsAvgDice": 0.8309523809523809, "Dice_L-ICA": 0.8571428571428571, "Dice_L-MCA": 1.0,
     "Dice_L-PCA": 1.0, "Dice_MergedBin": 0.8869565217391304, "Dice_R-ICA": 0.0, "Dice_R-MCA": 1.0,
     "Dice_R-PCA": 0.9333333333333333, "Dice_R-Pcom": 0.8571428571428571, "HD95_BA": 0.0,
     "HD95_ClsAvgHD95": 11.5, "HD95_L-ICA": 1.0, "HD95_L-MCA": 0.0, "HD95_L-PCA": 0.0, "HD95_MergedBin": 2.0,
     "HD95_R-ICA": 90.0, "HD95_R-MCA": 0.0, "HD95_R-PCA": 0.0, "HD95_R-Pcom": 1.0, "HD_BA": 0.0,
     "HD_ClsAvgHD": 11.5, "HD_L-ICA": 1.0, "HD_L-MCA": 0.0, "HD_L-PCA": 0.0, "HD_MergedBin": 4.0,
     "HD_R-ICA": 90.0, "HD_R-MCA": 0.0, "HD_R-PCA": 0.0, "HD_R-Pcom": 1.0, "clDice": 0.0},
]


def _empty_topo(with_detection: bool) -> dict:
    entry = {"detection": "TN", "b0": 0, "neighbors": []} if with_detection else {"b0": 0, "neighbors": []}
    return {name: dict(entry) for name in ("Acom", "R-ACA", "L-ACA", "3rd-A2")}


def test_official_e2e_case_values_match_exactly():
    scored = [score_topcow_case(*donut_pair(), ONE), score_topcow_case(*cubes_pair(), ONE)]
    for case, expected in zip(scored, E2E_CASES, strict=True):
        scalars = {k: v for k, v in case.items() if not k.startswith("all_")}
        assert scalars == expected  # exact, not approximate: same keys, same floats
    assert scored[0]["all_detection_dicts"] == {
        "8": {"label": "R-Pcom", "Detection": "TN"}, "9": {"label": "L-Pcom", "Detection": "TN"},
        "10": {"label": "Acom", "Detection": "TN"}, "15": {"label": "3rd-A2", "Detection": "TN"}}
    assert scored[1]["all_detection_dicts"]["8"] == {"label": "R-Pcom", "Detection": "TP"}
    assert scored[1]["all_graph_dicts"] == {"anterior": {"gt_graph": [0, 0, 0, 0], "pred_graph": [0, 0, 0, 0]},
                                            "posterior": {"gt_graph": [0, 1, 1, 1], "pred_graph": [0, 1, 1, 1]}}
    topo = scored[1]["all_topo_dicts"]
    assert topo["gt_topology"]["posterior"] == {
        "graph": [0, 1, 1, 1], "R-PCA": {"b0": 1, "neighbors": [1, 3, 4, 5, 6, 7, 8]},
        "L-PCA": {"b0": 1, "neighbors": [1, 2, 4, 5, 6, 7, 8]}, "R-Pcom": {"b0": 1, "neighbors": [1, 2, 3, 4, 5, 6, 7]},
        "L-Pcom": {"b0": 0, "neighbors": []}}
    assert topo["pred_topology"]["posterior"] == {
        "graph": [0, 1, 1, 1], "R-PCA": {"detection": "TP", "b0": 1, "neighbors": [1, 3, 5, 6, 7, 8]},
        "L-PCA": {"detection": "TP", "b0": 1, "neighbors": [1, 2, 5, 6, 7, 8]},
        "R-Pcom": {"detection": "TP", "b0": 1, "neighbors": [1, 2, 3, 5, 6, 7]},
        "L-Pcom": {"detection": "TN", "b0": 0, "neighbors": []}, "LR_flipped": True}
    assert topo["gt_topology"]["anterior"] == {"graph": [0, 0, 0, 0], **_empty_topo(False)}
    assert topo["pred_topology"]["anterior"] == {"graph": [0, 0, 0, 0], **_empty_topo(True), "LR_flipped": False}
    assert topo["match_verdict"] == {"anterior": True, "posterior": False}
    assert scored[0]["all_topo_dicts"]["match_verdict"] == {"anterior": True, "posterior": True}


def test_official_e2e_aggregates_match_exactly():
    aggregates = aggregate_topcow([score_topcow_case(*donut_pair(), ONE), score_topcow_case(*cubes_pair(), ONE)])
    assert aggregates["B0err_ClsAvgB0err"] == {"25pc": 0.21875, "50pc": 0.3125, "75pc": 0.40625, "count": 2.0,
                                               "max": 0.5, "mean": 0.3125, "min": 0.125, "std": 0.2651650429449553}
    assert aggregates["Dice_ClsAvgDice"]["std"] == 0.3224070204695806
    assert aggregates["Dice_ClsAvgDice"]["25pc"] == 0.48898809523809517
    assert aggregates["HD95_ClsAvgHD95"]["mean"] == 28.603553384542465
    assert aggregates["HD95_BA"]["std"] == 0.999999982885729
    assert aggregates["HD95_L-ICA"]["std"] == 62.932503525602726
    assert aggregates["Dice_MergedBin"]["std"] == 0.07993381004717495
    single = aggregates["Dice_R-PCA"]  # present in one case only: the other counts as missing
    assert single["count"] == 1.0 and single["mean"] == 0.9333333333333333 and math.isnan(single["std"])
    assert aggregates["dect_avg"]["8"] == {"label": "R-Pcom", "precision": 1.0, "recall": 1.0, "f1_score": 1.0}
    assert aggregates["dect_avg"]["f1_score"] == {"mean": 0.25, "std": 0.4330127018922193}
    assert aggregates["graph_var_bal_acc"] == {"anterior": 1.0, "posterior": 1.0}
    assert aggregates["topo_var_bal_acc"] == {"anterior": 1.0, "posterior": 0.5}


def test_roi_larger_than_image_changes_nothing(tmp_path):
    # test_evaluation_task_1_seg.py: need_crop=True with roi files of 100^3 at 0 0 0 gives the same metrics.json
    roi_file = tmp_path / "shape_8x8x8_3D_8Cubes.txt"
    roi_file.write_text("--- ROI Meta Data ---\nSize (Voxels): 100 100 100\nLocation (Voxels): 0 0 0\n")
    roi = parse_roi_txt(roi_file)
    assert roi == ([100, 100, 100], [0, 0, 0])
    assert score_topcow_case(*cubes_pair(), ONE, roi=roi) == score_topcow_case(*cubes_pair(), ONE)


def test_roi_crop_is_in_xyz_and_clamped(tmp_path):
    # test_crop_sitk.py: size [3, 2, 1] at [1, 4, 2] of the multiclass donut is [[[1, 0, 6], [1, 1, 6]]]
    pred, _ = donut_pair()
    assert pred[roi_box(pred.shape, [3, 2, 1], [1, 4, 2])].tolist() == [[[1, 0, 6], [1, 1, 6]]]
    # test_crop_sitk_upper_right_corner_img: a 4x3x2 (x, y, z) image of arange values
    image_zyx = np.arange(24).reshape(4, 3, 2).transpose(2, 1, 0)
    assert image_zyx[roi_box(image_zyx.shape, [2, 1, 1], [0, 2, 1])].tolist() == [[[5, 11]]]
    assert image_zyx[roi_box(image_zyx.shape, [100, 100, 100], [0, 0, 0])].shape == image_zyx.shape
    # the cropped case scores only the crop: expected_1donut_{gt,pred}_crop
    ref_crop, pred_crop = donut_pair()[1][2:3, 4:6, 1:4], pred[2:3, 4:6, 1:4]
    roi_file = tmp_path / "roi.txt"
    roi_file.write_text("--- ROI Meta Data ---\nSize (Voxels): 3 2 1\nLocation (Voxels): 1 4 2\n")
    assert (score_topcow_case(pred, donut_pair()[1], ONE, roi=parse_roi_txt(roi_file))
            == score_topcow_case(pred_crop, ref_crop, ONE))


def test_roi_file_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("--- ROI Meta Data ---\nSize (Voxels): 3 2\n")
    with pytest.raises(ValueError, match="header line"):
        parse_roi_txt(bad)
    bad.write_text("--- ROI Meta Data ---\nSize (Voxels): 3 2\nLocation (Voxels): 1 4 2\n")
    with pytest.raises(ValueError, match="three sizes"):
        parse_roi_txt(bad)


# ---------------------------------------------------------------- Dice (test_cls_avg_dice.py)
def _table(pred, ref, spacing=ONE, metric="Dice"):
    return {name: scores[metric] for name, scores in class_average_table(ref, pred, spacing).items()}


def test_dice_blank_slices_and_single_label_counts():
    ref, pred = np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8)
    pred[0] = 7  # image2[:, :, 0] = 7
    ref[1, 0, 2] = ref[1, 2, 0] = 8  # image1[2, 0, 1], image1[0, 2, 1]
    ref[2] = 9
    pred[2, 0, 0] = 9
    table = _table(pred, ref)
    assert table["L-MCA"] == 0 and table["R-Pcom"] == 0
    assert table["L-Pcom"] == 0.19999999999999998  # 2/10 as SimpleITK computes it


def test_dice_ignores_spacing():
    ref, pred = np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8)
    ref[:, :, 0] = 1
    pred[:, 2, :] = 1
    assert _table(pred, ref, (5.0, 4.0, 3.0))["BA"] == _table(pred, ref)["BA"] == pytest.approx(6 / 18)


def test_dice_non_overlapping_multiclass_rgb_rby():
    ref = flat([[0, 0, 3, 2, 1]] * 5)  # shape_5x5_2D_RGB_gt
    pred = flat([[4, 0, 3, 0, 1]] * 5)  # shape_5x5_2D_RBY_pred
    assert _table(pred, ref) == {"BA": 1.0, "R-PCA": 0, "L-PCA": 1.0, "R-ICA": 0, "ClsAvg": 0.5,
                                 "MergedBin": 2 / 3}
    assert _table(pred, ref, metric="B0err") == {"BA": 0, "R-PCA": 1, "L-PCA": 0, "R-ICA": 1, "ClsAvg": 0.5,
                                                 "MergedBin": 2}


def test_dice_medium_post_labels_15_12_11():
    ref = flat([[11, 12, 0, 0, 0], [12, 12, 12, 0, 0], [0, 12, 12, 12, 0], [0, 0, 12, 15, 15], [0, 0, 0, 15, 15]])
    pred = flat([[11, 11, 0, 0, 0], [11, 0, 0, 0, 0], [0, 0, 0, 15, 0], [0, 0, 0, 15, 15], [0, 0, 0, 15, 15]])
    assert _table(pred, ref) == {"R-ACA": 0.5, "L-ACA": 0, "3rd-A2": 0.888888888888889,
                                 "ClsAvg": 0.46296296296296297, "MergedBin": 0.761904761904762}


def test_dice_rings_and_label5_zigzag():
    ref = flat([[6, 6, 6, 6, 6], [6, 4, 4, 4, 6], [6, 4, 0, 4, 6], [6, 4, 4, 4, 6], [6, 6, 6, 6, 6]])
    pred = flat([[6, 0, 0, 0, 6], [6, 4, 4, 0, 6], [6, 0, 4, 4, 6], [6, 6, 0, 4, 6], [0, 6, 0, 0, 6]])
    table = _table(pred, ref)
    assert table["R-ICA"] == pytest.approx(8 / 13) and table["L-ICA"] == pytest.approx(20 / 27)
    assert table["MergedBin"] == pytest.approx(30 / 40)
    ref5 = flat([[0, 5, 5, 5, 0], [5, 5, 0, 5, 5], [5, 0, 0, 0, 5], [5, 0, 5, 5, 5], [5, 5, 5, 0, 0]])
    pred5 = flat([[5, 5, 5, 5, 5], [5, 0, 0, 0, 5], [5, 0, 0, 0, 5], [5, 0, 0, 5, 5], [5, 5, 5, 5, 5]])
    table = _table(pred5, ref5)
    assert table["R-MCA"] == pytest.approx(26 / 33) and table["ClsAvg"] == table["MergedBin"] == table["R-MCA"]


def test_dice_fig50_small_3d():
    ref = np.array([[[0, 10], [10, 10]], [[0, 15], [15, 15]]], np.uint8)
    pred = np.array([[[0, 0], [10, 10]], [[0, 0], [0, 15]]], np.uint8)
    table = _table(pred, ref)
    assert table["Acom"] == pytest.approx(0.8) and table["3rd-A2"] == pytest.approx(0.5)


def test_no_label_anywhere_scores_zero_everywhere():
    # test_DiceCoefficient_2D_nolabels_task_multiclass: no labels -> ClsAvg 0 and MergedBin 0 (HD95 too)
    empty = np.zeros((1, 3, 6), np.uint8)
    table = class_average_table(empty, empty, ONE)
    assert table == {"ClsAvg": {"Dice": 0, "B0err": 0, "HD95": 0, "HD": 0},
                     "MergedBin": {"Dice": 0, "B0err": 0, "HD95": 0, "HD": 0}}
    metrics = voxel_metrics(empty, empty, ONE)
    assert metrics["Dice_ClsAvgDice"] == metrics["HD95_ClsAvgHD95"] == metrics["clDice"] == 0
    # only the prediction has a label: it is scored (Dice 0, HD95 90), the MergedBin too
    pred = flat([[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    table = class_average_table(empty, pred, ONE)
    assert table["BA"] == {"Dice": 0, "B0err": 1, "HD95": 90, "HD": 90}
    assert table["ClsAvg"]["Dice"] == table["MergedBin"]["Dice"] == 0


# ---------------------------------------------------------------- Betti-0 (test_cls_avg_b0.py)
def test_b0_error_single_blob_two_islands_and_cubes():
    ref = np.ones((2, 2, 2), np.uint8)
    pred = ref.copy()
    pred[0, 0, 0] = 0
    assert _table(pred, ref, metric="B0err") == {"BA": 0, "ClsAvg": 0.0, "MergedBin": 0}
    islands = np.array([[[1, 0, 0], [1, 0, 1], [1, 0, 0], [1, 0, 0]],
                        [[0, 0, 1], [1, 0, 1], [1, 0, 0], [1, 0, 0]]], np.uint8)
    multiclass = np.array([[[1, 0, 0], [1, 0, 2], [1, 0, 0], [1, 0, 0]],
                           [[0, 0, 1], [2, 0, 2], [2, 0, 0], [2, 0, 0]]], np.uint8)
    assert _table(multiclass, islands, metric="B0err") == {"BA": 0, "R-PCA": 2, "ClsAvg": 1, "MergedBin": 0}
    table = _table(*cubes_pair(), metric="B0err")
    assert table["R-ICA"] == 1 and table["ClsAvg"] == 1 / 8 and table["MergedBin"] == 0


def test_b0_uses_26_connectivity():
    # two voxels touching at a corner only: one 26-connected component, two 6-connected ones
    ref = np.zeros((4, 4, 4), np.uint8)
    ref[1, 1, 1] = 1
    pred = ref.copy()
    pred[2, 2, 2] = 1
    assert _table(pred, ref, metric="B0err")["BA"] == 0


# ---------------------------------------------------------------- HD95 / HD (test_cls_avg_hd95.py)
def _label_contour(mask: np.ndarray) -> np.ndarray:
    """The official contour: SimpleITK LabelContour(fullyConnected=True) (cls_avg_hd95.py:204-208)."""
    return sitk.GetArrayFromImage(sitk.LabelContour(sitk.GetImageFromArray(mask.astype(np.uint8)),
                                                    fullyConnected=True)) != 0


def test_contour_is_sitk_fully_connected_label_contour_not_the_6_neighbour_surface():
    ball = np.pad(np.sum((np.indices((13, 13, 13)) - 6) ** 2, axis=0) <= 36, 1)
    index = LabelIndex.of(ball.astype(np.uint8))
    ours = np.zeros(index.padded_shape, bool).ravel()
    ours[index.flat[index.label_contour]] = True
    assert np.array_equal(ours.reshape(index.padded_shape)[1:-1, 1:-1, 1:-1], _label_contour(ball))
    assert index.label_contour.sum() == 536  # mask minus its 3x3x3 erosion
    assert (ball & ~ndimage.binary_erosion(ball)).sum() == 354  # ours: mask minus its 6-neighbour erosion


def _official_hd(ref: np.ndarray, pred: np.ndarray, spacing) -> tuple[float, float]:
    """cls_avg_hd95.py's algorithm on dense images with SimpleITK, for comparison (masks padded already)."""
    def image(mask):
        result = sitk.GetImageFromArray(mask.astype(np.uint8))
        result.SetSpacing(tuple(reversed(spacing)))
        return result

    ref_surface = sitk.LabelContour(image(ref), fullyConnected=True)
    pred_surface = sitk.LabelContour(image(pred), fullyConnected=True)

    def distances(surface):
        return sitk.GetArrayFromImage(sitk.Abs(sitk.SignedMaurerDistanceMap(surface, squaredDistance=False,
                                                                             useImageSpacing=True)))
    ref_to_pred = distances(pred_surface)[sitk.GetArrayFromImage(ref_surface) != 0].astype(np.float64)
    pred_to_ref = distances(ref_surface)[sitk.GetArrayFromImage(pred_surface) != 0].astype(np.float64)
    return (max(np.percentile(ref_to_pred, 95), np.percentile(pred_to_ref, 95)),
            max(np.percentile(ref_to_pred, 100), np.percentile(pred_to_ref, 100)))


@pytest.mark.parametrize("seed", range(6))
def test_sparse_hd_equals_the_official_simpleitk_algorithm(seed):
    # random multi-label blobs (thick and thin contours, labels touching): bit-exact on a unit grid; on an
    # anisotropic grid ITK's float32 Maurer arithmetic rounds differently in the last bit (relative 1e-6)
    rng = np.random.default_rng(seed)
    labels = [np.pad(ndimage.binary_dilation(rng.random((14, 16, 12)) > 0.95, iterations=int(rng.integers(1, 3))),
                     1) for _ in range(4)]
    ref = np.zeros(labels[0].shape, np.uint8)
    ref[labels[0]] = 1
    ref[labels[1]] = 2
    pred = np.zeros_like(ref)
    pred[labels[2] | (labels[0] & (rng.random(ref.shape) > 0.2))] = 1
    pred[labels[3]] = 2
    ref_index, pred_index = index_pair(ref, pred)
    for spacing, exact in ((ONE, True), (tuple(rng.uniform(0.2, 1.5, 3)), False)):
        for label in (1, 2, None):
            ref_mask, pred_mask = (ref > 0, pred > 0) if label is None else (ref == label, pred == label)
            ours = hausdorff_from_index(ref_index, pred_index, label, spacing)
            official = _official_hd(ref_mask, pred_mask, spacing)
            if exact:
                assert ours == official
            else:
                assert ours == pytest.approx(official, rel=1e-6)


def test_hd_uses_spacing():
    ref, pred = np.zeros((3, 3, 3), np.uint8), np.zeros((3, 3, 3), np.uint8)
    spacing = (5.0, 4.0, 3.0)  # SetSpacing((3, 4, 5)) in (x, y, z)
    ref[0, 0, 2], pred[0, 0, 0] = 1, 1
    ref[0, 1, 0], pred[0, 0, 1] = 2, 2
    ref[1, :, :], pred[2, :, :] = 3, 3
    table = class_average_table(ref, pred, spacing)
    assert table["BA"]["HD"] == table["BA"]["HD95"] == 6
    assert table["R-PCA"]["HD"] == table["R-PCA"]["HD95"] == 5
    assert table["L-PCA"]["HD"] == table["L-PCA"]["HD95"] == 5


def test_hd_completely_filled_and_missing_label():
    full = np.full((2, 2, 2), 15, np.uint8)
    assert class_average_table(full, full, ONE) == {
        "3rd-A2": {"Dice": 1.0, "B0err": 0, "HD95": 0.0, "HD": 0.0},
        "ClsAvg": {"Dice": 1.0, "B0err": 0.0, "HD95": 0.0, "HD": 0.0},
        "MergedBin": {"Dice": 1.0, "B0err": 0, "HD95": 0.0, "HD": 0.0}}
    ref = np.array([[[0, 10], [10, 10]], [[0, 15], [15, 15]]], np.uint8)
    assert hausdorff(np.pad(ref == 1, 1), np.pad(ref == 1, 1), ONE) == (90, 90)  # FP/FN -> 90 mm


def test_hd_fig50_small_multiclass():
    ref = np.array([[[0, 10], [10, 10]], [[0, 15], [15, 15]]], np.uint8)
    pred = np.array([[[0, 0], [10, 10]], [[0, 0], [0, 15]]], np.uint8)
    table = class_average_table(ref, pred, ONE)
    assert table["Acom"]["HD"] == 1 and table["Acom"]["HD95"] // 0.1 / 10 == 0.8
    assert table["3rd-A2"]["HD"] == 1 and table["3rd-A2"]["HD95"] == 1


def fig54_pair() -> tuple[np.ndarray, np.ndarray]:
    """shape_11x11x5_3D_Fig54_label1-5: five planes, a 4x5 (y, x) square of label z+1 in each reference plane."""
    ref = np.zeros((5, 11, 11), np.uint8)
    for z in range(5):
        ref[z, 3:7, 3:8] = z + 1
    pred = np.zeros_like(ref)
    pred[0, 4:8, 4:9] = 1  # shifted by one voxel in x and y
    pred[1, 4:7, 4:9] = 2
    pred[1, 9, 1:6] = 2  # a bar far away
    pred[2] = np.array([[0] * 11, [0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0], [0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0],
                        [0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0], [0, 0, 3, 0, 3, 3, 3, 3, 3, 3, 0],
                        [0, 3, 3, 3, 3, 3, 3, 3, 3, 0, 0], [0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0],
                        [0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0],
                        [0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0], [0] * 11])
    pred[3, 3, 5] = pred[3, 4, 4:7] = pred[3, 5, 4:7] = pred[3, 6, 4] = pred[3, 6, 6] = pred[3, 7, 6] = 4
    pred[4, 2:5, 4:6] = pred[4, 5:7, 4:9] = pred[4, 7, 5:9] = 5
    return pred, ref


def test_hd_all_classes_fig54_exact():
    pred, ref = fig54_pair()
    table = class_average_table(ref, pred, ONE)
    assert {k: (v["HD95"], v["HD"]) for k, v in table.items()} == {
        "BA": (1.0207106769084933, 1.4142135381698608), "R-PCA": (3.184441375732422, 3.605551242828369),
        "L-PCA": (2.0, 3.0), "R-ICA": (1.4142135381698608, 1.4142135381698608), "R-MCA": (1.0500000000000007, 2.0),
        "ClsAvg": (1.7338731181621554, 2.286795663833618), "MergedBin": (3.0, 3.605551242828369)}
    for label in range(1, 6):  # test_iou_single_label_Fig54_5class
        assert iou(np.pad(ref == label, 1), np.pad(pred == label, 1)) == 0.42857142857142855


def test_hd_all_classes_nipy_scaled_image_exact():
    # scaled_image_label_123: size (x, y, z) = (2, 3, 4), spacing (1, 2, 3)
    ref = np.array([[[0, 0], [0, 2], [0, 0]], [[0, 0], [0, 2], [0, 3]], [[1, 1], [0, 2], [0, 0]],
                    [[1, 1], [0, 0], [1, 0]]], np.uint8)
    pred = np.array([[[0, 0], [3, 0], [2, 3]], [[0, 0], [0, 0], [2, 0]], [[1, 1], [0, 0], [2, 0]],
                     [[1, 1], [0, 0], [0, 0]]], np.uint8)
    table = class_average_table(ref, pred, (3.0, 2.0, 1.0))
    assert {k: (v["HD95"], v["HD"]) for k, v in table.items()} == {
        "BA": (3.1999999999999993, 4.0), "R-PCA": (2.2360680103302, 2.2360680103302),
        "L-PCA": (3.7045746207237245, 3.7416574954986572), "ClsAvg": (3.0468808770179745, 3.3259085019429526),
        "MergedBin": (2.69442720413208, 3.0)}


def test_convention_difference_island_crosses_5_percent_only_on_6_neighbour_surface():
    # a ball (r = 6) predicted exactly plus a 20-voxel line 9..28 mm beyond its surface. Surface voxels of the
    # prediction: ours 354 + 20 (island share 5.3 %), TopCoW's 26-connected contour 536 + 20 (3.6 %). The 95th
    # percentile at 0.95 * (N - 1) lands on the island for ours (between its 15 and 16 mm voxels: 15.35) and
    # on the ball for TopCoW (0).
    z, y, x = np.indices((20, 20, 52))
    ref = ((z - 9) ** 2 + (y - 9) ** 2 + (x - 9) ** 2 <= 36).astype(np.uint8)
    pred = ref.copy()
    pred[9, 9, 30:50] = 1
    table = class_average_table(ref, pred, ONE)
    assert table["BA"]["HD95"] == 0.0 and table["BA"]["HD"] == 34.0
    assert surface_distance_metrics(pred.astype(bool), ref.astype(bool), ONE)["hd95"] == pytest.approx(15.35)


# ---------------------------------------------------------------- clDice (test_clDice.py)
def test_cldice_official_flat_shapes():
    elong_gt = flat([[0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]])
    elong_pred = flat([[0] * 6, [1] * 6, [0] * 6])
    assert cldice(elong_gt, elong_pred) == 1
    t_gt = flat([[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    t_pred = flat([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    assert cldice(t_gt, t_pred) == (3 / 2) / (7 / 4)
    t_gt_multi = flat([[0, 0, 0, 6, 6], [0, 0, 0, 1, 6], [2, 3, 1, 5, 1], [2, 1, 2, 5, 5], [0, 0, 0, 0, 0]])
    t_pred_multi = flat([[0] * 5, [0] * 5, [0] * 5, [5, 1, 5, 1, 5], [0] * 5])
    assert cldice(t_gt_multi, t_pred_multi) == (3 / 2) / (7 / 4)  # merged binary, not per label
    fig51_gt = flat([[0, 6, 6, 6, 6, 0], [0, 6, 6, 0, 0, 0], [0, 6, 6, 0, 0, 0]])
    fig51_pred_1 = flat([[0, 6, 6, 6, 0, 0], [0, 6, 6, 0, 0, 0], [0, 6, 6, 0, 0, 0]])
    fig51_pred_2 = flat([[0, 6, 6, 0, 0, 0]] * 3)
    assert cldice(fig51_gt, fig51_pred_1) == 0.8571428571428571
    assert cldice(fig51_gt, fig51_pred_2) == 0.6666666666666666


def t_shape() -> np.ndarray:
    """A 2-voxel-thick T: bar along x at y = 2..3, stem along y at x = 6..7, z = 2..3."""
    shape = np.zeros((6, 15, 15), np.uint8)
    shape[2:4, 2:4, 2:13] = 1
    shape[2:4, 2:13, 6:8] = 1
    return shape


def test_convention_difference_t_shape_skeleton_depends_on_axis_order():
    ref = t_shape()
    pred = ref.copy()
    pred[:, 5:, :] = 0  # the bar and two rows of the stem: pred lies inside ref, so Tprec = 1
    skeleton_xyz = skeletonize(ref.transpose(2, 1, 0) > 0).transpose(2, 1, 0)
    skeleton_zyx = skeletonize(ref > 0)
    assert skeleton_xyz.sum() == 11 and skeleton_zyx.sum() == 12
    assert (skeleton_xyz & (pred > 0)).sum() == 5 and (skeleton_zyx & (pred > 0)).sum() == 6
    assert cldice(ref, pred) == pytest.approx(2 * (5 / 11) / (1 + 5 / 11))  # 0.625 under TopCoW
    assert centerline_dice(pred > 0, ref > 0) == pytest.approx(2 / 3)  # (z, y, x) thinning: Tsens = 6/12


def test_convention_difference_empty_skeleton_counts_zero():
    ref = t_shape()
    pred = ref.copy()
    pred[:, 4:, :] = 0  # the bar alone: 2 x 2 x 11, which (x, y, z) thinning removes entirely
    assert not skeletonize(pred.transpose(2, 1, 0) > 0).any()
    assert cldice(ref, pred) == 0  # Tprec = 0
    assert centerline_dice(pred > 0, ref > 0) == pytest.approx(0.5882352941176471)  # ours: mask as centreline


def _cldice_full_volume(ref: np.ndarray, pred: np.ndarray) -> float:
    """clDice.py's computation on the whole (x, y, z) volume, for comparison."""
    ref_xyz, pred_xyz = ref.transpose(2, 1, 0) > 0, pred.transpose(2, 1, 0) > 0
    pred_skeleton, ref_skeleton = skeletonize(pred_xyz), skeletonize(ref_xyz)
    precision = (pred_skeleton & ref_xyz).sum() / pred_skeleton.sum() if pred_skeleton.any() else 0
    sensitivity = (ref_skeleton & pred_xyz).sum() / ref_skeleton.sum() if ref_skeleton.any() else 0
    return 0 if precision + sensitivity == 0 else 2 * precision * sensitivity / (precision + sensitivity)


@pytest.mark.parametrize("seed", range(4))
def test_cldice_per_component_thinning_equals_whole_volume_thinning(seed):
    rng = np.random.default_rng(seed)
    ref = ndimage.binary_dilation(rng.random((18, 20, 16)) > 0.96, iterations=int(rng.integers(1, 3)))
    pred = ndimage.binary_dilation(rng.random((18, 20, 16)) > 0.96, iterations=1)
    pred |= ref & (rng.random(ref.shape) > 0.1)
    ref[:, 9:11, :] = pred[:, 9:11, :] = False  # a gap: at least two components each
    ref, pred = ref.astype(np.uint8), pred.astype(np.uint8) * 3
    assert ndimage.label(ref, np.ones((3, 3, 3)))[1] > 1  # several components
    assert cldice(ref, pred) == pytest.approx(_cldice_full_volume(ref, pred), abs=1e-15)


# ---------------------------------------------------------------- detection (test_detection_grp2_labels.py)
def test_detection_threshold_iou():
    ref = np.zeros((4, 6, 5), np.uint8)
    ref[1, 1:5, 1:5], ref[2, 1:5, 1:5], ref[3, 1:5, 1:5] = 10, 9, 8
    pred = np.zeros_like(ref)
    pred[0, 1, 1] = 15
    pred[1, 1:3, 1:3] = pred[1, 3, 1] = 10
    pred[2, 1, 1:3] = pred[2, 2, 2] = 9
    pred[3, 1:3, 1:3] = 8
    assert graph_metrics(ref, pred)["all_detection_dicts"] == {
        "8": {"label": "R-Pcom", "Detection": "TP"}, "9": {"label": "L-Pcom", "Detection": "FN"},
        "10": {"label": "Acom", "Detection": "TP"}, "15": {"label": "3rd-A2", "Detection": "FP"}}


def test_detection_fig50():
    ref = np.array([[[0, 10], [10, 10]], [[0, 15], [15, 15]]], np.uint8)
    pred = np.array([[[0, 0], [10, 10]], [[0, 0], [0, 15]]], np.uint8)
    assert iou(ref == 10, pred == 10) == 0.6666666666666666 and iou(ref == 15, pred == 15) == 0.3333333333333333
    assert {k: v["Detection"] for k, v in graph_metrics(ref, pred)["all_detection_dicts"].items()} == {
        "8": "TN", "9": "TN", "10": "TP", "15": "TP"}


# ---------------------------------------------------------------- topology matching (test_topology_matching.py)
def _topo(ref_2d, pred_2d) -> dict:
    return graph_metrics(np.asarray(ref_2d, np.uint8)[..., None], np.asarray(pred_2d, np.uint8)[..., None])


def test_topology_matching_anterior_np_arr():
    topo = _topo([[4, 6, 10, 10, 12, 12], [4, 4, 6, 10, 15, 15], [11, 11, 6, 6, 12, 15], [11, 4, 11, 12, 12, 15]],
                 [[4, 6, 10, 10, 12, 0], [4, 4, 6, 10, 15, 15], [11, 0, 6, 6, 0, 15], [11, 4, 11, 0, 0, 15]])
    topo = topo["all_topo_dicts"]
    assert topo["gt_topology"]["anterior"] == {
        "graph": [1, 1, 1, 1], "Acom": {"b0": 1, "neighbors": [4, 6, 12, 15]},
        "R-ACA": {"b0": 1, "neighbors": [4, 6, 12]}, "L-ACA": {"b0": 2, "neighbors": [6, 10, 11, 15]},
        "3rd-A2": {"b0": 1, "neighbors": [6, 10, 12]}}
    assert topo["pred_topology"]["anterior"] == {
        "graph": [0, 1, 1, 1], "Acom": {"detection": "TP", "b0": 1, "neighbors": [4, 6, 12, 15]},
        "R-ACA": {"detection": "TP", "b0": 2, "neighbors": [4, 6]},
        "L-ACA": {"detection": "FN", "b0": 1, "neighbors": [10, 15]},
        "3rd-A2": {"detection": "TP", "b0": 1, "neighbors": [6, 10, 12]}, "LR_flipped": False}
    assert topo["match_verdict"] == {"anterior": False, "posterior": True}


def test_topology_matching_posterior_np_arr():
    topo = _topo([[0, 2, 2, 2, 0, 0, 0, 0], [0, 2, 0, 2, 0, 0, 0, 0], [3, 3, 3, 0, 0, 8, 0, 0],
                  [3, 0, 0, 0, 9, 9, 9, 0]],
                 [[0, 2, 0, 2, 0, 0, 8, 8], [0, 2, 0, 2, 0, 8, 8, 8], [3, 3, 3, 0, 0, 8, 0, 0],
                  [3, 0, 0, 9, 9, 9, 9, 0]])["all_topo_dicts"]
    assert topo["gt_topology"]["posterior"] == {
        "graph": [1, 0, 0, 1], "R-PCA": {"b0": 1, "neighbors": [3]}, "L-PCA": {"b0": 1, "neighbors": [2]},
        "R-Pcom": {"b0": 1, "neighbors": [9]}, "L-Pcom": {"b0": 1, "neighbors": [8]}}
    assert topo["pred_topology"]["posterior"] == {
        "graph": [1, 0, 0, 1], "R-PCA": {"detection": "TP", "b0": 2, "neighbors": [3]},
        "L-PCA": {"detection": "TP", "b0": 1, "neighbors": [2, 9]},
        "R-Pcom": {"detection": "FN", "b0": 1, "neighbors": [9]},
        "L-Pcom": {"detection": "TP", "b0": 1, "neighbors": [3, 8]}, "LR_flipped": False}
    assert topo["match_verdict"] == {"anterior": True, "posterior": False}


def test_topology_matching_antpos_np_arr():
    result = _topo([[0, 1, 2, 3], [4, 0, 6, 7], [8, 9, 0, 11], [12, 0, 0, 0]],
                   [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 0, 0, 15]])
    topo = result["all_topo_dicts"]
    assert topo["gt_topology"]["posterior"] == {
        "graph": [1, 0, 1, 1], "R-PCA": {"b0": 1, "neighbors": [1, 3, 6, 7]},
        "L-PCA": {"b0": 1, "neighbors": [2, 6, 7]}, "R-Pcom": {"b0": 1, "neighbors": [4, 9, 12]},
        "L-Pcom": {"b0": 1, "neighbors": [4, 6, 8, 12]}}
    assert topo["pred_topology"]["anterior"] == {
        "graph": [0, 1, 1, 0], "Acom": {"detection": "FP", "b0": 1, "neighbors": [5, 6, 7, 9, 11, 15]},
        "R-ACA": {"detection": "TP", "b0": 1, "neighbors": [6, 7, 10, 15]},
        "L-ACA": {"detection": "TP", "b0": 1, "neighbors": [8, 9]},
        "3rd-A2": {"detection": "FP", "b0": 1, "neighbors": [10, 11]}, "LR_flipped": False}
    assert topo["pred_topology"]["posterior"]["L-Pcom"] == {"detection": "TP", "b0": 1,
                                                            "neighbors": [4, 5, 6, 8, 10, 12]}
    assert topo["match_verdict"] == {"anterior": False, "posterior": False}
    assert result["all_graph_dicts"]["anterior"] == {"gt_graph": [0, 0, 0, 0], "pred_graph": [0, 1, 1, 0]}


def test_left_right_flip_uses_x_medians():
    # LPS+: left labels lie at larger x. Swap the ICAs (4 right, 6 left) and the check fires.
    ref = np.zeros((3, 3, 12), np.uint8)
    ref[1, 1, 1:4], ref[1, 1, 8:11] = 4, 6
    flipped = ref.copy()
    flipped[1, 1, 1:4], flipped[1, 1, 8:11] = 6, 4
    assert graph_metrics(ref, ref)["all_topo_dicts"]["pred_topology"]["anterior"]["LR_flipped"] is False
    assert graph_metrics(ref, flipped)["all_topo_dicts"]["pred_topology"]["anterior"]["LR_flipped"] is True
    assert graph_metrics(ref, flipped)["all_topo_dicts"]["match_verdict"]["anterior"] is False


# ---------------------------------------------------------------- aggregates (aggregate/test_*.py)
def test_aggregate_detections_official_counts():
    cases = [{"8": {"Detection": "TN"}, "9": {"Detection": "TN"}, "10": {"Detection": "TP"}, "15": {"Detection": "TP"}},
             {"8": {"Detection": "TP"}, "9": {"Detection": "FN"}, "10": {"Detection": "TP"}, "15": {"Detection": "FP"}}]
    result = aggregate_detections(cases)
    assert result["15"] == {"label": "3rd-A2", "precision": 0.5, "recall": 1.0, "f1_score": 0.6666666666666666}
    assert result["9"] == {"label": "L-Pcom", "precision": 0, "recall": 0.0, "f1_score": 0.0}
    assert result["precision"] == {"mean": 0.625, "std": 0.414578098794425}
    assert result["recall"] == {"mean": 0.75, "std": 0.4330127018922193}
    assert result["f1_score"] == {"mean": 0.6666666666666666, "std": 0.408248290463863}


def test_aggregate_graphs_two_classes():
    dicts = [{"anterior": {"gt_graph": [0, 1, 0, 1], "pred_graph": [0, 1, 1, 0]},
              "posterior": {"gt_graph": [1, 1, 1, 1], "pred_graph": [1, 0, 1, 1]}},
             {"anterior": {"gt_graph": [1, 1, 0, 1], "pred_graph": [1, 1, 1, 1]},
              "posterior": {"gt_graph": [1, 0, 1, 0], "pred_graph": [0, 0, 0, 0]}},
             {"anterior": {"gt_graph": [0, 1, 0, 1], "pred_graph": [0, 1, 0, 1]},
              "posterior": {"gt_graph": [1, 1, 1, 1], "pred_graph": [1, 1, 1, 1]}}]
    assert aggregate_graphs(dicts) == {"anterior": 0.25, "posterior": 0.25}
    assert variant_name([0, 1, 0, 1], "Ant") == "Var_Ant_0_1_0_1"


def test_aggregate_topologies_failed_match_is_its_own_class():
    def topo(graph, matched):
        return {"gt_topology": {"anterior": {"graph": graph}, "posterior": {"graph": graph}},
                "match_verdict": {"anterior": matched, "posterior": True}}
    result = aggregate_topologies([topo([1, 0, 0, 0], True), topo([1, 0, 0, 0], False), topo([0, 1, 1, 1], True)])
    assert result == {"anterior": 0.75, "posterior": 1.0}  # class 1_0_0_0 recall 1/2, class 0_1_1_1 recall 1


def test_balanced_accuracy_ignores_classes_only_predicted():
    assert balanced_accuracy(["a", "a", "b"], ["a", "c", "c"]) == 0.25
    with pytest.raises(ValueError, match="as many predictions"):
        balanced_accuracy(["a"], [])


# ---------------------------------------------------------------- bad input and output layout
def test_bad_input_names_problem_and_fix():
    pred, ref = cubes_pair()
    with pytest.raises(ValueError, match="differs from reference shape.*resample"):
        score_topcow_case(pred[:-1], ref, ONE)
    unknown = ref.copy()
    unknown[0, 0, 0] = 13
    with pytest.raises(ValueError, match=r"\[13\].*TopCoW does not define.*relabel"):
        score_topcow_case(pred, unknown, ONE)
    with pytest.raises(ValueError, match="3D volumes"):
        score_topcow_case(pred[0], ref[0], (1.0, 1.0))
    with pytest.raises(ValueError, match="non-integer"):
        score_topcow_case(pred * 0.5, ref, ONE)
    with pytest.raises(ValueError, match="one spacing per array axis"):
        score_topcow_case(pred, ref, (1.0, 1.0))


def test_flat_row_for_csv():
    row = flat_row(score_topcow_case(*cubes_pair(), ONE))
    assert row["Detection_R-Pcom"] == "TP" and row["Detection_Acom"] == "TN"
    assert row["Variant_Pos_gt"] == row["Variant_Pos_pred"] == "Var_Pos_0_1_1_1"
    assert row["TopoMatch_Pos"] is False and row["TopoMatch_Ant"] is True
    assert row["Dice_ClsAvgDice"] == 0.8309523809523809
    assert not any(key.startswith("all_") for key in row)


# ---------------------------------------------------------------- CLI: nnmsf evaluate --convention topcow
def _write_case_folders(root):
    from pathlib import Path

    pred_dir, ref_dir = Path(root) / "pred", Path(root) / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    for name, (pred, ref) in (("donut", donut_pair()), ("cubes", cubes_pair())):
        for folder, array in ((pred_dir, pred), (ref_dir, ref)):
            image = sitk.GetImageFromArray(array)
            image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))  # the assets' LPS direction
            sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    return pred_dir, ref_dir


def test_cli_evaluate_topcow_writes_official_columns_and_names_the_convention(tmp_path, capsys):
    import csv
    import json

    from nnunet_medsam_fusion.cli import main

    pred_dir, ref_dir = _write_case_folders(tmp_path)
    out = tmp_path / "out"
    code = main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out),
                 "--convention", "topcow"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "convention: topcow" in printed and "Dice_ClsAvgDice" in printed and "HD95_ClsAvgHD95" in printed
    report = json.loads((out / "nnmsf_metrics.json").read_text())
    assert report["convention"] == "topcow"
    by_case = {case["case"]: case for case in report["cases"]}
    assert by_case["cubes"]["Dice_ClsAvgDice"] == 0.8309523809523809
    assert by_case["donut"]["HD95_ClsAvgHD95"] == 45.70710676908493
    assert report["aggregates"]["topo_var_bal_acc"] == {"anterior": 1.0, "posterior": 0.5}
    with (out / "nnmsf_metrics_cases.csv").open() as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["cubes"]["convention"] == "topcow" and rows["cubes"]["Detection_R-Pcom"] == "TP"
    assert float(rows["cubes"]["Dice_R-PCA"]) == 0.9333333333333333 and rows["donut"]["Dice_R-PCA"] == ""
    with (out / "nnmsf_metrics_summary.csv").open() as handle:
        summary = {row["metric"]: row for row in csv.DictReader(handle)}
    assert summary["B0err_ClsAvgB0err"]["convention"] == "topcow"
    assert float(summary["B0err_ClsAvgB0err"]["std"]) == 0.2651650429449553
    assert float(summary["topo_var_bal_acc_posterior"]["mean"]) == 0.5


def test_cli_evaluate_ours_stays_default_and_names_its_convention(tmp_path, capsys):
    import csv
    import json

    from nnunet_medsam_fusion.cli import main

    pred_dir, ref_dir = _write_case_folders(tmp_path)
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--out", str(out)]) == 0
    assert "convention: ours" in capsys.readouterr().out
    assert json.loads((out / "nnmsf_metrics.json").read_text())["convention"] == "ours"
    for name in ("nnmsf_metrics_cases.csv", "nnmsf_metrics_summary.csv"):
        with (out / name).open() as handle:
            assert {row["convention"] for row in csv.DictReader(handle)} == {"ours"}


def test_cli_evaluate_topcow_roi_dir_and_bad_input_exit_2(tmp_path, capsys):
    from nnunet_medsam_fusion.cli import main

    pred_dir, ref_dir = _write_case_folders(tmp_path)
    rois = tmp_path / "roi"
    rois.mkdir()
    (rois / "cubes.txt").write_text("--- ROI Meta Data ---\nSize (Voxels): 100 100 100\nLocation (Voxels): 0 0 0\n")
    args = ["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--convention", "topcow"]
    assert main(args + ["--roi-dir", str(rois), "--out", str(tmp_path / "a")]) == 2
    assert "no ROI file for case(s) donut" in capsys.readouterr().err
    (rois / "donut.txt").write_text("--- ROI Meta Data ---\nSize (Voxels): 3 2 1\nLocation (Voxels): 1 4 2\n")
    assert main(args + ["--roi-dir", str(rois), "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir), "--roi-dir", str(rois),
                 "--out", str(tmp_path / "c")]) == 2
    assert "add --convention topcow" in capsys.readouterr().err
    assert main(args + ["--per-slice", "--out", str(tmp_path / "e")]) == 2
    assert "TopCoW scores whole volumes" in capsys.readouterr().err
    bad = sitk.GetImageFromArray(np.full((8, 8, 8), 13, np.uint8))
    bad.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(bad, str(pred_dir / "cubes.nii.gz"))
    assert main(args + ["--out", str(tmp_path / "d")]) == 2
    assert "case cubes" in (err := capsys.readouterr().err) and "[13]" in err and "relabel" in err


# ---------------------------------------------------------------- CLI: nnmsf compare --convention topcow
def test_cli_compare_topcow_test_set_pools_cases_and_names_the_convention(tmp_path, capsys, monkeypatch):
    import csv

    from nnunet_medsam_fusion.cli import main

    monkeypatch.delenv("nnUNet_results", raising=False)
    pred_dir, ref_dir = _write_case_folders(tmp_path)
    perfect = tmp_path / "perfect"
    perfect.mkdir()
    for case in ("donut", "cubes"):
        sitk.WriteImage(sitk.ReadImage(str(ref_dir / f"{case}.nii.gz")), str(perfect / f"{case}.nii.gz"))
    args = ["compare", "901", "--trainers", "nnUNetTrainer", "nnUNetTrainerMedSAMFusion", "--ref", str(ref_dir),
            "--pred-dirs", f"nnUNetTrainer={pred_dir}", f"nnUNetTrainerMedSAMFusion={perfect}"]
    assert main(args + ["--out", str(tmp_path / "cmp"), "--convention", "topcow"]) == 0
    printed = capsys.readouterr().out
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "convention: topcow" in markdown and markdown in printed
    # the official e2e aggregates for the official predictions, 1 for the perfect ones
    assert "| nnUNetTrainer | nnUNet | 2 | 0.6030 ± 0.3224 |" in markdown
    assert "| 0.2500 | 1.0000 / 1.0000 | 1.0000 / 0.5000 |" in markdown
    assert "| nnUNetTrainerMedSAMFusion | Full (MS), encoder not verified | 2 | 1.0000 ± 0.0000 |" in markdown
    with (tmp_path / "cmp" / "compare_summary.csv").open() as handle:
        summary = [row for row in csv.DictReader(handle)]
    assert {row["convention"] for row in summary} == {"topcow"}
    baseline = {row["metric"]: row for row in summary if row["trainer"] == "nnUNetTrainer"}
    assert float(baseline["Dice_ClsAvgDice"]["mean"]) == 0.6029761904761904
    assert float(baseline["topo_var_bal_acc_posterior"]["mean"]) == 0.5
    with (tmp_path / "cmp" / "compare_cases.csv").open() as handle:
        cases = list(csv.DictReader(handle))
    assert len(cases) == 4 and {row["convention"] for row in cases} == {"topcow"}
    # the default convention names itself too
    assert main(args + ["--out", str(tmp_path / "ours")]) == 0
    assert "convention: ours" in (tmp_path / "ours" / "compare.md").read_text()
    for name in ("compare_cases.csv", "compare_summary.csv"):
        with (tmp_path / "ours" / name).open() as handle:
            assert {row["convention"] for row in csv.DictReader(handle)} == {"ours"}
    assert main(args + ["--out", str(tmp_path / "fig"), "--convention", "topcow", "--figures"]) == 2


# ------------------------------------------------ nnU-Net's numbering (convert topcow --labels multiclass)
def _write_numbered_cases(folder, numbering: str) -> None:
    """donut and cubes with cube 7 as 3rd-A2: TopCoW's value 15, or 13 in the converted data set's numbering."""
    from nnunet_medsam_fusion.data.convert.topcow import MULTICLASS_LABELS

    folder.mkdir(parents=True)
    for name, pair in (("donut", donut_pair()), ("cubes", cubes_pair())):
        for role, array in zip(("pred", "ref"), pair, strict=True):
            array = np.where(array == 7, 15, array).astype(np.uint8)
            if numbering == "nnunet":
                array = np.vectorize(MULTICLASS_LABELS.values.get)(array).astype(np.uint8)
            image = sitk.GetImageFromArray(array)
            image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
            (folder / role).mkdir(exist_ok=True)
            sitk.WriteImage(image, str(folder / role / f"{name}.nii.gz"))


def _converted_dataset_json() -> dict:
    from nnunet_medsam_fusion.data.convert.topcow import MAPPING_KEY, MULTICLASS_LABELS, label_mapping

    return {"labels": MULTICLASS_LABELS.names, "file_ending": ".nii.gz", "channel_names": {"0": "TOF-MRA"},
            MAPPING_KEY: label_mapping()}


def test_evaluate_topcow_scores_nnunet_numbering_through_the_dataset_json_map(tmp_path, capsys):
    import json

    from nnunet_medsam_fusion.cli import main

    _write_numbered_cases(tmp_path / "topcow", "topcow")
    _write_numbered_cases(tmp_path / "nnunet", "nnunet")
    assert 13 in sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "nnunet" / "ref" / "cubes.nii.gz")))
    args = ["evaluate", "--convention", "topcow"]
    assert main(args + ["--pred", str(tmp_path / "topcow" / "pred"), "--ref", str(tmp_path / "topcow" / "ref"),
                        "--out", str(tmp_path / "a")]) == 0
    expected = json.loads((tmp_path / "a" / "nnmsf_metrics.json").read_text())
    assert "Dice_3rd-A2" in expected["cases"][0] or "Dice_3rd-A2" in expected["cases"][1]
    numbered = [*args, "--pred", str(tmp_path / "nnunet" / "pred"), "--ref", str(tmp_path / "nnunet" / "ref")]
    # no map: refused, naming the restore command and the dataset.json option
    assert main(numbered + ["--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "[13]" in err and "nnmsf convert topcow-restore" in err and "--dataset-json" in err
    assert "topcow_label_values" in err
    # the data set's dataset.json, given or beside the predictions as nnUNetv2_predict writes it
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps(_converted_dataset_json()))
    assert main(numbered + ["--dataset-json", str(dataset_json), "--out", str(tmp_path / "c")]) == 0
    (tmp_path / "nnunet" / "pred" / "dataset.json").write_text(dataset_json.read_text())
    assert main(numbered + ["--out", str(tmp_path / "d")]) == 0
    for out in ("c", "d"):
        scored = json.loads((tmp_path / out / "nnmsf_metrics.json").read_text())
        assert scored["cases"] == expected["cases"] and scored["aggregates"] == expected["aggregates"]
        assert "topcow_label_values" in scored["labels_source"]


def test_compare_topcow_on_validation_folds_maps_through_the_model_folders_dataset_json(tmp_path, monkeypatch):
    import json

    from nnunet_medsam_fusion.evaluation.commands import compare_trainers

    dataset = "Dataset913_TopCoWMulti"
    _write_numbered_cases(tmp_path / "topcow", "topcow")
    _write_numbered_cases(tmp_path / "nnunet", "nnunet")
    preprocessed, results = tmp_path / "preprocessed" / dataset, tmp_path / "results" / dataset
    (preprocessed / "gt_segmentations").mkdir(parents=True)
    model = results / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    for case in ("donut", "cubes"):
        (tmp_path / "nnunet" / "ref" / f"{case}.nii.gz").rename(preprocessed / "gt_segmentations" / f"{case}.nii.gz")
    (tmp_path / "nnunet" / "pred").rename(model / "fold_0" / "validation")
    (preprocessed / "splits_final.json").write_text(json.dumps([{"train": [], "val": ["cubes", "donut"]}]))
    for folder in (preprocessed, model):
        (folder / "dataset.json").write_text(json.dumps(_converted_dataset_json()))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    result = compare_trainers(dataset, ["nnUNetTrainer"], folds=[0], configuration="3d_fullres",
                              convention="topcow")
    expected = compare_trainers(dataset, ["nnUNetTrainer"], convention="topcow", ref_dir=tmp_path / "topcow" / "ref",
                                pred_dirs={"nnUNetTrainer": tmp_path / "topcow" / "pred"})
    same = [json.dumps(r.aggregates["nnUNetTrainer"], sort_keys=True) for r in (result, expected)]  # NaN std
    assert same[0] == same[1]
    assert "Dice_3rd-A2" in result.aggregates["nnUNetTrainer"]
