"""Any image/mask files matched by case name: ``--images 'scans/*.nii.gz' --masks 'labels/*.nii.gz'``.

The case name is the file name without its ending and without a trailing ``_0000`` (so nnU-Net-style image
names work too). Masks are binary vessel masks (0/1); every image needs a mask and every mask an image.
"""

from __future__ import annotations

import glob
from pathlib import Path

from nnunet_medsam_fusion.data.convert.dataset_writer import (
    BINARY_LABELS,
    FILE_ENDINGS,
    ConversionSummary,
    Release,
    SourceCase,
    match_by_name,
    raw_folder,
    strip_ending,
    write_raw_dataset,
)

RELEASE = Release(
    channel_name="TOF-MRA",
    description="TOF-MRA with binary vessel masks (image/mask pairs)",
    reference="unknown (converted from image/mask pairs)",
    licence="unknown: state the data's terms here",
    converted_by="nnmsf convert pairs",
)


def _files(pattern: str, what: str) -> dict[str, Path]:
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not paths:
        raise FileNotFoundError(f"--{what} {pattern!r} matches no file (quote the pattern so the shell does not "
                                "expand it)")
    unreadable = [p.name for p in paths if not p.name.endswith(FILE_ENDINGS)]
    if unreadable:
        raise ValueError(f"--{what} {pattern!r} matches files nnU-Net cannot read: {unreadable[:5]} (readable: "
                         f"{', '.join(FILE_ENDINGS)}); narrow the pattern, e.g. '*.nii.gz'")
    named: dict[str, Path] = {}
    for path in paths:
        case = strip_ending(path)
        case = case[: -len("_0000")] if what == "images" and case.endswith("_0000") else case
        if case in named:
            raise ValueError(f"--{what} {pattern!r} matches two files for case {case!r}: {named[case]} and {path}")
        named[case] = path
    return named


def find_cases(images: str, masks: str) -> list[SourceCase]:
    """Image/mask pairs from two glob patterns, matched by case name."""
    pairs = match_by_name(_files(images, "images"), _files(masks, "masks"), f"--images {images} / --masks {masks}")
    return [SourceCase(case, image, mask) for case, image, mask in pairs]


def convert_pairs(images: str, masks: str, *, dataset_id: int, name: str = "TOFPairs", overwrite: bool = False,
                  raw: Path | None = None, progress: bool = True) -> ConversionSummary:
    """Writes ``$nnUNet_raw/DatasetNNN_name`` (or under ``raw``) from image/mask glob patterns."""
    return write_raw_dataset(find_cases(images, masks), raw=raw or raw_folder(), dataset_id=dataset_id, name=name,
                             labels=BINARY_LABELS, release=RELEASE, overwrite=overwrite, progress=progress)
