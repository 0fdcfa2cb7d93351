"""CAS 2023 (Cerebral Artery Segmentation challenge, MICCAI/SMRA 2023): TOF-MRA with binary artery masks.

Layout as distributed: ``data/NNN.nii.gz`` (images) and ``mask/NNN.nii.gz`` (masks, 0/1), training cases only.
Case names are kept (``NNN``), so every nnU-Net file traces back to the release.
"""

from __future__ import annotations

from pathlib import Path

from nnunet_medsam_fusion.data.convert.dataset_writer import (
    BINARY_LABELS,
    ConversionSummary,
    Release,
    SourceCase,
    match_by_name,
    raw_folder,
    strip_ending,
    write_raw_dataset,
)
from nnunet_medsam_fusion.data.convert.layout import find_release_root, image_files

RELEASE = Release(
    channel_name="TOF-MRA",
    description="CAS 2023 challenge (MICCAI/SMRA 2023): TOF-MRA with binary cerebral artery masks",
    reference="Cerebral Artery Segmentation challenge 2023 (CAS 2023), MICCAI 2023 / SMRA",
    licence="as agreed with the CAS 2023 organisers on download (see docs/data.md)",
    converted_by="nnmsf convert cas2023",
)


def find_cases(src: Path) -> list[SourceCase]:
    """The labelled cases of a CAS 2023 folder (``data/`` + ``mask/``), paired by file name."""
    root = find_release_root(Path(src), ("data", "mask"), "CAS 2023 (data/NNN.nii.gz + mask/NNN.nii.gz)")
    images = {strip_ending(p): p for p in image_files(root / "data")}
    masks = {strip_ending(p): p for p in image_files(root / "mask")}
    return [SourceCase(case, image, mask) for case, image, mask in match_by_name(images, masks, str(root))]


def convert_cas2023(src: Path, *, dataset_id: int, name: str = "CAS2023", overwrite: bool = False,
                    raw: Path | None = None, progress: bool = True) -> ConversionSummary:
    """Writes ``$nnUNet_raw/DatasetNNN_name`` (or under ``raw``) from a CAS 2023 release folder."""
    return write_raw_dataset(find_cases(src), raw=raw or raw_folder(), dataset_id=dataset_id, name=name,
                             labels=BINARY_LABELS, release=RELEASE, overwrite=overwrite, progress=progress)
