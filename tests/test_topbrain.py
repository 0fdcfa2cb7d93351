"""TopBrain 2025 convention against the official evaluation's own test cases (github
CoWBenchmark/TopBrain_Eval_Metrics at ba4252ab0dbe9d59a9ae45058ae040b016aae0ad, package ``topbrain25_eval``).

Arrays are rebuilt here from the facts of the official test assets (shapes, label layout; the repository states no
licence, so no asset file is copied); expected values are those of the official unit tests and of the end-to-end
JSONs under test_assets/task_1_seg_output*. Arrays are in SimpleITK numpy order (z, y, x), spacing likewise.
"""

from __future__ import annotations

import csv
import filecmp
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_medsam_fusion.cli import main
from nnunet_medsam_fusion.data.convert.topbrain import LABELS, convert_topbrain
from nnunet_medsam_fusion.evaluation.conventions.topbrain import (
    aggregate,
    columns,
    score_case,
    track_from_labels,
)
from nnunet_medsam_fusion.evaluation.conventions.topbrain_labels import SIDE_ROAD_LABELS, VALID_NEIGHBOURS
from nnunet_medsam_fusion.evaluation.conventions.topcow import score_topcow_case
from nnunet_medsam_fusion.evaluation.kernels.adjacency import invalid_neighbour_counts
from nnunet_medsam_fusion.evaluation.kernels.label_index import LabelIndex
from nnunet_medsam_fusion.evaluation.writing import json_safe
from tests.test_convert import SHAPE, assert_same_geometry, leftovers, read, tof_image, write_volume
from tests.test_topcow import _cldice_full_volume, _official_hd, cubes_pair, donut_pair

ONE = (1.0, 1.0, 1.0)


