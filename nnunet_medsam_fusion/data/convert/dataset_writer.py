"""Checks image/mask pairs and writes them as one nnU-Net v2 raw data set, all or nothing.

Why one writer for every release: the rules that make nnU-Net accept a data set (and keep the user's data
intact) are the same everywhere.

- Images are copied byte for byte, so voxel values, spacing, origin and direction stay exactly as released. A
  floating-point image that holds NaN or infinite voxels is refused (nnU-Net would preprocess and train on them).
- A mask must lie on its image's grid: same shape and spacing, and origin and direction equal within the
  tolerances below (header rounding, float32 storage). A mask that differs by more is refused, naming the case.
- Mask values must be whole numbers (float storage is fine: 0.9999999 becomes 1) that the release's label
  table knows. The mask is then written as uint8 with the image's exact geometry, or copied when nothing
  needs changing.
- Every case is checked before the conversion is refused: one error lists every bad case and why (header and
  value problems together), each problem with its own fix.
- Everything is written into a hidden sibling folder and renamed into place at the end, as ``nnmsf synth``
  does, so a refused or interrupted conversion leaves nothing behind.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel
import numpy as np
import SimpleITK as sitk
from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from tqdm import tqdm

from nnunet_medsam_fusion.data.raw_dataset import check_request, replace_folder, stale_folders, target_folder
from nnunet_medsam_fusion.settings import nnunet_folder

# Tolerances between a mask's header and its image's (ours; documented in docs/data.md).
SPACING_RTOL = 1e-3  # relative, per axis
ORIGIN_TOL_VOXELS = 0.01  # in units of the image's smallest voxel side
DIRECTION_ATOL = 1e-3  # per direction-cosine entry
VALUE_ATOL = 1e-3  # distance of a stored mask value from the nearest whole number
# What nnU-Net reads: .nii with its NibabelIO, the others with its SimpleITKIO.
FILE_ENDINGS = (*SimpleITKIO.supported_file_endings, ".nii")
MAX_REPORTED = 8  # names listed in one error message (every bad case is listed, though)
# The fix for each kind of header problem (value problems carry theirs in their text).
GRID_FIX = ("a mask must be drawn on its own image's voxel grid: resample it onto its image with nearest-neighbour "
            "interpolation, or re-export it from the image it was drawn on")
VOLUME_FIX = ("nnU-Net reads one 3D volume per image file here: split a 4D or multi-channel file into 3D volumes "
              "(one per time point or channel) and convert the one you want")
READ_FIX = "re-download or re-export the files nnU-Net cannot read"


@dataclass(frozen=True)
class SourceCase:
    """One case of a release: the nnU-Net case name, its image file and (for labelled cases) its mask file."""

    name: str
    image: Path
    mask: Path | None
    split: str = "Tr"  # "Tr" (imagesTr/labelsTr) or "Ts" (imagesTs, plus labelsTs when a mask is given)


@dataclass(frozen=True)
class LabelTable:
    """The labels nnU-Net will see (``dataset.json``) and how the release's mask values map onto them."""

    names: dict[str, int]  # e.g. {"background": 0, "vessel": 1}
    values: dict[int, int]  # release value -> nnU-Net value; any other value in a mask is refused

    def lookup(self) -> np.ndarray:
        """Array mapping release value -> nnU-Net value, -1 for values the release does not use."""
        table = np.full(max(self.values) + 1, -1, dtype=np.int16)
        for source, target in self.values.items():
            table[source] = target
        return table


BINARY_LABELS = LabelTable(names={"background": 0, "vessel": 1}, values={0: 0, 1: 1})


@dataclass(frozen=True)
class Release:
    """What dataset.json says about where the data came from."""

    channel_name: str  # "TOF-MRA" (nnU-Net z-scores each case) or "CT" (nnU-Net's CT normalisation)
    description: str
    reference: str
    licence: str
    converted_by: str


