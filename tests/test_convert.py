"""nnmsf convert: stand-ins of each release in its published layout, with awkward geometry on purpose
(oblique and flipped directions, anisotropic spacing, float masks, small header differences)."""

from __future__ import annotations

import filecmp
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

from nnunet_medsam_fusion.cli import main
from nnunet_medsam_fusion.data.convert import (
    convert_cas2023,
    convert_costa,
    convert_pairs,
    convert_topcow,
    read_label_mapping,
    restore_topcow_labels,
)
from nnunet_medsam_fusion.data.convert.topcow import TOPCOW_CLASSES
from nnunet_medsam_fusion.testing.nnunet_env import nnunet_env, run_cli

SHAPE = (20, 16, 8)  # x, y, z
SPACING = (0.35, 0.42, 0.8)
ORIGIN = (-12.3, 40.1, 7.7)


def oblique_flipped_direction(angle_deg: float = 17.0) -> tuple[float, ...]:
    """A rotation about z followed by a flip of x: oblique and left-handed, as some scanners store it."""
    a = math.radians(angle_deg)
    rotation = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    return tuple((rotation @ np.diag([-1.0, 1.0, 1.0])).ravel())


DIRECTION = oblique_flipped_direction()


def write_volume(path: Path, array_xyz: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_xyz.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))


def tof_image(seed: int, dtype=np.int16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(300, 60, size=SHAPE)).astype(dtype)


def vessel_mask(seed: int, values=(1,)) -> np.ndarray:
    """A few random bright 'vessel' boxes, each drawn with one of ``values``."""
    rng = np.random.default_rng(1000 + seed)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    for value in values:
        x, y, z = (int(rng.integers(0, s - 3)) for s in SHAPE)
        mask[x:x + 3, y:y + 3, z:z + 3] = value
    return mask


def read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def assert_same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def verify(folder: Path, capfd) -> None:
    """nnU-Net's own check passes, without geometry warnings."""
    verify_dataset_integrity(str(folder), num_processes=1)
    out = capfd.readouterr().out
    assert "mismatch between" not in out and "Error:" not in out and "Done." in out, out


def leftovers(raw: Path) -> list[str]:
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


# ---------------------------------------------------------------- stand-ins in the published layouts

def cas2023_release(root: Path) -> dict[str, dict]:
    """data/NNN.nii.gz + mask/NNN.nii.gz: an exact uint8 mask, a float mask with rounding noise, a mask whose
    header differs from its image by rounding, and an empty mask."""
    cases = {}
    for i, case in enumerate(["001", "002", "003", "004"]):
        image, mask = tof_image(i), vessel_mask(i)
        if case == "004":
            mask[:] = 0
        write_volume(root / "data" / f"{case}.nii.gz", image)
        if case == "002":  # float mask, values a hair off 0 and 1
            noisy = mask.astype(np.float32) + np.float32(1e-5) * np.random.default_rng(0).standard_normal(SHAPE)
            write_volume(root / "mask" / f"{case}.nii.gz", noisy.astype(np.float32))
        elif case == "003":  # header rounding differences well inside the tolerances
            write_volume(root / "mask" / f"{case}.nii.gz", mask,
                         spacing=tuple(s * (1 + 2e-5) for s in SPACING),
                         origin=tuple(o + 1e-4 for o in ORIGIN),
                         direction=tuple(d + 2e-5 for d in DIRECTION))
        else:
            write_volume(root / "mask" / f"{case}.nii.gz", mask)
        cases[case] = {"image": image, "mask": mask}
    return cases