# ---------------------------------------------------------------- official assets, rebuilt as arrays
def squares_pair(values: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """detection_label8910_{gt,pred}_squareL4[_MR]: three stacked 4x4 squares (z = 1, 2, 3) of ``values[:3]``;
    the prediction keeps 5, 3 and 4 voxels of them and adds one voxel of ``values[3]`` at z = 0."""
    a, b, c, extra = values
    ref = np.zeros((4, 6, 5), dtype=np.uint8)
    ref[1, 1:5, 1:5], ref[2, 1:5, 1:5], ref[3, 1:5, 1:5] = a, b, c
    pred = np.zeros_like(ref)
    pred[0, 1, 1] = extra
    pred[1, 1:3, 1:3], pred[1, 3, 1] = a, a
    pred[2, 1, 1:3], pred[2, 2, 2] = b, b
    pred[3, 1:3, 1:3] = c
    return pred, ref


def cldice_5x6x4_pair() -> tuple[np.ndarray, np.ndarray]:
    """shape_5x6x4_multiclass_clDice_{gt,pred1}: labels 40, 39 and 38 on slices z = 0, 1, 2."""
    ref = np.zeros((4, 6, 5), dtype=np.uint8)
    ref[0, 1:5, 2:5] = 40
    ref[0, :, 3] = 40
    ref[1, 0:2, 3:5] = 39
    ref[1, 2:4, :] = 39
    ref[2, 0, 0:4] = 38
    ref[2, 1:3, 0:2] = 38
    pred = np.zeros_like(ref)
    pred[0, :, 3] = 40
    pred[1, 3, :] = 39
    pred[2, 0, 0:3] = 38
    pred[2, 1:3, 0:2] = 38
    return pred, ref


def fig50_pair() -> tuple[np.ndarray, np.ndarray]:
    """shape_2x2x2_3D_Fig50_label15_10_{gt,pred}."""
    ref = np.array([[[0, 10], [10, 10]], [[0, 15], [15, 15]]], dtype=np.uint8)
    pred = np.array([[[0, 0], [10, 10]], [[0, 0], [0, 15]]], dtype=np.uint8)
    return pred, ref


# expected_e2e_test_{ct,mr}_metrics.json (task_1_seg_output): the donut and the eight cubes
DONUT = {"B0err_BA": 0, "B0err_ClsAvgB0err": 0.5, "B0err_L-ICA": 1, "B0err_MergedBin": 0,
         "Dice_BA": 0.7499999999999999, "Dice_ClsAvgDice": 0.37499999999999994, "Dice_L-ICA": 0.0,
         "Dice_MergedBin": 1.0, "HD95_BA": 1.4142135381698608, "HD95_ClsAvgHD95": 145.70710676908493,
         "HD95_L-ICA": 290.0, "HD95_MergedBin": 0.0, "HD_BA": 1.4142135381698608, "HD_ClsAvgHD": 145.70710676908493,
         "HD_L-ICA": 290.0, "HD_MergedBin": 0.0, "NbErr_BA": 1, "NbErr_ClsAvgNbErr": 1.0, "NbErr_L-ICA": 1,
         "clDice_BA": 0.8, "clDice_ClsAvgclDice": 0.4, "clDice_L-ICA": 0.0, "clDice_MergedBin": 1.0}
CUBES = {"B0err_BA": 0, "B0err_ClsAvgB0err": 0.125, "B0err_L-ICA": 0, "B0err_L-M1": 0, "B0err_L-P1P2": 0,
         "B0err_MergedBin": 0, "B0err_R-ICA": 1, "B0err_R-M1": 0, "B0err_R-P1P2": 0, "B0err_R-Pcom": 0,
         "Dice_BA": 1.0, "Dice_ClsAvgDice": 0.8309523809523809, "Dice_L-ICA": 0.8571428571428571, "Dice_L-M1": 1.0,
         "Dice_L-P1P2": 1.0, "Dice_MergedBin": 0.8869565217391304, "Dice_R-ICA": 0, "Dice_R-M1": 1.0,
         "Dice_R-P1P2": 0.9333333333333333, "Dice_R-Pcom": 0.8571428571428571, "HD95_BA": 0.0,
         "HD95_ClsAvgHD95": 36.5, "HD95_L-ICA": 1.0, "HD95_L-M1": 0.0, "HD95_L-P1P2": 0.0, "HD95_MergedBin": 2.0,
         "HD95_R-ICA": 290, "HD95_R-M1": 0.0, "HD95_R-P1P2": 0.0, "HD95_R-Pcom": 1.0, "HD_BA": 0.0,
         "HD_ClsAvgHD": 36.5, "HD_L-ICA": 1.0, "HD_L-M1": 0.0, "HD_L-P1P2": 0.0, "HD_MergedBin": 4.0,
         "HD_R-ICA": 290, "HD_R-M1": 0.0, "HD_R-P1P2": 0.0, "HD_R-Pcom": 1.0, "NbErr_BA": 4,
         "NbErr_ClsAvgNbErr": 4.571428571428571, "NbErr_L-ICA": 4, "NbErr_L-M1": 5, "NbErr_L-P1P2": 4,
         "NbErr_R-M1": 6, "NbErr_R-P1P2": 4, "NbErr_R-Pcom": 5, "clDice_BA": 0, "clDice_ClsAvgclDice": 0.0,
         "clDice_L-ICA": 0.0, "clDice_L-M1": 0, "clDice_L-P1P2": 0, "clDice_MergedBin": 0.0, "clDice_R-ICA": 0,
         "clDice_R-M1": 0, "clDice_R-P1P2": 0.0, "clDice_R-Pcom": 0.0,
         "Detection_R-Pcom": "TP"}
# expected_e2e_test_mr_2_metrics.json (task_1_seg_output_mr_2)
SQUARES_MR = {"B0err_ClsAvgB0err": 0.25, "B0err_L-MMA": 0, "B0err_L-OA": 0, "B0err_MergedBin": 0,
              "B0err_R-MMA": 0, "B0err_R-OA": 1, "Dice_ClsAvgDice": 0.2979949874686717, "Dice_L-MMA": 0.4,
              "Dice_L-OA": 0.47619047619047616, "Dice_MergedBin": 0.39344262295081966,
              "Dice_R-MMA": 0.3157894736842105, "Dice_R-OA": 0.0, "HD95_ClsAvgHD95": 74.28811833262444,
              "HD95_L-MMA": 2.3841577768325806, "HD95_L-OA": 2.3841577768325806, "HD95_MergedBin": 2.7395732164382944,
              "HD95_R-MMA": 2.3841577768325806, "HD95_R-OA": 290.0, "HD_ClsAvgHD": 74.62132030725479,
              "HD_L-MMA": 2.8284270763397217, "HD_L-OA": 2.8284270763397217, "HD_MergedBin": 2.8284270763397217,
              "HD_R-MMA": 2.8284270763397217, "HD_R-OA": 290.0, "NbErr_ClsAvgNbErr": 1.5, "NbErr_L-MMA": 1,
              "NbErr_L-OA": 2, "NbErr_R-MMA": 2, "NbErr_R-OA": 1, "clDice_ClsAvgclDice": 0.0, "clDice_L-MMA": 0.0,
              "clDice_L-OA": 0.0, "clDice_MergedBin": 0.0, "clDice_R-MMA": 0.0, "clDice_R-OA": 0.0,
              "Detection_R-OA": "FP", "Detection_L-OA": "TP", "Detection_R-MMA": "FN", "Detection_L-MMA": "TP"}
# test_score_case_task_1_seg.py::test_score_case_task_1_seg_mr (= case 1 of the mr_2 end-to-end JSON)
CLDICE_MR = {"Dice_L-STA": 0.9333333333333333, "Dice_R-MaxA": 0.5263157894736842, "Dice_L-MaxA": 0.6,
             "Dice_ClsAvgDice": 0.6865497076023392, "Dice_MergedBin": 0.6666666666666666,
             "clDice_L-STA": 0.8571428571428571, "clDice_R-MaxA": 0.8571428571428571, "clDice_L-MaxA": 1.0,
             "clDice_ClsAvgclDice": 0.9047619047619048, "clDice_MergedBin": 0.8333333333333333, "B0err_L-STA": 0,
             "B0err_R-MaxA": 0, "B0err_L-MaxA": 0, "B0err_ClsAvgB0err": 0.0, "B0err_MergedBin": 0, "HD_L-STA": 1.0,
             "HD95_L-STA": 0.6499999999999995, "HD_R-MaxA": 3.0, "HD95_R-MaxA": 3.0, "HD_L-MaxA": 1.0,
             "HD95_L-MaxA": 1.0, "HD95_ClsAvgHD95": 1.5499999999999998, "HD_ClsAvgHD": 1.6666666666666667,
             "HD_MergedBin": 1.4142135381698608, "HD95_MergedBin": 1.1035533845424652, "NbErr_L-STA": 1,
             "NbErr_R-MaxA": 2, "NbErr_L-MaxA": 1, "NbErr_ClsAvgNbErr": 1.3333333333333333}
# expected_e2e_test_ct_2_metrics.json (task_1_seg_output_ct_2)
SQUARES_CT = {"B0err_3rd-A2": 1, "B0err_Acom": 0, "B0err_ClsAvgB0err": 0.25, "B0err_L-Pcom": 0, "B0err_MergedBin": 0,
              "B0err_R-Pcom": 0, "Dice_3rd-A2": 0.0, "Dice_Acom": 0.47619047619047616,
              "Dice_ClsAvgDice": 0.2979949874686717, "Dice_L-Pcom": 0.3157894736842105,
              "Dice_MergedBin": 0.39344262295081966, "Dice_R-Pcom": 0.4, "HD95_3rd-A2": 290.0,
              "HD95_Acom": 2.3841577768325806, "HD95_ClsAvgHD95": 74.28811833262444,
              "HD95_L-Pcom": 2.3841577768325806, "HD95_MergedBin": 2.7395732164382944,
              "HD95_R-Pcom": 2.3841577768325806, "HD_3rd-A2": 290.0, "HD_Acom": 2.8284270763397217,
              "HD_ClsAvgHD": 74.62132030725479, "HD_L-Pcom": 2.8284270763397217, "HD_MergedBin": 2.8284270763397217,
              "HD_R-Pcom": 2.8284270763397217, "NbErr_3rd-A2": 0, "NbErr_Acom": 1, "NbErr_ClsAvgNbErr": 1.0,
              "NbErr_L-Pcom": 2, "NbErr_R-Pcom": 1, "clDice_3rd-A2": 0.0, "clDice_Acom": 0.0,
              "clDice_ClsAvgclDice": 0.0, "clDice_L-Pcom": 0.0, "clDice_MergedBin": 0.0, "clDice_R-Pcom": 0.0,
              "Detection_Acom": "TP", "Detection_3rd-A2": "FP", "Detection_R-Pcom": "TP", "Detection_L-Pcom": "FN"}
FIG50_CT = {"B0err_3rd-A2": 0, "B0err_Acom": 0, "B0err_ClsAvgB0err": 0.0, "B0err_MergedBin": 0, "Dice_3rd-A2": 0.5,
            "Dice_Acom": 0.8, "Dice_ClsAvgDice": 0.65, "Dice_MergedBin": 0.6666666666666666, "HD95_3rd-A2": 1.0,
            "HD95_Acom": 0.8999999999999999, "HD95_ClsAvgHD95": 0.95, "HD95_MergedBin": 1.0, "HD_3rd-A2": 1.0,
            "HD_Acom": 1.0, "HD_ClsAvgHD": 1.0, "HD_MergedBin": 1.0, "NbErr_3rd-A2": 0, "NbErr_Acom": 0,
            "NbErr_ClsAvgNbErr": 0.0, "clDice_3rd-A2": 1.0, "clDice_Acom": 1.0, "clDice_ClsAvgclDice": 1.0,
            "clDice_MergedBin": 0.0, "Detection_Acom": "TP", "Detection_3rd-A2": "TP"}


def assert_case(row: dict, expected: dict, track: str) -> None:
    """``row`` holds exactly ``expected``: every other metric column is None, every other verdict TN."""
    assert list(row) == columns(track)
    for column in columns(track):
        want = expected.get(column, "TN" if column.startswith("Detection_") else None)
        assert row[column] == want, column


@pytest.mark.parametrize(("track", "pair", "expected"), [
    ("ct", donut_pair, DONUT), ("mr", donut_pair, DONUT), ("ct", cubes_pair, CUBES), ("mr", cubes_pair, CUBES),
    ("mr", lambda: squares_pair((34, 41, 42, 33)), SQUARES_MR), ("mr", cldice_5x6x4_pair, CLDICE_MR),
    ("ct", lambda: squares_pair((10, 9, 8, 15)), SQUARES_CT), ("ct", fig50_pair, FIG50_CT)])
def test_official_e2e_case_values_match_exactly(track, pair, expected):
    assert_case(score_case(*pair(), ONE, track), expected, track)


def test_official_e2e_aggregates_ct_2():
    rows = [score_case(*squares_pair((10, 9, 8, 15)), ONE, "ct"), score_case(*fig50_pair(), ONE, "ct")]
    found = aggregate(rows, "ct")
    assert set(found) - {"dect_avg"} == {k for k in {**SQUARES_CT, **FIG50_CT} if not k.startswith("Detection_")}
    assert found["NbErr_ClsAvgNbErr"] == {"25pc": 0.25, "50pc": 0.5, "75pc": 0.75, "count": 2.0, "max": 1.0,
                                          "mean": 0.5, "min": 0.0, "std": 0.7071067811865476}
    assert found["HD95_L-Pcom"]["count"] == 1.0 and math.isnan(found["HD95_L-Pcom"]["std"])
    dect = found["dect_avg"]
    assert dect["15"] == {"label": "3rd-A2", "precision": 0.5, "recall": 1.0, "f1_score": 0.6666666666666666}
    assert dect["9"] == {"label": "L-Pcom", "precision": 0, "recall": 0.0, "f1_score": 0.0}
    assert dect["f1_score"] == {"mean": 0.14814814814814814, "std": 0.33742346589423333}
    assert dect["precision"] == {"mean": 0.1388888888888889, "std": 0.32513055307554517}
    assert dect["recall"] == {"mean": 0.16666666666666666, "std": 0.37267799624996495}


def test_official_e2e_aggregates_mr_and_ct():
    rows = [score_case(*squares_pair((34, 41, 42, 33)), ONE, "mr"), score_case(*cldice_5x6x4_pair(), ONE, "mr")]
    found = aggregate(rows, "mr")
    assert found["Dice_ClsAvgDice"] == {"25pc": 0.39513366750208856, "50pc": 0.4922723475355055,
                                        "75pc": 0.5894110275689224, "count": 2.0, "max": 0.6865497076023392,
                                        "mean": 0.4922723475355055, "min": 0.2979949874686717,
                                        "std": 0.27474967746855744}
    assert found["dect_avg"]["f1_score"] == {"mean": 0.11764705882352941, "std": 0.32218973970892123}
    # the donut and the cubes: 18 CT side-road labels, 17 MR ones, one TP (R-Pcom) in all
    for track, mean, std in (("ct", 0.05555555555555555, 0.2290614236454256),
                             ("mr", 0.058823529411764705, 0.23529411764705885)):
        rows = [score_case(*donut_pair(), ONE, track), score_case(*cubes_pair(), ONE, track)]
        assert aggregate(rows, track)["dect_avg"]["f1_score"] == {"mean": mean, "std": std}


# ---------------------------------------------------------------- official unit tests
def test_invalid_neighbours_diagonal_labels_30_31_32():
    # test_cls_avg_invalid_neighbors.py::test_invalid_neighbors_all_classes_absent_pred: labels 30, 31, 32 on the
    # diagonal of a 3x3x3 image (CT): L-PICA 1, R-AChA 2, L-AChA 1 invalid neighbours; nothing when pred is blank
    image = np.zeros((3, 3, 3), dtype=np.uint8)
    for i in range(3):
        image[i, i, i] = 30 + i
    row = score_case(image, np.zeros_like(image), ONE, "ct")
    assert (row["NbErr_L-PICA"], row["NbErr_R-AChA"], row["NbErr_L-AChA"]) == (1, 2, 1)
    assert row["NbErr_ClsAvgNbErr"] == 4 / 3
    blank = score_case(np.zeros_like(image), image, ONE, "ct")
    assert blank["NbErr_ClsAvgNbErr"] == 0 and blank["NbErr_L-PICA"] is None


def test_invalid_neighbours_isolated_blobs_score_zero():
    # test_invalid_neighbors_all_classes_isolated_blob: BA and SSS in two corners touch nothing
    image = np.zeros((3, 3, 3), dtype=np.uint8)
    image[0, 0, 0], image[2, 0, 0] = 1, 40
    row = score_case(image, image, ONE, "ct")
    assert (row["NbErr_BA"], row["NbErr_SSS"], row["NbErr_ClsAvgNbErr"]) == (0, 0, 0)


def test_detection_and_neighbours_ct_squares_34_37_38_39():
    # test_detection_sideroad_labels.py::test_detection_sideroad_labels_ThresholdIoU_CT: L-BVR IoU = 0.25 -> TP,
    # R-BVR IoU < 0.25 -> FN, ICVs -> TP, L-OA only predicted -> FP, the rest TN; and
    # test_cls_avg_invalid_neighbors.py::test_invalid_neighbors_all_classes_detection_label34373839: 1 each
    row = score_case(*squares_pair((37, 38, 39, 34)), ONE, "ct")
    verdicts = {"L-BVR": "TP", "R-BVR": "FN", "ICVs": "TP", "L-OA": "FP"}
    for label in SIDE_ROAD_LABELS["ct"]:
        name = LABELS["ct"][label]
        assert row[f"Detection_{name}"] == verdicts.get(name, "TN"), name
    assert [row[f"NbErr_{n}"] for n in ("L-OA", "ICVs", "R-BVR", "L-BVR")] == [1, 1, 1, 1]
    assert row["NbErr_ClsAvgNbErr"] == 1.0


@pytest.mark.parametrize(("rows", "expected"), [
    # utils/test_get_neighbor_per_mask.py: four corner blobs; the simple and the complex 2D masks (one slice)
    ([[1, 0, 2], [0, 0, 0], [4, 0, 3]], {1: (), 2: (), 3: (), 4: ()}),
    ([[0, 1, 1, 0, 2], [0, 1, 1, 0, 2], [0, 0, 0, 3, 3], [0, 0, 0, 3, 3]], {1: (3,), 2: (3,), 3: (1, 2)}),
    ([[0, 1, 1, 0, 2, 2, 0], [1, 1, 1, 0, 2, 0, 0], [4, 4, 0, 0, 0, 0, 3], [4, 4, 5, 5, 0, 3, 3],
      [0, 5, 5, 5, 6, 6, 6], [7, 7, 0, 6, 6, 0, 7]],
     {1: (4,), 2: (), 3: (6,), 4: (1, 5), 5: (4, 6, 7), 6: (3, 5, 7), 7: (5, 6)})])
def test_touching_labels_official_masks(rows, expected):
    index = LabelIndex.of(np.asarray(rows, dtype=np.uint8)[..., None])
    assert index.neighbours == expected
    no_neighbours_allowed = dict.fromkeys(expected, ())
    assert invalid_neighbour_counts(index.neighbours, no_neighbours_allowed) == {k: len(v) for k, v in
                                                                                 expected.items()}


def test_hd_uses_spacing_pythagorean():
    # test_cls_avg_hd95.py::test_hd95_single_label_3D_voxel_spacing: spacing (x, y, z) = (3, 4, 5)
    spacing = (5.0, 4.0, 3.0)  # (z, y, x)
    ref, pred = np.zeros((3, 3, 3), dtype=np.uint8), np.zeros((3, 3, 3), dtype=np.uint8)
    ref[0, 0, 2], pred[0, 0, 0] = 1, 1
    ref[0, 1, 0], pred[0, 0, 1] = 2, 2
    row = score_case(pred, ref, spacing, "mr")
    assert row["HD_BA"] == row["HD95_BA"] == 6
    assert row["HD_R-P1P2"] == row["HD95_R-P1P2"] == 5


def test_no_label_anywhere_scores_zero_everywhere():
    # generate_cls_avg_dict.py:97-122 and test_invalid_neighbors_all_classes_BG_images
    empty = np.zeros((3, 3, 3), dtype=np.uint8)
    row = score_case(empty, empty, ONE, "mr")
    zeros = {f"{m}_{k}": 0 for m in ("Dice", "clDice", "B0err", "HD95", "HD")
             for k in (f"ClsAvg{m}", "MergedBin")} | {"NbErr_ClsAvgNbErr": 0}
    assert_case(row, zeros, "mr")


def test_valid_neighbour_tables_are_symmetric_and_complete():
    # test_valid_neighbors.py: keys 1..40 (CT) and 1..42 (MR), every pair listed both ways
    for track, last in (("ct", 40), ("mr", 42)):
        table = VALID_NEIGHBOURS[track]
        assert list(table) == list(range(1, last + 1)) == sorted(LABELS[track])
        assert all(a in table[b] for a, found in table.items() for b in found)
    assert len(SIDE_ROAD_LABELS["ct"]) == 18 and len(SIDE_ROAD_LABELS["mr"]) == 17


# ---------------------------------------------------------------- against dense, independent computations
def _dense_invalid_neighbours(pred: np.ndarray, valid: dict[int, tuple[int, ...]]) -> dict[int, int]:
    """get_neighbor_per_mask.py's way: compare the padded map with each of its 26 shifts."""
    padded = np.pad(pred, 1)
    touching: dict[int, set[int]] = {int(v): set() for v in np.unique(pred) if v}
    for shift in [(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) != (0, 0, 0)]:
        shifted = np.roll(padded, shift, axis=(0, 1, 2))
        both = (padded != shifted) & (padded != 0) & (shifted != 0)
        for a, b in zip(padded[both].tolist(), shifted[both].tolist(), strict=True):
            touching[a].add(b)
    return {label: len(found - set(valid[label])) for label, found in touching.items()}


@pytest.mark.parametrize("seed", range(3))
def test_per_label_values_equal_dense_whole_volume_computations(seed):
    # random touching blobs of four MR labels (one only predicted, one only in the reference), anisotropic grid
    rng = np.random.default_rng(seed)
    blobs = [ndimage.binary_dilation(rng.random((16, 18, 14)) > 0.96, iterations=int(rng.integers(1, 3)))
             for _ in range(5)]
    ref, pred = np.zeros((16, 18, 14), np.uint8), np.zeros((16, 18, 14), np.uint8)
    ref[blobs[0]], ref[blobs[1]], ref[blobs[4]] = 1, 4, 41
    pred[blobs[2] | (blobs[0] & (rng.random(ref.shape) > 0.2))], pred[blobs[3]], pred[blobs[1] & blobs[3]] = 1, 2, 4
    spacing = tuple(rng.uniform(0.3, 1.2, 3))
    row = score_case(pred, ref, spacing, "mr")
    eight = np.ones((3, 3, 3))
    for label in (1, 2, 4, 41):
        name, r, p = LABELS["mr"][label], ref == label, pred == label
        assert row[f"Dice_{name}"] == pytest.approx(2 * (r & p).sum() / (r.sum() + p.sum()) if r.any() and p.any()
                                                    else 0, abs=1e-15)
        assert row[f"clDice_{name}"] == pytest.approx(_cldice_full_volume(r, p) if r.any() and p.any() else 0,
                                                      abs=1e-15)
        assert row[f"B0err_{name}"] == abs(ndimage.label(p, eight)[1] - ndimage.label(r, eight)[1])
        hd = _official_hd(np.pad(r, 1), np.pad(p, 1), spacing) if r.any() and p.any() else (290, 290)
        assert (row[f"HD95_{name}"], row[f"HD_{name}"]) == pytest.approx(hd, rel=1e-6)
    dense = _dense_invalid_neighbours(pred, VALID_NEIGHBOURS["mr"])
    assert {label: row[f"NbErr_{LABELS['mr'][label]}"] for label in dense} == dense
    assert row["NbErr_ClsAvgNbErr"] == pytest.approx(sum(dense.values()) / len(dense))
    assert row["clDice_MergedBin"] == pytest.approx(_cldice_full_volume(ref, pred), abs=1e-15)


# ---------------------------------------------------------------- where TopBrain and TopCoW differ
def test_difference_hd95_bound_290_not_90():
    # the cubes (R-ICA lost): TopCoW's class-average HD95 is 11.5 (90 mm bound), TopBrain's 36.5 (290 mm)
    pred, ref = cubes_pair()
    assert score_topcow_case(pred, ref, ONE)["HD95_ClsAvgHD95"] == 11.5
    assert score_case(pred, ref, ONE, "ct")["HD95_ClsAvgHD95"] == 36.5


def test_difference_cldice_class_average_versus_merged():
    # Fig50: each label's own skeleton lies inside its reference label (clDice 1 per class), the merged masks'
    # skeletons do not (0); TopCoW reports only the merged value
    pred, ref = fig50_pair()
    row = score_case(pred, ref, ONE, "ct")
    assert (row["clDice_ClsAvgclDice"], row["clDice_MergedBin"]) == (1.0, 0.0)
    assert score_topcow_case(pred, ref, ONE)["clDice"] == 0.0


def test_difference_side_road_label_only_predicted_is_fp():
    # a Pcom voxel predicted where the reference has none: FP, and 3rd-A3 (16, not a TopCoW label) is scored too
    ref = np.zeros((5, 5, 5), dtype=np.uint8)
    ref[1:4, 1:4, 1] = 1
    pred = ref.copy()
    pred[2, 2, 3], pred[0, 0, 4] = 8, 16
    row = score_case(pred, ref, ONE, "mr")
    assert (row["Detection_R-Pcom"], row["Detection_3rd-A3"], row["Detection_L-Pcom"]) == ("FP", "FP", "TN")
    f1 = aggregate([row], "mr")["dect_avg"]
    assert f1["8"]["f1_score"] == 0 and f1["f1_score"]["mean"] == 0


def test_difference_forbidden_touching_pair_counts_invalid_neighbour():
    # BA (1) may touch R-P1P2 (2) but not R-ICA (4): moving the touching label from 2 to 4 adds one error each
    ref = np.zeros((3, 3, 6), dtype=np.uint8)
    ref[1, 1, 0:3], ref[1, 1, 3:6] = 1, 2
    allowed = score_case(ref, ref, ONE, "mr")
    assert (allowed["NbErr_BA"], allowed["NbErr_R-P1P2"], allowed["NbErr_ClsAvgNbErr"]) == (0, 0, 0)
    pred = ref.copy()
    pred[pred == 2] = 4
    forbidden = score_case(pred, ref, ONE, "mr")
    assert (forbidden["NbErr_BA"], forbidden["NbErr_R-ICA"], forbidden["NbErr_ClsAvgNbErr"]) == (1, 1, 1.0)
    assert forbidden["NbErr_R-P1P2"] is None  # scored for predicted labels only
    assert not any(key.startswith("NbErr") for key in score_topcow_case(pred, ref, ONE))


# ---------------------------------------------------------------- API
def test_columns_name_every_label_once():
    for track, count in (("mr", 42), ("ct", 40)):
        found = columns(track)
        assert len(found) == len(set(found)) == 6 * count + 10 + 1 + len(SIDE_ROAD_LABELS[track])
        assert found[:2] == ["Dice_BA", "Dice_R-P1P2"] and "NbErr_ClsAvgNbErr" in found


def test_track_from_dataset_json_labels():
    mr = {"background": 0, **{name: value for value, name in LABELS["mr"].items()}}
    ct = {"background": 0, **{name: value for value, name in LABELS["ct"].items()}}
    assert track_from_labels(mr) == "mr" and track_from_labels(ct) == "ct"
    assert track_from_labels({"background": 0, "BA": 1, "R-P1P2": 2}) is None  # labels 1-34 fit both tracks
    assert track_from_labels({"background": 0, "vessel": 1}) is None
    assert track_from_labels({**mr, "R-ECA": 5}) is None  # a TopBrain name under another value


def test_bad_input_names_problem_and_fix():
    image = np.zeros((3, 3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="--track mr or --track ct"):
        score_case(image, image, ONE, "cta")
    bad = image.copy()
    bad[0, 0, 0] = 41  # R-MMA exists in MR only
    with pytest.raises(ValueError, match=r"label value\(s\) \[41\].*CT track"):
        score_case(bad, image, ONE, "ct")
    with pytest.raises(ValueError, match="resample the prediction"):
        score_case(image[:2], image, ONE, "mr")
    with pytest.raises(ValueError, match="non-integer"):
        score_case(image + 0.5, image, ONE, "mr")
    with pytest.raises(ValueError, match="no scored cases"):
        aggregate([], "mr")


# ---------------------------------------------------------------- nnmsf convert topbrain
def topbrain_release(root: Path) -> dict[str, np.ndarray]:
    """TopBrain_Data_Release_Batches1n2_081425/{imagesTr,labelsTr}_topbrain_{mr,ct}/ + itksnap_labelmap_txt/."""
    release = root / "TopBrain_Data_Release_Batches1n2_081425"
    masks = {}
    for modality in ("mr", "ct"):
        values = sorted(LABELS[modality])
        for i in range(1, 3):
            case = f"topcow_{modality}_{i:03d}"
            mask = np.zeros(SHAPE, dtype=np.uint8)
            for k, value in enumerate(values):  # every class somewhere
                mask[k % SHAPE[0], (k * 3 + i) % SHAPE[1], : 1 + k % SHAPE[2]] = value
            write_volume(release / f"imagesTr_topbrain_{modality}" / f"{case}_0000.nii.gz", tof_image(i))
            write_volume(release / f"labelsTr_topbrain_{modality}" / f"{case}.nii.gz", mask)
            masks[case] = mask
    (release / "itksnap_labelmap_txt").mkdir()
    (release / "itksnap_labelmap_txt" / "topbrain_mr.txt").write_text('1 255 0 0 1 1 1 "BA"\n')
    return masks


@pytest.mark.parametrize("modality", ["mr", "ct"])
def test_convert_topbrain_keeps_images_geometry_and_labels(tmp_path, modality):
    src, raw = tmp_path / "download", tmp_path / "raw"
    masks = topbrain_release(src)
    summary = convert_topbrain(src, dataset_id=851, modality=modality, raw=raw, progress=False)
    folder = raw / f"Dataset851_TopBrain_{modality.upper()}"
    assert summary.folder == folder and summary.num_train == 2
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, **{n: v for v, n in LABELS[modality].items()}}
    assert track_from_labels(dataset["labels"]) == modality  # what --convention topbrain reads back
    release = src / "TopBrain_Data_Release_Batches1n2_081425"
    for case in (f"topcow_{modality}_001", f"topcow_{modality}_002"):
        image_file = folder / "imagesTr" / f"{case}_0000.nii.gz"
        assert filecmp.cmp(image_file, release / f"imagesTr_topbrain_{modality}" / f"{case}_0000.nii.gz",
                           shallow=False)  # byte for byte
        label = read(folder / "labelsTr" / f"{case}.nii.gz")
        assert_same_geometry(label, read(image_file))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label).transpose(2, 1, 0), masks[case])


