"""Reading label maps for scoring: arrays, their voxel geometry, case lists and dataset.json labels.

Every problem that would make a score silently wrong (a probability map, an RGB image, a missing folder, a
dataset.json without labels) raises here, naming the file and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

DEFAULT_FILE_ENDING = ".nii.gz"
# nnU-Net reads these 2D formats without physical spacing (NaturalImage2DIO reports 1 per pixel, SimpleITK too).
PIXEL_FILE_ENDINGS = tuple(NaturalImage2DIO.supported_file_endings) + (".tiff",)
# Tolerances under which a prediction counts as lying on the reference grid (docs/evaluation.md).
SPACING_RTOL = 1e-4
ORIGIN_TOL_VOXELS = 0.01  # fraction of the smallest voxel side
DIRECTION_ATOL = 1e-3


def distance_unit(file_ending: str) -> str:
    """'px' for 2D image formats without physical spacing, else 'mm'."""
    return "px" if file_ending.lower() in PIXEL_FILE_ENDINGS else "mm"


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels lie: spacing, origin and direction as SimpleITK reports them ((x, y, z) order)."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    @property
    def array_spacing(self) -> tuple[float, ...]:
        """Spacing in numpy array axis order (z first), the order the metrics take."""
        return tuple(float(s) for s in reversed(self.spacing))

    def differences(self, other: Geometry) -> list[str]:
        """What disagrees beyond the tolerances (empty when both describe the same grid)."""
        found = []  # shapes were compared first, so both have the same number of axes
        if not np.allclose(self.spacing, other.spacing, rtol=SPACING_RTOL, atol=0):
            found.append("spacing")
        if not np.allclose(self.origin, other.origin, rtol=0, atol=ORIGIN_TOL_VOXELS * min(self.spacing)):
            found.append("origin")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=DIRECTION_ATOL):
            found.append("direction")
        return found

    def __str__(self) -> str:
        def numbers(values):
            return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"

        return (f"spacing {numbers(self.spacing)}, origin {numbers(self.origin)}, "
                f"direction {numbers(self.direction)}")


def read_array(path: Path) -> tuple[np.ndarray, Geometry]:
    """Image as a numpy array (SimpleITK axis order, z first) and its geometry."""
    image = sitk.ReadImage(str(path))
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path} has {image.GetNumberOfComponentsPerPixel()} values per pixel (RGB?); "
                         "label maps hold one integer per pixel: save it as a greyscale image")
    return sitk.GetArrayFromImage(image), Geometry.of(image)


def read_segmentation(path: Path) -> tuple[np.ndarray, Geometry]:
    """Integer label map and its geometry; rejects non-integer values so a probability map is not scored."""
    array, geometry = read_array(path)
    if array.ndim not in (2, 3):
        raise ValueError(f"{path} has {array.ndim} dimensions; expected a 2D or 3D label map")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{path} holds non-integer values; pass label maps, not probabilities")
        array = array.astype(np.int64)
    return array, geometry


def read_pair(case: str, pred_path: Path, ref_path: Path) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """A prediction and its reference, refused unless they lie on the same voxel grid; the reference geometry."""
    pred, pred_geometry = read_segmentation(pred_path)
    ref, ref_geometry = read_segmentation(ref_path)
    if pred.shape != ref.shape:
        raise ValueError(f"case {case}: prediction shape {pred.shape} != reference shape {ref.shape}; "
                         "predictions must be on the reference grid (nnUNetv2_predict writes them so)")
    mismatch = pred_geometry.differences(ref_geometry)
    if mismatch:
        raise ValueError(f"case {case}: prediction and reference {' and '.join(mismatch)} disagree: prediction "
                         f"{pred_geometry}; reference {ref_geometry}. Predictions must lie on the reference "
                         "grid (nnUNetv2_predict writes them so); resample the prediction onto the reference")
    return pred, ref, ref_geometry


def list_cases(folder: Path, file_ending: str = DEFAULT_FILE_ENDING) -> dict[str, Path]:
    """Case id -> file for every file in ``folder`` that ends in ``file_ending``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist; check the path")
    cases = {p.name[: -len(file_ending)]: p for p in sorted(folder.iterdir())
             if p.is_file() and p.name.endswith(file_ending)}
    if not cases:
        raise ValueError(f"no '*{file_ending}' files in {folder}; check the folder or the file ending "
                         "(dataset.json 'file_ending')")
    return cases


def load_dataset_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset.json not found at {path}; pass the dataset's dataset.json")
    return json.loads(path.read_text())