def topcow_release(root: Path) -> dict[str, np.ndarray]:
    """imagesTr/topcow_{mr,ct}_NNN_0000.nii.gz + cow_seg_labelsTr/ + roi_loc_labelsTr/ (ignored)."""
    masks = {}
    classes = list(TOPCOW_CLASSES)
    for modality in ("mr", "ct"):
        for i in range(1, 4):
            case = f"topcow_{modality}_{i:03d}"
            rng = np.random.default_rng(i)
            image = tof_image(i, np.float32) if modality == "mr" else rng.normal(40, 300, SHAPE).astype(np.int16)
            mask = np.zeros(SHAPE, dtype=np.uint8)
            # every class somewhere, one voxel row each, so 15 (3rd-A2) is always present
            for k, value in enumerate(classes):
                mask[k % SHAPE[0], (k * 3 + i) % SHAPE[1], :] = value
            write_volume(root / "imagesTr" / f"{case}_0000.nii.gz", image)
            write_volume(root / "cow_seg_labelsTr" / f"{case}.nii.gz", mask)
            (root / "roi_loc_labelsTr").mkdir(parents=True, exist_ok=True)
            (root / "roi_loc_labelsTr" / f"{case}.txt").write_text("Size (Voxels): 9 9 4\nLocation (Voxels): 1 1 1\n")
            masks[case] = mask
    return masks


def costa_release(root: Path) -> None:
    """Two subsets TaskXX_*/{imagesTr,labelsTr,imagesTs,labelsTs}/<case>.nii.gz, no _0000 suffix, float masks."""
    for t, task in enumerate(["Task01_SiteA", "Task02_SiteB"]):
        for split, cases in (("Tr", ["c1", "c2"]), ("Ts", ["c3"])):
            for j, case in enumerate(cases):
                seed = 10 * t + j + (5 if split == "Ts" else 0)
                write_volume(root / task / f"images{split}" / f"{case}.nii.gz", tof_image(seed))
                write_volume(root / task / f"labels{split}" / f"{case}.nii.gz",
                             vessel_mask(seed).astype(np.float32))


# ---------------------------------------------------------------- conversions accepted by nnU-Net

def test_cas2023_keeps_images_exactly_and_puts_masks_on_their_grid(tmp_path, capfd):
    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cases = cas2023_release(src)
    summary = convert_cas2023(src, dataset_id=801, raw=raw, progress=False)
    folder = raw / "Dataset801_CAS2023"
    assert summary.folder == folder and leftovers(raw) == [folder.name]
    assert summary.num_train == 4 and summary.empty_masks == ["004"]
    assert (summary.copied_masks, summary.rewritten_masks) == (2, 2)  # 001 and 004 copied; 002, 003 rewritten

    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "vessel": 1}
    assert dataset["numTraining"] == 4 and dataset["file_ending"] == ".nii.gz"
    assert dataset["channel_names"] == {"0": "TOF-MRA"}
    for case, truth in cases.items():
        image_file = folder / "imagesTr" / f"{case}_0000.nii.gz"
        assert filecmp.cmp(image_file, src / "data" / f"{case}.nii.gz", shallow=False)  # byte for byte
        image = read(image_file)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), truth["image"])
        assert image.GetSpacing() == pytest.approx(SPACING) and image.GetOrigin() == pytest.approx(ORIGIN)
        assert image.GetDirection() == pytest.approx(DIRECTION, abs=1e-6)
        label = read(folder / "labelsTr" / f"{case}.nii.gz")
        assert label.GetPixelID() == sitk.sitkUInt8
        assert_same_geometry(label, image)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label).transpose(2, 1, 0), truth["mask"])

    fractions = [truth["mask"].mean() for truth in cases.values()]
    text = str(summary)
    assert f"mean {100 * np.mean(fractions):.3f} %" in text
    assert "0.35 x 0.42 x 0.8" in text and "empty mask(s)" in text and "004" in text
    verify(folder, capfd)


def test_topcow_binary_merges_every_class(tmp_path, capfd):
    src, raw = tmp_path / "TopCoW2024", tmp_path / "raw"
    masks = topcow_release(src)
    summary = convert_topcow(src, dataset_id=802, raw=raw, progress=False)
    folder = raw / "Dataset802_TopCoW_MR_binary"
    assert summary.num_train == 3
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == \
        [f"topcow_mr_00{i}_0000.nii.gz" for i in (1, 2, 3)]
    label = sitk.GetArrayFromImage(read(folder / "labelsTr" / "topcow_mr_002.nii.gz")).transpose(2, 1, 0)
    np.testing.assert_array_equal(label, (masks["topcow_mr_002"] > 0).astype(np.uint8))
    verify(folder, capfd)


