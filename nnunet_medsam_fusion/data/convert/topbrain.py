"""TopBrain 2025 (brain vessels, MRA 42 and CTA 40 classes): multiclass vessel labels for nnU-Net.

Layout as distributed (TopBrain_Data_Release_Batches1n2_081425): ``imagesTr_topbrain_{mr,ct}/<case>_0000.nii.gz``
and ``labelsTr_topbrain_{mr,ct}/<case>.nii.gz`` side by side, ``itksnap_labelmap_txt/`` beside them (not used);
the release has no ROI files. Label values are consecutive (MR 1-42, CT 1-40), so they are written as given with
TopBrain's names in dataset.json (``LABELS`` below) and predictions need no mapping back.

Left/right classes: 19 MR and 16 CT label pairs are R-/L- twins (e.g. R-ICA/L-ICA, R-MMA/L-MMA). nnU-Net's mirroring
augmentation (and test-time mirroring) flips images left-right without swapping those labels; train with
mirroring off, e.g. nnU-Net's own ``nnUNetTrainerNoMirroring`` (as for TopCoW, docs/data.md).
"""

from __future__ import annotations

from pathlib import Path

from nnunet_medsam_fusion.data.convert.dataset_writer import (
    ConversionSummary,
    LabelTable,
    Release,
    SourceCase,
    match_by_name,
    raw_folder,
    strip_ending,
    write_raw_dataset,
)
from nnunet_medsam_fusion.data.convert.layout import image_files

# TopBrain's label maps, from github CoWBenchmark/TopBrain_Eval_Metrics at ba4252ab0dbe9d59a9ae45058ae040b016aae0ad
# (topbrain25_eval/constants.py), kept here so that the converter and --convention topbrain read one table.
# constants.py:9-45: labels 1-34 are shared by both tracks
COMMON_LABELS: dict[int, str] = {
    1: "BA", 2: "R-P1P2", 3: "L-P1P2", 4: "R-ICA", 5: "R-M1", 6: "L-ICA", 7: "L-M1", 8: "R-Pcom", 9: "L-Pcom",
    10: "Acom", 11: "R-A1A2", 12: "L-A1A2", 13: "R-A3", 14: "L-A3", 15: "3rd-A2", 16: "3rd-A3", 17: "R-M2",
    18: "R-M3", 19: "L-M2", 20: "L-M3", 21: "R-P3P4", 22: "L-P3P4", 23: "R-VA", 24: "L-VA", 25: "R-SCA",
    26: "L-SCA", 27: "R-AICA", 28: "L-AICA", 29: "R-PICA", 30: "L-PICA", 31: "R-AChA", 32: "L-AChA", 33: "R-OA",
    34: "L-OA",
}
# constants.py:47-55 (CTA: veins 35-40) and 57-67 (MRA: external carotid branches 35-42)
LABELS: dict[str, dict[int, str]] = {
    "ct": {**COMMON_LABELS, 35: "VoG", 36: "StS", 37: "ICVs", 38: "R-BVR", 39: "L-BVR", 40: "SSS"},
    "mr": {**COMMON_LABELS, 35: "R-ECA", 36: "L-ECA", 37: "R-STA", 38: "L-STA", 39: "R-MaxA", 40: "L-MaxA",
           41: "R-MMA", 42: "L-MMA"},
}

MODALITIES = {"mr": "TOF-MRA", "ct": "CT"}  # channel names: nnU-Net z-scores MR, uses its CT scheme for CT
SIDE_PAIRS = {track: sorted(name[2:] for name in names.values() if name.startswith("R-")) for track, names in
              LABELS.items()}  # the R-/L- twins: 19 MR, 16 CT


def label_table(modality: str) -> LabelTable:
    """TopBrain's values and names, unchanged (every value is already consecutive)."""
    names = LABELS[modality]
    return LabelTable(names={"background": 0, **{name: value for value, name in names.items()}},
                      values={0: 0, **{value: value for value in names}})


def find_cases(src: Path, modality: str = "mr") -> list[SourceCase]:
    """The labelled cases of one modality in a TopBrain release folder, paired by case name."""
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is not one of {', '.join(MODALITIES)} (--modality mr|ct)")
    src = Path(src)
    images_dir, labels_dir = f"imagesTr_topbrain_{modality}", f"labelsTr_topbrain_{modality}"
    layout = f"TopBrain 2025 ({images_dir}/<case>_0000.nii.gz + {labels_dir}/<case>.nii.gz)"
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder; point the command at the unpacked {layout} release")
    candidates = [src, *sorted(child for child in src.iterdir() if child.is_dir())]
    roots = [folder for folder in candidates if (folder / images_dir).is_dir() and (folder / labels_dir).is_dir()]
    if not roots:
        found = sorted(child.name for child in src.iterdir() if child.is_dir())
        raise FileNotFoundError(f"{src} does not look like {layout}: expected the sub-folders {images_dir} and "
                                f"{labels_dir}, found {found[:10]}. Point the command at the folder that holds them "
                                "(or choose the other --modality)")
    root = roots[0]
    images = {strip_ending(p)[: -len("_0000")]: p for p in image_files(root / images_dir, "*_0000.*")}
    masks = {strip_ending(p): p for p in image_files(root / labels_dir)}
    if not images:
        raise FileNotFoundError(f"{root / images_dir} holds no <case>_0000 image; the release names images "
                                "<case>_0000.nii.gz")
    return [SourceCase(case, image, mask) for case, image, mask in match_by_name(images, masks, str(root))]


def convert_topbrain(src: Path, *, dataset_id: int, name: str | None = None, modality: str = "mr",
                     overwrite: bool = False, raw: Path | None = None, progress: bool = True) -> ConversionSummary:
    """Writes ``$nnUNet_raw/DatasetNNN_name`` from a TopBrain 2025 release; ``name`` defaults to TopBrain_MR etc."""
    cases = find_cases(src, modality)
    release = Release(
        channel_name=MODALITIES[modality],
        description=f"TopBrain 2025 {modality.upper()}, {len(LABELS[modality])} brain vessel classes (TopBrain's "
                    "values and names)",
        reference="TopBrain 2025 challenge, https://topbrain2025.grand-challenge.org/",
        licence="TopBrain 2025 terms of data use (see the release's README and docs/data.md)",
        converted_by=f"nnmsf convert topbrain --modality {modality}",
    )
    return write_raw_dataset(cases, raw=raw or raw_folder(), dataset_id=dataset_id,
                             name=name or f"TopBrain_{modality.upper()}", labels=label_table(modality),
                             release=release, overwrite=overwrite, progress=progress)