@dataclass
class ConversionSummary:
    """What was written: printed at the end of ``nnmsf convert``."""

    folder: Path
    num_train: int = 0
    num_test: int = 0
    empty_masks: list[str] = field(default_factory=list)
    vessel_fractions: list[float] = field(default_factory=list)  # foreground fraction of each labelled case
    spacings: list[tuple[float, ...]] = field(default_factory=list)  # of every image
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    copied_masks: int = 0
    rewritten_masks: int = 0
    stale: list[Path] = field(default_factory=list)  # preprocessed data / models of a replaced data set

    def __str__(self) -> str:
        fractions = np.asarray(self.vessel_fractions) * 100
        spacing = np.asarray(self.spacings)
        shapes = np.asarray(self.shapes)
        lines = [
            f"wrote {self.folder}",
            f"  cases: {self.num_train} training" + (f", {self.num_test} test" if self.num_test else ""),
            f"  vessel fraction: mean {fractions.mean():.3f} %, min {fractions.min():.3f} %, "
            f"max {fractions.max():.3f} % of voxels",
            f"  spacing (mm, x y z): min {_triple(spacing.min(axis=0))}, max {_triple(spacing.max(axis=0))}",
            f"  size (voxels, x y z): min {_triple(shapes.min(axis=0), '{:d}')}, "
            f"max {_triple(shapes.max(axis=0), '{:d}')}",
            f"  masks: {self.copied_masks} copied unchanged, {self.rewritten_masks} rewritten as integer labels "
            "on their image's grid",
        ]
        if self.empty_masks:
            lines.append(f"  WARNING: {len(self.empty_masks)} empty mask(s) (no foreground): "
                         f"{', '.join(self.empty_masks[:MAX_REPORTED])}"
                         + (" ..." if len(self.empty_masks) > MAX_REPORTED else ""))
        if self.stale:
            lines.append(f"  WARNING: replaced the raw data set, but {' and '.join(map(str, self.stale))} still "
                         "hold(s) the preprocessed data / trained models of the old one: rerun "
                         "nnUNetv2_plan_and_preprocess (it rewrites the preprocessed data) and retrain, or delete "
                         "those folders")
        return "\n".join(lines)


def _triple(values: np.ndarray, fmt: str = "{:.4g}") -> str:
    return " x ".join(fmt.format(v.item()) for v in values)


def raw_folder() -> Path:
    """``$nnUNet_raw``, where converted data sets go; a clear error when it is not set."""
    folder = nnunet_folder("nnUNet_raw")
    if folder is None:
        raise ValueError("nnUNet_raw is not set: export nnUNet_raw=/path/to/nnUNet_raw (the folder nnU-Net "
                         "reads raw data sets from) and run the command again")
    return folder


def file_ending(path: Path) -> str:
    """The nnU-Net file ending of ``path`` ('.nii.gz', '.mha', ...); an error for formats nnU-Net cannot read."""
    for ending in FILE_ENDINGS:
        if path.name.endswith(ending):
            return ending
    raise ValueError(f"{path}: nnU-Net reads {', '.join(FILE_ENDINGS)} files with its default reader; "
                     "convert this file to one of them first")


def strip_ending(path: Path) -> str:
    """File name without its nnU-Net file ending."""
    return path.name[: -len(file_ending(path))]


def match_by_name(images: dict[str, Path], masks: dict[str, Path], what: str) -> list[tuple[str, Path, Path]]:
    """(case, image, mask) for every case name, or an error listing cases with an image or a mask only."""
    only_images = sorted(set(images) - set(masks))
    only_masks = sorted(set(masks) - set(images))
    if only_images or only_masks:
        parts = []
        if only_images:
            parts.append(f"images without a mask: {', '.join(only_images[:MAX_REPORTED])}")
        if only_masks:
            parts.append(f"masks without an image: {', '.join(only_masks[:MAX_REPORTED])}")
        raise ValueError(f"{what}: {'; '.join(parts)}. Every image needs its mask under the same case name; "
                         "add or remove files so that they pair up")
    return [(case, images[case], masks[case]) for case in sorted(images)]