def test_convert_topbrain_refuses_wrong_layout_and_values(tmp_path):
    raw = tmp_path / "raw"
    wrong = tmp_path / "wrong"
    (wrong / "imagesTr").mkdir(parents=True)
    (wrong / "labelsTr").mkdir()
    with pytest.raises(FileNotFoundError, match="expected the sub-folders imagesTr_topbrain_mr and "
                                                "labelsTr_topbrain_mr, found .'imagesTr', 'labelsTr'."):
        convert_topbrain(wrong, dataset_id=852, raw=raw, progress=False)
    src = tmp_path / "download"
    masks = topbrain_release(src)
    labels = src / "TopBrain_Data_Release_Batches1n2_081425" / "labelsTr_topbrain_ct"
    bad = masks["topcow_ct_002"].copy()
    bad[0, 0, 0] = 41  # an MR-only value in a CT mask
    write_volume(labels / "topcow_ct_002.nii.gz", bad)
    with pytest.raises(ValueError, match=r"topcow_ct_002.*41"):
        convert_topbrain(src, dataset_id=852, modality="ct", raw=raw, progress=False)
    (labels / "topcow_ct_001.nii.gz").unlink()
    with pytest.raises(ValueError, match="images without a mask: topcow_ct_001"):
        convert_topbrain(src, dataset_id=852, modality="ct", raw=raw, progress=False)
    assert leftovers(raw) == []


