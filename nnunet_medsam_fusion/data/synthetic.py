"""Synthetic TOF-MRA volumes with vessel labels, written as an nnU-Net v2 raw data set.

Why: tests, the demo and benchmarks need vessel data that can be shipped and regenerated anywhere (no
download). The image model keeps what makes TOF-MRA vessel segmentation hard: thin bright tubes with
partial volume at their borders on grey tissue, a dark background outside the head, a smooth
multiplicative bias field, Rician noise and anisotropic voxels. Optional bright blobs (as bright as blood, not
vessels) make a harder set on which intensity alone does not find the vessels: TOF-MRA has such structures too
(fat, subacute haematoma, other short-T1 tissue).
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
from scipy.ndimage import gaussian_filter

from nnunet_medsam_fusion.data.raw_dataset import check_request, replace_folder, target_folder
from nnunet_medsam_fusion.data.vessel_tree import (
    MAX_ROOT_RADIUS_MM,
    MIN_RADIUS_MM,
    Ellipsoid,
    grow_vessel_tree,
    rasterise,
)

MIN_SIDE = 16
CHANNEL_NAME = "TOF-MRA"  # not "CT", so nnU-Net normalises with a per-case z-score
LABELS = {"background": 0, "vessel": 1}
FILE_ENDING = ".nii.gz"


def _check_geometry(shape, spacing) -> tuple[tuple[int, int, int], np.ndarray]:
    if len(shape) != 3 or any(int(side) != side or side < MIN_SIDE for side in shape):
        raise ValueError(f"shape {tuple(shape)} is invalid: give three whole numbers, each at least "
                         f"{MIN_SIDE} (e.g. --shape 128 128 64)")
    step = np.asarray(spacing, dtype=float)
    if step.shape != (3,) or not np.all(np.isfinite(step)) or np.any(step <= 0):
        raise ValueError(f"spacing {tuple(spacing)} is invalid: give three positive voxel sizes in mm "
                         f"(e.g. --spacing 0.3 0.3 0.6)")
    return (int(shape[0]), int(shape[1]), int(shape[2])), step


def _axis_coordinates(shape: tuple[int, int, int], step: np.ndarray) -> list[np.ndarray]:
    """Voxel-centre coordinates in mm per axis, shaped to broadcast to ``shape``."""
    return [np.arange(n).reshape([-1 if k == axis else 1 for k in range(3)]) * step[axis]
            for axis, n in enumerate(shape)]


def _bias_field(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """exp of a random quadratic polynomial: a smooth receive-coil shading of roughly +-20 %."""
    u, v, w = (np.linspace(-1.0, 1.0, n).reshape([-1 if k == axis else 1 for k in range(3)])
               for axis, n in enumerate(shape))
    terms = (u, v, w, u * u, v * v, w * w, u * v, v * w, u * w)
    coefficients = rng.normal(0.0, 0.08, size=len(terms))
    return np.exp(sum(c * term for c, term in zip(coefficients, terms, strict=True)))


def _bright_blobs(coordinates: list[np.ndarray], head: Ellipsoid, occupancy: np.ndarray, count: int,
                  rng: np.random.Generator, tries: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` spheres (radius 1.0-1.8 mm) in the head touching no vessel: (mask, blood-bright signal).

    A sphere that would cover a vessel voxel is drawn again (``tries`` times), so no vessel hides in a blob.
    """
    x, y, z = coordinates
    mask = np.zeros(occupancy.shape, dtype=bool)
    signal = np.zeros(occupancy.shape)
    for _ in range(count):
        for _ in range(tries):
            direction = rng.standard_normal(3)
            centre = head.centre + head.semi_axes * 0.8 * rng.uniform() ** (1 / 3) * direction / np.linalg.norm(
                direction)
            radius = rng.uniform(1.0, 1.8)
            inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius**2
            if not occupancy[inside].any():
                mask |= inside
                signal[inside] = rng.uniform(0.85, 1.0)  # as bright as blood in a large vessel
                break
    return mask, signal


