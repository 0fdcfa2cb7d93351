"""Tests for the synthetic TOF-MRA generator (data/vessel_tree.py and data/synthetic.py)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt

from nnunet_medsam_fusion.data import synthetic
from nnunet_medsam_fusion.data.synthetic import generate_case, write_dataset
from nnunet_medsam_fusion.data.vessel_tree import (
    MIN_RADIUS_MM,
    Ellipsoid,
    VesselSegments,
    grow_vessel_tree,
    rasterise,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHAPE = (128, 128, 64)
DEFAULT_SPACING = (0.3, 0.3, 0.6)
SMALL = {"shape": (32, 32, 16), "spacing": (0.3, 0.3, 0.6)}


def _case(seed: int, shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING):
    return generate_case(shape, spacing, np.random.default_rng(np.random.SeedSequence(seed)))


@pytest.fixture(scope="module")
def default_cases():
    return [_case(seed) for seed in range(4)]


def _corner_background(image: np.ndarray) -> np.ndarray:
    """The 8 corner blocks (10 % of each side): outside any head ellipsoid the generator draws."""
    blocks = []
    for ix in (slice(0, image.shape[0] // 10), slice(-(image.shape[0] // 10), None)):
        for iy in (slice(0, image.shape[1] // 10), slice(-(image.shape[1] // 10), None)):
            for iz in (slice(0, image.shape[2] // 10), slice(-(image.shape[2] // 10), None)):
                blocks.append(image[ix, iy, iz].ravel())
    return np.concatenate(blocks)


@pytest.mark.parametrize("shape,spacing", [((32, 32, 16), (0.3, 0.3, 0.6)), ((40, 24, 20), (0.5, 0.4, 1.0)),
                                           (DEFAULT_SHAPE, DEFAULT_SPACING)])
def test_case_shapes_and_dtypes(shape, spacing):
    image, label = generate_case(shape, spacing, np.random.default_rng(0))
    assert image.shape == shape and label.shape == shape
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1} and label.any()
    assert np.all(np.isfinite(image))


def test_same_seed_gives_identical_arrays_and_seeds_differ():
    image_a, label_a = _case(7, **SMALL)
    image_b, label_b = _case(7, **SMALL)
    assert image_a.tobytes() == image_b.tobytes() and label_a.tobytes() == label_b.tobytes()
    image_c, label_c = _case(8, **SMALL)
    assert not np.array_equal(image_a, image_c) and not np.array_equal(label_a, label_c)


def test_bright_blobs_are_unlabelled_vessel_free_and_as_bright_as_vessels():
    shape, spacing = (64, 64, 16), (0.3, 0.3, 0.6)
    plain, label = generate_case(shape, spacing, np.random.default_rng(3))
    image, blob_label = generate_case(shape, spacing, np.random.default_rng(3), bright_blobs=8)
    np.testing.assert_array_equal(blob_label, label)  # the vessels and their label are untouched
    changed = np.abs(image - plain) > 0.2
    assert changed.sum() > 8 * 50  # 8 spheres of radius >= 1 mm hold >= 62 voxels each at this spacing
    # no blob touches a vessel: nothing changed within one voxel of the (partial-volume) vessel mask
    assert not (changed & binary_dilation(label > 0, iterations=1)).any()
    # as bright as the vessels: a threshold between tissue and vessels keeps the blobs
    threshold = np.percentile(plain[label == 1], 25)
    assert np.median(image[changed]) > np.percentile(plain[label == 1], 75)
    assert (image[changed] > threshold).mean() > 0.95
    # blobs are drawn from their own stream: every other voxel (noise included) is the plain volume's, exactly
    assert np.array_equal(image[~changed], plain[~changed])


def test_vessel_fraction_is_realistic(default_cases):
    fractions = [label.mean() for _, label in default_cases]
    assert all(0.002 <= f <= 0.05 for f in fractions), fractions


def test_max_vessel_half_width_from_distance_transform(default_cases):
    for _, label in default_cases:
        half_width = distance_transform_edt(label, sampling=DEFAULT_SPACING).max()
        assert 0.3 <= half_width <= 3.0


@pytest.mark.parametrize("case", range(4))
def test_partial_volume_at_vessel_borders(default_cases, case):
    image, label = default_cases[case]
    vessel = label.astype(bool)
    core = binary_erosion(vessel, iterations=2)
    inner_border = vessel & ~binary_erosion(vessel)
    outer_border = binary_dilation(vessel) & ~vessel
    centre = tuple(slice(n // 4, 3 * n // 4) for n in image.shape)  # surely inside the head
    tissue = np.zeros_like(vessel)
    tissue[centre] = True
    tissue &= ~binary_dilation(vessel, iterations=4)
    core_mean, tissue_mean = image[core].mean(), image[tissue].mean()
    contrast = core_mean - tissue_mean
    assert contrast > 0.3
    # Labelled border voxels are only partly filled: darker than the core, brighter than tissue.
    assert tissue_mean + 0.2 * contrast < image[inner_border].mean() < core_mean - 0.1 * contrast
    # Unlabelled voxels touching a vessel hold a little blood: brighter than tissue. (Measured: 0.05-0.09
    # of the contrast; binary rasterisation, supersampling=1, leaves them at -0.02 to -0.04.)
    assert image[outer_border].mean() > tissue_mean + 0.03 * contrast


def test_background_outside_head_is_rayleigh(default_cases):
    for image, _ in default_cases:
        background = _corner_background(image)
        assert background.min() >= 0.0 and background.mean() > 0.0
        # Rician noise on zero signal is Rayleigh: mean / std = sqrt(pi / (4 - pi)) ~ 1.913.
        rayleigh_ratio = math.sqrt(math.pi / (4 - math.pi))
        assert background.mean() / background.std() == pytest.approx(rayleigh_ratio, rel=0.06)


@pytest.mark.parametrize("radius", [0.4, 1.0, 2.0])
def test_rasterised_capsule_volume_matches_formula(radius):
    spacing = (0.3, 0.3, 0.6)
    a, b = np.array([6.0, 9.0, 9.0]), np.array([13.0, 11.0, 10.0])
    segments = VesselSegments(a[None], b[None], np.array([radius]), np.array([radius]))
    occupancy, brightness = rasterise(segments, (64, 64, 32), spacing, lambda r: 0.8)
    voxel_volume = float(np.prod(spacing))
    expected = math.pi * radius**2 * np.linalg.norm(b - a) + 4 / 3 * math.pi * radius**3
    assert occupancy.sum() * voxel_volume == pytest.approx(expected, rel=0.05)
    assert ((occupancy > 0) & (occupancy < 1)).any()  # partial volume at the border
    assert np.all(brightness[occupancy > 0] == np.float32(0.8)) and np.all(brightness[occupancy == 0] == 0)


def test_tree_radii_taper_within_bounds_and_stay_in_head():
    head = Ellipsoid(centre=np.array([19.0, 19.0, 19.0]), semi_axes=np.array([17.0, 17.0, 17.0]))
    segments = grow_vessel_tree(head, 2.5, np.random.default_rng(3))
    assert len(segments) > 50
    assert segments.start_radii.min() >= MIN_RADIUS_MM and segments.start_radii.max() <= 2.5
    assert np.all(segments.end_radii <= segments.start_radii)  # tapering along every step
    assert head.normalised_radius(segments.starts).max() <= 1.0


def test_generate_case_rejects_bad_geometry():
    with pytest.raises(ValueError, match="at least 16"):
        generate_case((15, 32, 32), DEFAULT_SPACING, np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        generate_case((32, 32, 32), (0.3, 0.0, 0.6), np.random.default_rng(0))


def _write(out: Path, **overrides) -> Path:
    kwargs = {"dataset_id": 501, "name": "SynthTest", "num_train": 2, "num_test": 1, "seed": 5,
              "overwrite": False, **SMALL, **overrides}
    return write_dataset(out, **kwargs)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_written_dataset_layout_json_spacing_and_content(tmp_path):
    folder = _write(tmp_path)
    assert folder == tmp_path / "Dataset501_SynthTest"
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging leftovers
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == ["SynthTest_000_0000.nii.gz",
                                                                       "SynthTest_001_0000.nii.gz"]
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["SynthTest_000.nii.gz",
                                                                       "SynthTest_001.nii.gz"]
    assert [p.name for p in (folder / "imagesTs").iterdir()] == ["SynthTest_002_0000.nii.gz"]
    assert [p.name for p in (folder / "labelsTs").iterdir()] == ["SynthTest_002.nii.gz"]
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "TOF-MRA"}
    assert meta["labels"] == {"background": 0, "vessel": 1}
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"

    children = np.random.SeedSequence(5).spawn(3)
    for i, split in [(0, "Tr"), (1, "Tr"), (2, "Ts")]:
        image = sitk.ReadImage(str(folder / f"images{split}" / f"SynthTest_{i:03d}_0000.nii.gz"))
        label = sitk.ReadImage(str(folder / f"labels{split}" / f"SynthTest_{i:03d}.nii.gz"))
        # NIfTI stores spacing as float32, so it comes back to float32 precision.
        assert image.GetSpacing() == pytest.approx(SMALL["spacing"], rel=1e-6)
        assert label.GetSpacing() == pytest.approx(SMALL["spacing"], rel=1e-6)
        assert image.GetSize() == SMALL["shape"]
        label_array = sitk.GetArrayFromImage(label).transpose(2, 1, 0)
        assert set(np.unique(label_array)) <= {0, 1}
        expected_image, expected_label = generate_case(SMALL["shape"], SMALL["spacing"],
                                                       np.random.default_rng(children[i]))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), expected_image)
        np.testing.assert_array_equal(label_array, expected_label)


def test_existing_dataset_is_refused_then_replaced_only_with_overwrite(tmp_path):
    folder = _write(tmp_path)
    neighbour = tmp_path / "Dataset502_Other"
    neighbour.mkdir()
    (neighbour / "keep.txt").write_text("mine")
    before = _snapshot(folder)

    with pytest.raises(FileExistsError, match="overwrite") as refused:
        _write(tmp_path, seed=6)
    assert str(folder) in str(refused.value)
    assert _snapshot(folder) == before

    assert _write(tmp_path, seed=6, overwrite=True) == folder
    after = _snapshot(folder)
    assert after.keys() == before.keys() and after != before
    assert (neighbour / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset501_SynthTest", "Dataset502_Other"]


def test_crash_while_overwriting_keeps_the_old_dataset(tmp_path, monkeypatch):
    folder = _write(tmp_path)
    before = _snapshot(folder)
    calls = []

    def failing_case(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return generate_case(*args)

    monkeypatch.setattr(synthetic, "generate_case", failing_case)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(tmp_path, seed=6, overwrite=True)
    assert _snapshot(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_same_id_under_another_name_is_refused(tmp_path):
    _write(tmp_path)
    with pytest.raises(FileExistsError, match="dataset id 501"):
        _write(tmp_path, name="Different", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["Dataset501_SynthTest"]


def test_empty_existing_folder_is_filled(tmp_path):
    (tmp_path / "Dataset501_SynthTest").mkdir()
    folder = _write(tmp_path)
    assert (folder / "dataset.json").is_file()


@pytest.mark.parametrize("overrides,message", [
    ({"shape": (32, 15, 16)}, "at least 16"),
    ({"num_train": 1}, "^--cases 1: nnU-Net needs at least 2 training cases"),  # the CLI's names, not Python's
    ({"num_test": -1}, "^--test-cases -1 is negative"),
    ({"spacing": (0.3, -0.3, 0.6)}, "positive"),
    ({"spacing": (0.3, float("nan"), 0.6)}, "positive"),
    ({"dataset_id": 0}, "1..999"),
    ({"dataset_id": 1000}, "1..999"),
    ({"name": "bad/name"}, "name"),
    ({"seed": -1}, "^--seed -1 is negative"),
])
def test_invalid_requests_raise_value_error_and_write_nothing(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _write(tmp_path, **overrides)
    assert list(tmp_path.iterdir()) == []


def test_cli_synth_exit_codes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "nnunet_medsam_fusion.cli", "synth", "--out", str(tmp_path),
               "--cases", "2", "--test-cases", "1", "--shape", "32", "32", "16"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "Dataset501_SyntheticTOF" / "dataset.json").is_file()
    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert second.returncode == 2
    assert "overwrite" in second.stderr