def test_cli_convert_topbrain_notes_mirroring(tmp_path, monkeypatch, capsys):
    src, raw = tmp_path / "download", tmp_path / "raw"
    topbrain_release(src)
    monkeypatch.setenv("nnUNet_raw", str(raw))
    assert main(["convert", "topbrain", str(src), "--dataset-id", "853", "--modality", "ct"]) == 0
    out = capsys.readouterr().out
    assert "2 training" in out and "16 R-/L- label pairs" in out and "nnUNetTrainerNoMirroring" in out
    assert main(["convert", "topbrain", str(tmp_path / "raw"), "--dataset-id", "854"]) == 2
    assert "imagesTr_topbrain_mr" in capsys.readouterr().err


# ---------------------------------------------------------------- nnmsf evaluate / compare --convention topbrain
def write_pairs(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    """``root/pred`` and ``root/ref`` holding CASE.nii.gz of each (prediction, reference) pair, spacing 1 mm."""
    for folder in ("pred", "ref"):
        (root / folder).mkdir(parents=True)
    for case, (pred, ref) in pairs.items():
        sitk.WriteImage(sitk.GetImageFromArray(pred), str(root / "pred" / f"{case}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(ref), str(root / "ref" / f"{case}.nii.gz"))
    return root / "pred", root / "ref"


MR_PAIRS = {"mr_a": squares_pair((34, 41, 42, 33)), "mr_b": cldice_5x6x4_pair()}  # official e2e mr_2 cases
CT_PAIRS = {"ct_a": squares_pair((10, 9, 8, 15)), "ct_b": fig50_pair()}  # official e2e ct_2 cases


def read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def assert_csv_row_is(cells: dict, row: dict) -> None:
    """A CSV row holds ``row``'s values: numbers exactly, None as an empty cell, verdicts as text."""
    for column, value in row.items():
        if value is None:
            assert cells[column] == "", column
        elif isinstance(value, str):
            assert cells[column] == value, column
        else:
            assert float(cells[column]) == value, column


def json_of(value):
    return json.loads(json.dumps(json_safe(value)))


def test_cli_evaluate_topbrain_track_writes_official_columns_and_aggregates(tmp_path, capsys):
    pred, ref = write_pairs(tmp_path, MR_PAIRS)
    out = tmp_path / "out"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--convention", "topbrain", "--track", "mr",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| HD95_ClsAvgHD95 |" in printed and "NbErr_ClsAvgNbErr" in printed and "side-road detection F1" in printed
    expected = {case: score_case(*pair, ONE, "mr") for case, pair in MR_PAIRS.items()}
    assert_case(expected["mr_a"], SQUARES_MR, "mr")  # the official end-to-end values, through the files
    rows = read_csv(out / "nnmsf_metrics_cases.csv")
    assert list(rows[0]) == ["convention", "case", "track", *columns("mr")]
    for cells in rows:
        assert (cells["convention"], cells["track"]) == ("topbrain", "mr")
        assert_csv_row_is(cells, expected[cells["case"]])
    report = json.loads((out / "nnmsf_metrics.json").read_text())
    official = aggregate(list(expected.values()), "mr")
    assert report["convention"] == "topbrain" and "--track mr" in report["labels_source"]
    assert report["aggregates"] == json_of(official)
    assert [case["case"] for case in report["cases"]] == list(MR_PAIRS)
    summary = {row["metric"]: row for row in read_csv(out / "nnmsf_metrics_summary.csv")}
    assert float(summary["Dice_ClsAvgDice"]["mean"]) == official["Dice_ClsAvgDice"]["mean"]
    assert float(summary["Detection_f1_score"]["mean"]) == official["dect_avg"]["f1_score"]["mean"]
    assert float(summary["Detection_f1_score_L-MMA"]["mean"]) == official["dect_avg"]["42"]["f1_score"] == 1.0


def test_cli_evaluate_topbrain_reads_track_from_dataset_json(tmp_path, capsys):
    pred, ref = write_pairs(tmp_path, CT_PAIRS)
    dataset = {"labels": {"background": 0, **{name: value for value, name in LABELS["ct"].items()}},
               "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))  # beside the reference folder, as in nnU-Net raw
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--convention", "topbrain",
                 "--out", str(tmp_path / "out")]) == 0
    assert "TopBrain's CT label ids (track from the label names in" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "nnmsf_metrics.json").read_text())
    expected = [score_case(*pair, ONE, "ct") for pair in CT_PAIRS.values()]
    assert report["aggregates"] == json_of(aggregate(expected, "ct"))
    assert {case["track"] for case in report["cases"]} == {"ct"}
    # a --track the label names contradict is refused, naming both
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--convention", "topbrain", "--track", "mr",
                 "--out", str(tmp_path / "out_mr")]) == 2
    assert "--track mr contradicts" in capsys.readouterr().err and not (tmp_path / "out_mr").exists()