def test_topcow_multiclass_ct_renumbers_and_maps_predictions_back(tmp_path, capfd):
    src, raw = tmp_path / "TopCoW2024", tmp_path / "raw"
    masks = topcow_release(src)
    convert_topcow(src, dataset_id=803, raw=raw, modality="ct", labels="multiclass", progress=False)
    folder = raw / "Dataset803_TopCoW_CT_multiclass"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"}
    assert list(dataset["labels"].values()) == list(range(14))  # consecutive, as nnU-Net requires
    assert dataset["labels"]["3rd-A2"] == 13 and dataset["labels"]["BA"] == 1 and dataset["labels"]["L-ACA"] == 12
    assert dataset["topcow_label_values"]["13"] == 15
    stored = json.loads((folder / "topcow_label_map.json").read_text())
    assert stored["nnunet_to_topcow"] == dataset["topcow_label_values"]
    label = sitk.GetArrayFromImage(read(folder / "labelsTr" / "topcow_ct_001.nii.gz")).transpose(2, 1, 0)
    assert set(np.unique(label)) == set(range(14))
    np.testing.assert_array_equal(label == 13, masks["topcow_ct_001"] == 15)
    verify(folder, capfd)

    # "predictions" = the converted labels, in a folder as nnUNetv2_predict writes it (with dataset.json)
    pred = tmp_path / "pred"
    pred.mkdir()
    for path in (folder / "labelsTr").iterdir():
        (pred / path.name).write_bytes(path.read_bytes())
    (pred / "dataset.json").write_text((folder / "dataset.json").read_text())
    count = restore_topcow_labels(pred, tmp_path / "restored", read_label_mapping(pred / "dataset.json"),
                                  progress=False)
    assert count == 3
    for case, mask in masks.items():
        if case.startswith("topcow_ct"):
            restored = read(tmp_path / "restored" / f"{case}.nii.gz")
            np.testing.assert_array_equal(sitk.GetArrayFromImage(restored).transpose(2, 1, 0), mask)
            assert_same_geometry(restored, read(src / "imagesTr" / f"{case}_0000.nii.gz"))


def test_costa_merges_subsets_and_keeps_the_test_split(tmp_path, capfd):
    src, raw = tmp_path / "COSTA", tmp_path / "raw"
    costa_release(src)
    summary = convert_costa(src, dataset_id=804, raw=raw, progress=False)
    folder = raw / "Dataset804_COSTA"
    assert (summary.num_train, summary.num_test) == (4, 2)
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == \
        ["Task01_SiteA_c3_0000.nii.gz", "Task02_SiteB_c3_0000.nii.gz"]
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == \
        ["Task01_SiteA_c3.nii.gz", "Task02_SiteB_c3.nii.gz"]
    assert filecmp.cmp(folder / "imagesTr" / "Task02_SiteB_c1_0000.nii.gz",
                       src / "Task02_SiteB" / "imagesTr" / "c1.nii.gz", shallow=False)
    label = read(folder / "labelsTs" / "Task02_SiteB_c3.nii.gz")
    assert label.GetPixelID() == sitk.sitkUInt8  # float mask made integer
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label).transpose(2, 1, 0), vessel_mask(15))
    verify(folder, capfd)