def write_raw_dataset(cases: Sequence[SourceCase], *, raw: Path, dataset_id: int, name: str, labels: LabelTable,
                      release: Release, overwrite: bool = False, extra_json: dict | None = None,
                      extra_files: dict[str, str] | None = None, progress: bool = True) -> ConversionSummary:
    """Checks ``cases`` and writes ``raw/DatasetNNN_name`` (imagesTr, labelsTr, imagesTs[, labelsTs], dataset.json).

    ``extra_json`` goes into dataset.json (keys of ours); ``extra_files`` (file name -> text) into the folder.
    Nothing is written until every header has been checked, and nothing is left behind on an error.
    """
    check_request(dataset_id, name)
    ending = _common_ending(cases)
    raw = Path(raw)
    raw.mkdir(parents=True, exist_ok=True)
    folder = target_folder(raw, dataset_id, name, overwrite)
    headers, problems = check_headers(cases)

    staging = raw / f".{folder.name}.writing-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        summary = ConversionSummary(folder=folder)
        for sub in ("imagesTr", "labelsTr"):
            (staging / sub).mkdir()
        lookup = labels.lookup()
        for case in tqdm(cases, desc=f"{folder.name}", unit="case", disable=not progress):
            if case.name in problems and case.name not in headers:
                continue  # its files cannot be read
            try:
                check_image_values(case.image, case.name, headers[case.name][0])
                if problems:  # the conversion is refused already: check the remaining masks, write nothing more
                    if case.mask is not None:
                        map_labels(read_label_values(case.mask, case.name)[1], lookup, case.name, case.mask)
                else:
                    _write_case(case, headers[case.name], staging, ending, lookup, summary)
            except ValueError as err:
                problems.setdefault(case.name, []).append((str(err).removeprefix(f"case {case.name}: "), ""))
        if problems:
            raise ValueError(refusal([case.name for case in cases], problems))
        generate_dataset_json(
            str(staging), channel_names={0: release.channel_name}, labels=dict(labels.names),
            num_training_cases=summary.num_train, file_ending=ending, dataset_name=folder.name,
            description=release.description, reference=release.reference, license=release.licence,
            converted_by=release.converted_by, **(extra_json or {}))
        for file_name, text in (extra_files or {}).items():
            (staging / file_name).write_text(text)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replaced = folder.exists()
    replace_folder(staging, folder)
    if replaced:
        summary.stale = stale_folders(folder)
    return summary


def refusal(order: Sequence[str], problems: dict[str, list[tuple[str, str]]]) -> str:
    """One error text: every bad case (in ``order``) with its problems, then each problem kind's fix once."""
    lines = [f"case {case}: " + "; ".join(text for text, _ in problems[case]) for case in order if case in problems]
    fixes = list(dict.fromkeys(fix for case in order for _, fix in problems.get(case, []) if fix))
    return (f"{len(lines)} case(s) cannot be converted, nothing was written:\n  " + "\n  ".join(lines)
            + "\nFix or remove those cases" + ("".join(f"\n  - {fix}" for fix in fixes) if fixes else "."))


def _common_ending(cases: Sequence[SourceCase]) -> str:
    unlabelled = [case.name for case in cases if case.split == "Tr" and case.mask is None]
    if unlabelled:
        raise ValueError(f"training cases without a mask: {', '.join(unlabelled[:MAX_REPORTED])}")
    if sum(case.split == "Tr" for case in cases) < 2:
        raise ValueError(f"found {sum(c.split == 'Tr' for c in cases)} training case(s); nnU-Net needs at least 2. "
                         "Check the source folder")
    names = [case.name for case in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"case names occur more than once: {', '.join(duplicates[:MAX_REPORTED])}; "
                         "nnU-Net needs one file per case name")
    endings = {file_ending(case.image) for case in cases}
    if len(endings) > 1:
        raise ValueError(f"the images mix file types {sorted(endings)}; nnU-Net needs one file ending per data "
                         "set: convert them to one type first")
    return endings.pop()