def generate_case(shape: tuple[int, int, int], spacing: tuple[float, float, float],
                  rng: np.random.Generator, bright_blobs: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic TOF-MRA volume: (float32 image, uint8 vessel label), both in (x, y, z) order.

    Vessel label = voxels at least half filled by a vessel. Intensities are in arbitrary units
    (tissue ~0.3, large vessels ~0.9, background noise ~0.04); nnU-Net z-scores them anyway.
    ``bright_blobs`` spheres (radius 1.0-1.8 mm) of blood-bright signal are put into the tissue, unlabelled and
    touching no vessel: shape, not intensity, tells them from vessels. With 0, volumes are as without the option.
    """
    shape, step = _check_geometry(shape, spacing)
    extent = np.asarray(shape) * step
    head = Ellipsoid(centre=(np.asarray(shape) - 1) * step / 2,
                     semi_axes=0.5 * extent * rng.uniform(0.82, 0.95, size=3))
    # Small volumes (tests) get proportionally thinner roots so vessels do not fill them.
    root_radius_max = min(MAX_ROOT_RADIUS_MM, max(2 * MIN_RADIUS_MM, 0.065 * extent.min()))
    segments = grow_vessel_tree(head, root_radius_max, rng)

    blood = rng.uniform(0.85, 1.0)  # inflow signal; slower flow in thin vessels is partly saturated
    occupancy, vessel_signal = rasterise(segments, shape, tuple(step),
                                         lambda radius: blood * (0.6 + 0.4 * min(1.0, radius / 1.5)))
    label = (occupancy >= 0.5).astype(np.uint8)

    x, y, z = _axis_coordinates(shape, step)
    depth = np.sqrt(((x - head.centre[0]) / head.semi_axes[0]) ** 2
                    + ((y - head.centre[1]) / head.semi_axes[1]) ** 2
                    + ((z - head.centre[2]) / head.semi_axes[2]) ** 2)
    head_edge = np.clip((1.0 - depth) * head.semi_axes.min() / step.min(), 0.0, 1.0)  # ~1 voxel ramp
    texture = gaussian_filter(rng.standard_normal(shape), sigma=1.5 / step)
    texture /= texture.std()
    tissue = rng.uniform(0.25, 0.35) * (1.0 + 0.06 * texture) * head_edge
    if bright_blobs:
        blob, blob_signal = _bright_blobs([x, y, z], head, occupancy, bright_blobs, rng.spawn(1)[0])
        tissue = np.where(blob, blob_signal * (1.0 + 0.03 * texture), tissue)

    clean = (tissue * (1.0 - occupancy) + vessel_signal * occupancy) * _bias_field(shape, rng)
    sigma = rng.uniform(0.02, 0.04)
    # Rician: magnitude of the complex signal with Gaussian noise on both channels.
    image = np.hypot(clean + sigma * rng.standard_normal(shape), sigma * rng.standard_normal(shape))
    return image.astype(np.float32), label


def _write_nifti(array: np.ndarray, spacing: np.ndarray, path: Path) -> None:
    # SimpleITK's arrays are (z, y, x); ours are (x, y, z).
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    sitk.WriteImage(image, str(path), useCompression=True)


def _check_request(dataset_id: int, name: str, num_train: int, num_test: int, seed: int) -> None:
    check_request(dataset_id, name)
    if num_train < 2:
        raise ValueError(f"--cases {num_train}: nnU-Net needs at least 2 training cases (--cases 2 or more)")
    if num_test < 0:
        raise ValueError(f"--test-cases {num_test} is negative: give 0 or more test cases")
    if seed < 0:
        raise ValueError(f"--seed {seed} is negative: give a seed >= 0")


def write_dataset(out: Path, *, dataset_id: int, name: str, num_train: int, num_test: int,
                  shape: tuple[int, int, int], spacing: tuple[float, float, float], seed: int,
                  overwrite: bool, bright_blobs: int = 0) -> Path:
    """Writes out/Dataset{dataset_id:03d}_{name}/ in nnU-Net v2 raw layout; returns that folder.

    Cases are numbered across the split (training 000..n-1, test n..), case i drawn from child i of
    ``SeedSequence(seed)``, with ``bright_blobs`` unlabelled blood-bright spheres each (see
    ``generate_case``). The set is written to a hidden sibling and renamed into place, so an
    interrupted run never leaves a half data set, and ``overwrite`` replaces only this folder.
    """
    _check_request(dataset_id, name, num_train, num_test, seed)
    shape, step = _check_geometry(shape, spacing)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folder = target_folder(out, dataset_id, name, overwrite)

    staging = out / f".{folder.name}.writing-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _write_cases(staging, folder.name, name, num_train, num_test, shape, step, seed, bright_blobs)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, folder)
    return folder


@dataclass(frozen=True)
class SyntheticSet:
    """A named synthetic set (``write_dataset``'s arguments), so the demo and the benchmarks write it one way."""

    dataset_id: int
    name: str
    num_train: int
    num_test: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] = (0.3, 0.3, 0.6)
    seed: int = 0
    bright_blobs: int = 0

    @property
    def dataset(self) -> str:
        return f"Dataset{self.dataset_id:03d}_{self.name}"

    def write(self, out: Path, overwrite: bool = True) -> Path:
        return write_dataset(out, dataset_id=self.dataset_id, name=self.name, num_train=self.num_train,
                             num_test=self.num_test, shape=self.shape, spacing=self.spacing, seed=self.seed,
                             overwrite=overwrite, bright_blobs=self.bright_blobs)


def _write_cases(folder: Path, dataset_name: str, name: str, num_train: int, num_test: int,
                 shape: tuple[int, int, int], step: np.ndarray, seed: int, bright_blobs: int) -> None:
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir()
    children = np.random.SeedSequence(seed).spawn(num_train + num_test)
    for i, child in enumerate(children):
        split = "Tr" if i < num_train else "Ts"
        image, label = generate_case(shape, tuple(step), np.random.default_rng(child), bright_blobs)
        _write_nifti(image, step, folder / f"images{split}" / f"{name}_{i:03d}_0000{FILE_ENDING}")
        _write_nifti(label, step, folder / f"labels{split}" / f"{name}_{i:03d}{FILE_ENDING}")
    generate_dataset_json(
        str(folder), channel_names={0: CHANNEL_NAME}, labels=dict(LABELS), num_training_cases=num_train,
        file_ending=FILE_ENDING, dataset_name=dataset_name,
        description="Synthetic TOF-MRA: random tapering vessel trees with partial volume, bias field and "
                    "Rician noise (nnunet-medsam-fusion)",
        license="CC0-1.0 (synthetic data)", converted_by="nnmsf synth",
        synthetic={"seed": seed, "shape": list(shape), "spacing_mm": [float(s) for s in step],
                   "num_test": num_test, "bright_blobs": bright_blobs},
    )