def test_pairs_matches_by_case_name_and_keeps_the_image_format(tmp_path, capfd):
    raw = tmp_path / "raw"
    for i, case in enumerate(["subjA", "subjB", "subjC"]):
        write_volume(tmp_path / "scans" / f"{case}_0000.mha", tof_image(i, np.float32))
        write_volume(tmp_path / "labels" / f"{case}.nii.gz", vessel_mask(i).astype(np.float64))
    summary = convert_pairs(str(tmp_path / "scans" / "*.mha"), str(tmp_path / "labels" / "*.nii.gz"),
                            dataset_id=805, raw=raw, progress=False)
    folder = raw / "Dataset805_TOFPairs"
    assert summary.num_train == 3
    assert json.loads((folder / "dataset.json").read_text())["file_ending"] == ".mha"
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["subjA.mha", "subjB.mha", "subjC.mha"]
    assert filecmp.cmp(folder / "imagesTr" / "subjB_0000.mha", tmp_path / "scans" / "subjB_0000.mha", shallow=False)
    verify(folder, capfd)


# ---------------------------------------------------------------- bad input: refused, nothing left behind

def _bad_mask(case_dir: Path, kind: str) -> None:
    """Replace case 002's mask of a CAS stand-in by one that must be refused."""
    path = case_dir / "mask" / "002.nii.gz"
    mask = vessel_mask(2)
    if kind == "shape":
        write_volume(path, np.zeros((SHAPE[0], SHAPE[1], SHAPE[2] + 1), np.uint8))
    elif kind == "spacing":
        write_volume(path, mask, spacing=(SPACING[0], SPACING[1], 2 * SPACING[2]))
    elif kind == "origin":
        write_volume(path, mask, origin=(ORIGIN[0] + SPACING[0], *ORIGIN[1:]))
    elif kind == "direction":
        write_volume(path, mask, direction=oblique_flipped_direction(25.0))
    elif kind == "probability":
        write_volume(path, mask.astype(np.float32) * 0.5)
    elif kind == "label value":
        write_volume(path, mask * 2)


@pytest.mark.parametrize("kind, message", [
    ("shape", "mask size [20, 16, 9] differs from image size [20, 16, 8]"),
    ("spacing", "mask spacing"),
    ("origin", "away from image origin"),
    ("direction", "mask direction"),
    ("probability", "non-integer values"),
    ("label value", "label value(s) [2]"),
])
def test_bad_mask_is_refused_naming_the_case(tmp_path, kind, message):
    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cas2023_release(src)
    _bad_mask(src, kind)
    with pytest.raises(ValueError) as err:
        convert_cas2023(src, dataset_id=806, raw=raw, progress=False)
    assert "case 002" in str(err.value) and message in str(err.value)
    assert leftovers(raw) == []  # no data set, no hidden staging folder


def test_every_bad_case_is_listed_in_one_refusal(tmp_path):
    """A release with a label-2 mask, a probability mask and a mask of wrong spacing: one run names all three."""
    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cas2023_release(src)
    write_volume(src / "mask" / "001.nii.gz", vessel_mask(1) * 2)
    write_volume(src / "mask" / "002.nii.gz", vessel_mask(2).astype(np.float32) * 0.5)
    write_volume(src / "mask" / "004.nii.gz", vessel_mask(4), spacing=(SPACING[0], SPACING[1], 2 * SPACING[2]))
    with pytest.raises(ValueError) as err:
        convert_cas2023(src, dataset_id=813, raw=raw, progress=False)
    message = str(err.value)
    assert message.startswith("3 case(s) cannot be converted, nothing was written")
    assert "case 001: the mask" in message and "label value(s) [2]" in message
    assert "case 002: the mask" in message and "non-integer values" in message
    assert "case 004: mask spacing" in message and "case 003" not in message
    assert "a mask must be drawn on its own image's voxel grid" in message  # the fix for 004, said once
    assert leftovers(raw) == []


def test_nan_or_inf_in_an_image_is_refused_naming_case_and_count(tmp_path):
    """A float image holding NaN or inf is refused, in NIfTI too, where SimpleITK (nnU-Net's reader) reads them as 0.
    Every case is checked, nothing is written."""
    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cas2023_release(src)
    image = tof_image(1, dtype=np.float32)
    image[0, 0, :3] = np.nan
    image[1, 1, 0] = np.inf
    write_volume(src / "data" / "002.nii.gz", image)
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(src / "data" / "002.nii.gz")))).all()
    image = tof_image(3, dtype=np.float64)
    image[5, 5, 5] = -np.inf
    write_volume(src / "data" / "004.nii.gz", image)
    with pytest.raises(ValueError) as err:
        convert_cas2023(src, dataset_id=815, raw=raw, progress=False)
    message = str(err.value)
    assert message.startswith("2 case(s) cannot be converted, nothing was written")
    assert "case 002: the image" in message and "holds 4 NaN or infinite voxel(s)" in message
    assert "case 004: the image" in message and "holds 1 NaN or infinite voxel(s)" in message
    assert leftovers(raw) == []


