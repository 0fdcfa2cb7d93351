"""COSTA (multi-centre, multi-vendor TOF-MRA with cerebrovascular masks).

Layout as distributed: one folder per subset, ``TaskXX_*/{imagesTr,labelsTr,imagesTs,labelsTs}/<case>.nii.gz``,
images without nnU-Net's ``_0000`` suffix. SRC may be one subset folder or the folder holding several; with
several, case names are prefixed with their subset folder's name so they stay unique. Test cases go to
imagesTs/labelsTs (nnU-Net ignores labelsTs; ``nnmsf evaluate --ref labelsTs`` uses them).
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
from nnunet_medsam_fusion.data.convert.layout import image_files

LAYOUT = "COSTA (TaskXX_*/imagesTr + labelsTr [+ imagesTs + labelsTs], <case>.nii.gz)"

RELEASE = Release(
    channel_name="TOF-MRA",
    description="COSTA: multi-centre multi-vendor TOF-MRA with binary cerebrovascular masks",
    reference="Mou et al., COSTA: A Multi-center Multi-vendor TOF-MRA Dataset and A Novel Cerebrovascular "
              "Segmentation Network; https://imed.nimte.ac.cn/costa.html",
    licence="as agreed with the COSTA providers on request (see docs/data.md)",
    converted_by="nnmsf convert costa",
)


def subset_folders(src: Path) -> list[Path]:
    """``src`` if it is one subset (holds imagesTr), else its sub-folders that are subsets."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder; point the command at the unpacked {LAYOUT} release")
    if (src / "imagesTr").is_dir():
        return [src]
    subsets = [child for child in sorted(src.iterdir()) if (child / "imagesTr").is_dir()]
    if not subsets:
        raise FileNotFoundError(f"{src} does not look like {LAYOUT}: no imagesTr folder in it or in its "
                                "sub-folders. Point the command at a TaskXX_* folder or the folder holding them")
    return subsets


def find_cases(src: Path) -> list[SourceCase]:
    """Every case of every subset: training from imagesTr/labelsTr, test from imagesTs/labelsTs."""
    subsets = subset_folders(src)
    cases = []
    for subset in subsets:
        prefix = f"{subset.name}_" if len(subsets) > 1 else ""
        for split in ("Tr", "Ts"):
            if not (subset / f"images{split}").is_dir():
                continue
            images = {strip_ending(p): p for p in image_files(subset / f"images{split}")}
            masks_folder = subset / f"labels{split}"
            if split == "Ts" and not masks_folder.is_dir():  # test images released without masks
                cases += [SourceCase(prefix + case, image, None, split) for case, image in sorted(images.items())]
                continue
            masks = {strip_ending(p): p for p in image_files(masks_folder)} if masks_folder.is_dir() else {}
            cases += [SourceCase(prefix + case, image, mask, split)
                      for case, image, mask in match_by_name(images, masks, f"{subset}/{split}")]
    return cases


def convert_costa(src: Path, *, dataset_id: int, name: str = "COSTA", overwrite: bool = False,
                  raw: Path | None = None, progress: bool = True) -> ConversionSummary:
    """Writes ``$nnUNet_raw/DatasetNNN_name`` (or under ``raw``) from COSTA subset folder(s)."""
    return write_raw_dataset(find_cases(src), raw=raw or raw_folder(), dataset_id=dataset_id, name=name,
                             labels=BINARY_LABELS, release=RELEASE, overwrite=overwrite, progress=progress)