@pytest.mark.parametrize("labels", [None, {"background": 0, "BA": 1, "R-P1P2": 2}])  # none, or fits both
def test_cli_evaluate_topbrain_without_track_is_refused_naming_the_option(tmp_path, capsys, labels):
    pred, ref = write_pairs(tmp_path, MR_PAIRS)
    if labels is not None:
        (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz"}))
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--convention", "topbrain"]) == 2
    err = capsys.readouterr().err
    assert "pass --track mr or --track ct" in err
    assert ("do not say it" in err) == (labels is not None)
    assert sorted(p.name for p in pred.iterdir()) == ["mr_a.nii.gz", "mr_b.nii.gz"]  # nothing written


@pytest.mark.parametrize("convention", ["ours", "topcow"])
def test_track_belongs_to_topbrain(tmp_path, capsys, convention):
    pred, ref = write_pairs(tmp_path, MR_PAIRS)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--convention", convention,
                 "--track", "mr"]) == 2
    assert "--convention topbrain" in capsys.readouterr().err


def test_cli_compare_topbrain_two_trainers(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("nnUNet_results", raising=False)
    pred, ref = write_pairs(tmp_path, MR_PAIRS)
    out = tmp_path / "cmp"
    assert main(["compare", "901", "--trainers", "nnUNetTrainer", "nnUNetTrainerFocalDice", "--pred-dirs",
                 f"nnUNetTrainer={pred}", f"nnUNetTrainerFocalDice={ref}", "--ref", str(ref),
                 "--convention", "topbrain", "--track", "mr", "--out", str(out)]) == 0
    expected = {"nnUNetTrainer": [score_case(*pair, ONE, "mr") for pair in MR_PAIRS.values()],
                "nnUNetTrainerFocalDice": [score_case(ref, ref, ONE, "mr") for _, ref in MR_PAIRS.values()]}
    official = {trainer: aggregate(rows, "mr") for trainer, rows in expected.items()}
    markdown = (out / "compare.md").read_text()
    assert "convention: topbrain" in markdown and "Side-road F1" in markdown and "NbErr_ClsAvgNbErr" in markdown
    assert f"| {official['nnUNetTrainer']['dect_avg']['f1_score']['mean']:.4f} |" in markdown
    cases = read_csv(out / "compare_cases.csv")
    assert set(columns("mr")) <= set(cases[0]) and len(cases) == 4
    for cells in cases:
        assert_csv_row_is(cells, expected[cells["trainer"]][list(MR_PAIRS).index(cells["case"])])
    summary = read_csv(out / "compare_summary.csv")
    for trainer, aggregates in official.items():
        mine = {row["metric"]: row for row in summary if row["trainer"] == trainer}
        for metric in ("Dice_ClsAvgDice", "clDice_ClsAvgclDice", "B0err_ClsAvgB0err", "HD95_ClsAvgHD95",
                       "NbErr_ClsAvgNbErr"):
            assert float(mine[metric]["mean"]) == aggregates[metric]["mean"], (trainer, metric)
        assert float(mine["Detection_f1_score"]["mean"]) == aggregates["dect_avg"]["f1_score"]["mean"]
    assert official["nnUNetTrainerFocalDice"]["Dice_ClsAvgDice"]["mean"] == 1.0