@dataclass(frozen=True)
class Header:
    """Geometry of an image file, read without its voxels."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    components: int
    pixel_id: int

    @classmethod
    def read(cls, path: Path) -> Header:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return cls(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                   tuple(reader.GetDirection()), reader.GetNumberOfComponents(), reader.GetPixelID())

    def same_geometry(self, other: Header) -> bool:
        return (self.size, self.spacing, self.origin, self.direction) == \
            (other.size, other.spacing, other.origin, other.direction)


def check_headers(cases: Sequence[SourceCase]) -> tuple[dict[str, tuple[Header, Header | None]],
                                                         dict[str, list[tuple[str, str]]]]:
    """Every readable case's image and mask headers, and for every bad case its problems as (text, fix)."""
    headers: dict[str, tuple[Header, Header | None]] = {}
    problems: dict[str, list[tuple[str, str]]] = {}
    for case in cases:
        missing = [str(path) for path in (case.image, case.mask) if path is not None and not path.is_file()]
        if missing:
            problems[case.name] = [(f"{' and '.join(missing)} does not exist", READ_FIX)]
            continue
        try:
            image = Header.read(case.image)
            mask = Header.read(case.mask) if case.mask is not None else None
        except RuntimeError as err:
            problems[case.name] = [(f"cannot read its files ({str(err).strip().splitlines()[-1]})", READ_FIX)]
            continue
        problem = geometry_problem(image, mask)
        if problem:
            problems[case.name] = [problem]
        headers[case.name] = (image, mask)
    return headers, problems


def geometry_problem(image: Header, mask: Header | None) -> tuple[str, str] | None:
    """Why ``mask`` is not on ``image``'s grid (within the tolerances), with its fix, or None."""
    if len(image.size) != 3 or image.components != 1:
        return (f"the image has {len(image.size)} dimensions and {image.components} component(s); "
                "a 3D single-channel volume is expected", VOLUME_FIX)
    if mask is None:
        return None
    if len(mask.size) != 3 or mask.components != 1:
        return (f"the mask has {len(mask.size)} dimensions and {mask.components} component(s); a 3D "
                "single-channel label map is expected", GRID_FIX)
    if mask.size != image.size:
        return f"mask size {list(mask.size)} differs from image size {list(image.size)}", GRID_FIX
    if not np.allclose(mask.spacing, image.spacing, rtol=SPACING_RTOL, atol=0):
        return (f"mask spacing {_rounded(mask.spacing)} differs from image spacing {_rounded(image.spacing)} mm",
                GRID_FIX)
    offset = np.subtract(mask.origin, image.origin)
    largest = float(np.max(np.abs(offset)))
    if largest > ORIGIN_TOL_VOXELS * min(image.spacing):
        return (f"mask origin {_rounded(mask.origin)} is {float(np.linalg.norm(offset)):.4g} mm away from image "
                f"origin {_rounded(image.origin)} (straight-line distance; {largest:.4g} mm along the axis that "
                "differs most)",
                GRID_FIX)
    if not np.allclose(mask.direction, image.direction, rtol=0, atol=DIRECTION_ATOL):
        return (f"mask direction {_rounded(mask.direction)} differs from image direction "
                f"{_rounded(image.direction)}", GRID_FIX)
    return None


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 5) for v in values]


def check_image_values(path: Path, case: str, header: Header) -> None:
    """Refuse an image with NaN or infinite voxels (only floating-point files can hold them), naming how many.

    ITK's NIfTI reader turns NaN and inf into 0, so SimpleITK (nnU-Net's reader for .nii.gz) never shows them and
    nnU-Net would train on zeros: NIfTI voxels are read as stored, with nibabel.
    """
    if header.pixel_id not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return
    if file_ending(path) in (".nii", ".nii.gz"):
        array = np.asanyarray(nibabel.load(str(path)).dataobj)
    else:
        array = sitk.GetArrayViewFromImage(sitk.ReadImage(str(path)))
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise ValueError(f"case {case}: the image {path} holds {bad} NaN or infinite voxel(s) of {array.size} "
                         "(nnU-Net would read them as 0 from NIfTI, as NaN otherwise); replace them with a finite "
                         "value (e.g. the image's minimum) or remove the case")