def test_nan_in_an_image_of_another_format_is_refused(tmp_path):
    from nnunet_medsam_fusion.data.convert.dataset_writer import Header, check_image_values

    image = tof_image(1, dtype=np.float32)
    image[2, 2, 2] = np.nan
    write_volume(tmp_path / "001.mha", image)  # SimpleITK reads NaN from .mha as it is
    with pytest.raises(ValueError, match="case 001: the image .* holds 1 NaN or infinite voxel"):
        check_image_values(tmp_path / "001.mha", "001", Header.read(tmp_path / "001.mha"))


@pytest.mark.parametrize("kind", ["4D", "two channels"])
def test_4d_or_multichannel_image_gets_a_hint_about_images(tmp_path, kind):
    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cas2023_release(src)
    volume = tof_image(3)
    if kind == "4D":
        image = sitk.GetImageFromArray(np.stack([volume.transpose(2, 1, 0)] * 2))  # (t, z, y, x)
    else:
        image = sitk.GetImageFromArray(np.stack([volume.transpose(2, 1, 0)] * 2, axis=-1), isVector=True)
    sitk.WriteImage(image, str(src / "data" / "003.nii.gz"))
    with pytest.raises(ValueError) as err:
        convert_cas2023(src, dataset_id=814, raw=raw, progress=False)
    message = str(err.value)
    assert "case 003: the image has" in message and "a 3D single-channel volume is expected" in message
    assert "split a 4D or multi-channel file into 3D volumes" in message
    assert "voxel grid" not in message  # the hint about masks belongs to mask problems
    assert leftovers(raw) == []


def test_origin_mismatch_gives_the_distance_and_says_so():
    from nnunet_medsam_fusion.data.convert.dataset_writer import Header, geometry_problem

    image = Header((8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), 1, 1)
    mask = Header((8, 8, 8), (1.0, 1.0, 1.0), (77.0, 42.0, 0.0), tuple(np.eye(3).ravel()), 1, 1)
    text, _ = geometry_problem(image, mask)
    assert "is 87.71 mm away from image origin" in text
    assert "(straight-line distance; 77 mm along the axis that differs most)" in text