def read_label_values(path: Path, case: str) -> tuple[sitk.Image, np.ndarray]:
    """The mask as read and its voxels as whole numbers (an integer array), or an error naming the case."""
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"case {case}: the mask {path} contains NaN or infinite values")
        whole = np.rint(array)
        worst = float(np.max(np.abs(array - whole))) if array.size else 0.0
        if worst > VALUE_ATOL:
            raise ValueError(f"case {case}: the mask {path} holds non-integer values (e.g. "
                             f"{array.flat[int(np.argmax(np.abs(array - whole)))]:.4g}): it looks like a "
                             "probability map or a mask resampled with linear interpolation. Threshold it "
                             "or resample it with nearest-neighbour interpolation first")
        if whole.size and (whole.min() < np.iinfo(np.int32).min or whole.max() > np.iinfo(np.int32).max):
            raise ValueError(f"case {case}: the mask {path} holds values far outside any label range")
        return image, whole.astype(np.int32)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"case {case}: the mask {path} has pixel type {array.dtype}; integer labels expected")
    return image, array


def map_labels(values: np.ndarray, lookup: np.ndarray, case: str, path: Path) -> np.ndarray:
    """Release values -> nnU-Net values via ``lookup``, or an error naming the values the release does not use."""
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if 0 <= low and high < len(lookup):
        present = np.flatnonzero(np.bincount(values.ravel(), minlength=len(lookup)))  # O(n), unlike np.unique
        unknown = [int(v) for v in present if lookup[v] < 0]
    else:
        unknown = [int(v) for v in np.unique(values) if not 0 <= v < len(lookup) or lookup[v] < 0]
    if unknown:
        known = np.flatnonzero(lookup >= 0).tolist()
        raise ValueError(f"case {case}: the mask {path} holds label value(s) {unknown[:MAX_REPORTED]} that this "
                         f"release does not use (expected {known}). Check that it is the right mask")
    return lookup[values]


def _write_case(case: SourceCase, headers: tuple[Header, Header | None], staging: Path, ending: str,
                lookup: np.ndarray, summary: ConversionSummary) -> None:
    image_header, mask_header = headers
    images = staging / f"images{case.split}"
    images.mkdir(exist_ok=True)
    shutil.copyfile(case.image, images / f"{case.name}_0000{ending}")
    summary.spacings.append(image_header.spacing)
    summary.shapes.append(image_header.size)
    if case.split == "Tr":
        summary.num_train += 1
    else:
        summary.num_test += 1
    if case.mask is None:
        return

    labels = staging / f"labels{case.split}"
    labels.mkdir(exist_ok=True)
    target = labels / f"{case.name}{ending}"
    mask_image, values = read_label_values(case.mask, case.name)
    mapped = map_labels(values, lookup, case.name, case.mask)
    foreground = float(np.count_nonzero(mapped)) / max(mapped.size, 1)
    if case.split == "Tr":
        summary.vessel_fractions.append(foreground)
    if foreground == 0:
        summary.empty_masks.append(case.name)

    unchanged = (np.issubdtype(sitk.GetArrayViewFromImage(mask_image).dtype, np.integer)
                 and np.array_equal(mapped, values) and image_header.same_geometry(mask_header)
                 and file_ending(case.mask) == ending)
    if unchanged:
        shutil.copyfile(case.mask, target)
        summary.copied_masks += 1
        return
    dtype = np.uint8 if mapped.max(initial=0) <= np.iinfo(np.uint8).max else np.uint16
    out = sitk.GetImageFromArray(mapped.astype(dtype))
    out.SetSpacing(image_header.spacing)
    out.SetOrigin(image_header.origin)
    out.SetDirection(image_header.direction)
    sitk.WriteImage(out, str(target), useCompression=True)
    summary.rewritten_masks += 1