def test_id_used_in_preprocessed_or_results_is_refused(tmp_path, monkeypatch, capsys):
    """Dataset123_CAS2023 gone from raw but still in nnUNet_preprocessed / nnUNet_results: nnU-Net would stop
    with 'More than one dataset name found for dataset id 123' after another name took the id in raw."""
    src = tmp_path / "CAS2023"
    cas2023_release(src)
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
        (tmp_path / variable).mkdir()
    for variable in ("nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / variable / "Dataset123_CAS2023").mkdir()
        (tmp_path / variable / "Dataset124_Busy").mkdir()
        assert main(["convert", "cas2023", str(src), "--dataset-id", "123", "--name", "Other"]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / variable / 'Dataset123_CAS2023'} ({variable}) already uses dataset id 123" in err
        assert "--dataset-id 125" in err  # a free id: 124 is taken
        assert leftovers(tmp_path / "nnUNet_raw") == []
        (tmp_path / variable / "Dataset123_CAS2023").rmdir()


def test_overwrite_warns_about_preprocessed_data_and_models_of_the_old_data_set(tmp_path, monkeypatch, capsys):
    src = tmp_path / "CAS2023"
    cas2023_release(src)
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(variable, str(tmp_path / variable))
        (tmp_path / variable).mkdir()
    assert main(["convert", "cas2023", str(src), "--dataset-id", "815"]) == 0
    assert "WARNING: replaced" not in capsys.readouterr().out
    (tmp_path / "nnUNet_preprocessed" / "Dataset815_CAS2023").mkdir()
    (tmp_path / "nnUNet_results" / "Dataset815_CAS2023").mkdir()
    assert main(["convert", "cas2023", str(src), "--dataset-id", "815", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert (f"WARNING: replaced the raw data set, but {tmp_path / 'nnUNet_preprocessed' / 'Dataset815_CAS2023'} and "
            f"{tmp_path / 'nnUNet_results' / 'Dataset815_CAS2023'} still hold(s)") in out
    assert "rerun nnUNetv2_plan_and_preprocess" in out


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, monkeypatch, capsys):
    from nnunet_medsam_fusion.data.convert import dataset_writer

    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cas2023_release(src)
    monkeypatch.setenv("nnUNet_raw", str(raw))
    real_write = dataset_writer._write_case
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(*args)

    monkeypatch.setattr(dataset_writer, "_write_case", interrupted)
    assert main(["convert", "cas2023", str(src), "--dataset-id", "816"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("nnmsf convert: interrupted; nothing was written (an existing data set "
                                            "is left as it was)")
    assert "Traceback" not in err and "KeyboardInterrupt" not in err  # above it only the progress bar
    assert leftovers(raw) == []


def test_topcow_unused_label_value_is_refused(tmp_path):
    src, raw = tmp_path / "TopCoW", tmp_path / "raw"
    masks = topcow_release(src)
    bad = masks["topcow_mr_003"].copy()
    bad[0, 0, 0] = 13
    write_volume(src / "cow_seg_labelsTr" / "topcow_mr_003.nii.gz", bad)
    with pytest.raises(ValueError, match=r"case topcow_mr_003: .* label value\(s\) \[13\]"):
        convert_topcow(src, dataset_id=807, raw=raw, labels="multiclass", progress=False)
    assert leftovers(raw) == []


def test_nan_in_a_mask_is_refused(tmp_path):
    """NIfTI readers turn NaN into 0, so this is checked on .mha masks (pairs)."""
    for i, case in enumerate(["a", "b"]):
        write_volume(tmp_path / "img" / f"{case}.nii.gz", tof_image(i))
        mask = vessel_mask(i).astype(np.float32)
        mask[0, 0, 0] = np.nan if case == "b" else 0
        write_volume(tmp_path / "seg" / f"{case}.mha", mask)
    with pytest.raises(ValueError, match="case b: the mask .* contains NaN"):
        convert_pairs(str(tmp_path / "img" / "*"), str(tmp_path / "seg" / "*"), dataset_id=812,
                      raw=tmp_path / "raw", progress=False)
    assert leftovers(tmp_path / "raw") == []


def test_existing_target_needs_overwrite_and_is_kept_on_refusal(tmp_path):
    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cas2023_release(src)
    convert_cas2023(src, dataset_id=808, raw=raw, progress=False)
    marker = raw / "Dataset808_CAS2023" / "dataset.json"
    before = marker.read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_cas2023(src, dataset_id=808, raw=raw, progress=False)
    with pytest.raises(FileExistsError, match="already uses dataset id 808"):
        convert_cas2023(src, dataset_id=808, name="Other", raw=raw, overwrite=True, progress=False)
    _bad_mask(src, "spacing")
    with pytest.raises(ValueError, match="case 002"):
        convert_cas2023(src, dataset_id=808, raw=raw, overwrite=True, progress=False)
    assert marker.read_text() == before and leftovers(raw) == ["Dataset808_CAS2023"]
    (src / "mask" / "002.nii.gz").unlink()
    (src / "data" / "002.nii.gz").unlink()
    summary = convert_cas2023(src, dataset_id=808, raw=raw, overwrite=True, progress=False)
    assert summary.num_train == 3 and leftovers(raw) == ["Dataset808_CAS2023"]
    assert not (raw / "Dataset808_CAS2023" / "imagesTr" / "002_0000.nii.gz").exists()


def test_unpaired_files_and_wrong_layouts_are_named(tmp_path):
    src, raw = tmp_path / "CAS2023", tmp_path / "raw"
    cas2023_release(src)
    (src / "mask" / "003.nii.gz").unlink()
    with pytest.raises(ValueError, match="images without a mask: 003"):
        convert_cas2023(src, dataset_id=809, raw=raw, progress=False)
    with pytest.raises(FileNotFoundError, match="expected the sub-folders imagesTr, cow_seg_labelsTr"):
        convert_topcow(src, dataset_id=809, raw=raw, progress=False)
    topcow_release(tmp_path / "TopCoW")
    for path in [*(tmp_path / "TopCoW").glob("*/topcow_ct_*")]:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no topcow_ct_\* cases \(modalities present: \['mr'\]\)"):
        convert_topcow(tmp_path / "TopCoW", dataset_id=809, raw=raw, modality="ct", progress=False)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        convert_pairs(str(tmp_path / "nowhere" / "*.nii.gz"), str(src / "mask" / "*"), dataset_id=809, raw=raw)
    assert leftovers(raw) == []


def test_cli_convert_and_restore(tmp_path, monkeypatch, capsys):
    src, raw = tmp_path / "TopCoW", tmp_path / "raw"
    topcow_release(src)
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert main(["convert", "topcow", str(src), "--dataset-id", "810", "--labels", "multiclass"]) == 2
    assert "nnUNet_raw is not set" in capsys.readouterr().err

    monkeypatch.setenv("nnUNet_raw", str(raw))
    assert main(["convert", "topcow", str(src), "--dataset-id", "810", "--labels", "multiclass",
                 "--name", "CoW"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "3 training" in out and "-tr nnUNetTrainerMedSAM2Fusion_NoMirroring" in out
    assert "next: nnUNetv2_plan_and_preprocess -d 810 -c 2d 3d_fullres --verify_dataset_integrity" in out  # README's
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "nnUNetv2_plan_and_preprocess -d 123 -c 2d 3d_fullres --verify_dataset_integrity" in readme
    assert main(["convert", "topcow", str(src), "--dataset-id", "810", "--name", "CoW"]) == 2
    assert "--overwrite" in capsys.readouterr().err

    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "topcow_mr_001.nii.gz").write_bytes((raw / "Dataset810_CoW" / "labelsTr" / "topcow_mr_001.nii.gz")
                                                .read_bytes())
    assert main(["convert", "topcow-restore", str(pred), str(tmp_path / "back"), "--dataset-id", "810"]) == 0
    restored = sitk.GetArrayFromImage(read(tmp_path / "back" / "topcow_mr_001.nii.gz"))
    assert set(np.unique(restored)) == {0, *TOPCOW_CLASSES}
    assert main(["convert", "topcow-restore", str(pred), str(tmp_path / "back2")]) == 2  # no dataset.json there
    assert "--dataset-id" in capsys.readouterr().err


@pytest.mark.slow
def test_nnunet_plan_and_preprocess_accepts_a_conversion(tmp_path):
    """nnU-Net's own CLI, --verify_dataset_integrity on, on the oblique/flipped/anisotropic CAS stand-in."""
    cas2023_release(tmp_path / "CAS2023")
    env = nnunet_env(tmp_path)
    done = run_cli(["nnmsf", "convert", "cas2023", str(tmp_path / "CAS2023"), "--dataset-id", "811"], env)
    assert "4 training" in done.stdout
    done = run_cli(["nnUNetv2_plan_and_preprocess", "-d", "811", "--verify_dataset_integrity", "-c", "2d",
                    "-npfp", "1", "-np", "1"], env)
    assert "mismatch between" not in done.stdout and "verify_dataset_integrity Done" in done.stdout
    assert (tmp_path / "preprocessed" / "Dataset811_CAS2023" / "nnUNetPlans.json").is_file()
