"""TopCoW 2023/2024 (Circle of Willis, MRA and CTA): binary or multiclass vessel labels for nnU-Net.

Layout as distributed: ``imagesTr/topcow_{mr,ct}_NNN_0000.nii.gz``, ``cow_seg_labelsTr/topcow_{mr,ct}_NNN.nii.gz``
(``roi_loc_labelsTr/*.txt`` is not used). Label values 1-12 and 15 name the vessel components; 13 and 14 are
unused. nnU-Net needs consecutive labels, so ``multiclass`` renumbers them 1..13 (15 -> 13), keeps the names in
dataset.json and stores the mapping in dataset.json (``topcow_label_values``) and in ``topcow_label_map.json``;
:func:`restore_topcow_labels` (``nnmsf convert topcow-restore``) maps predictions back to TopCoW's values.

Left/right classes: nnU-Net's mirroring augmentation (and test-time mirroring) flips images left-right without
swapping the R-/L- labels. The TopCoW organisers advise turning mirroring off for multiclass training: the
fusion trainers' ``_NoMirroring`` variants, or nnU-Net's own ``nnUNetTrainerNoMirroring`` (see docs/data.md).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_medsam_fusion.data.convert.dataset_writer import (
    BINARY_LABELS,
    ConversionSummary,
    LabelTable,
    Release,
    SourceCase,
    file_ending,
    match_by_name,
    raw_folder,
    read_label_values,
    replace_folder,
    strip_ending,
    write_raw_dataset,
)
from nnunet_medsam_fusion.data.convert.layout import find_release_root, image_files

# TopCoW's label values and component names (challenge documentation).
TOPCOW_CLASSES = {1: "BA", 2: "R-PCA", 3: "L-PCA", 4: "R-ICA", 5: "R-MCA", 6: "L-ICA", 7: "L-MCA", 8: "R-Pcom",
                  9: "L-Pcom", 10: "Acom", 11: "R-ACA", 12: "L-ACA", 15: "3rd-A2"}
MODALITIES = {"mr": "TOF-MRA", "ct": "CT"}  # channel names: nnU-Net z-scores MR, uses its CT scheme for CT
LABEL_MODES = ("binary", "multiclass")
MAPPING_KEY = "topcow_label_values"  # dataset.json: nnU-Net value -> TopCoW value (keys are strings in JSON)
MAPPING_FILE = "topcow_label_map.json"

MULTICLASS_LABELS = LabelTable(
    names={"background": 0, **{name: i for i, name in enumerate(TOPCOW_CLASSES.values(), start=1)}},
    values={0: 0, **{value: i for i, value in enumerate(TOPCOW_CLASSES, start=1)}},
)
BINARY_TOPCOW_LABELS = LabelTable(names=dict(BINARY_LABELS.names), values={0: 0, **dict.fromkeys(TOPCOW_CLASSES, 1)})


def find_cases(src: Path, modality: str = "mr") -> list[SourceCase]:
    """The labelled cases of one modality in a TopCoW folder, paired by case name."""
    if modality not in MODALITIES:
        raise ValueError(f"modality {modality!r} is not one of {', '.join(MODALITIES)} (--modality mr|ct)")
    root = find_release_root(Path(src), ("imagesTr", "cow_seg_labelsTr"),
                             "TopCoW (imagesTr/topcow_mr_NNN_0000.nii.gz + cow_seg_labelsTr/topcow_mr_NNN.nii.gz)")
    images = {strip_ending(p)[: -len("_0000")]: p
              for p in image_files(root / "imagesTr", f"topcow_{modality}_*_0000.*")}
    masks = {strip_ending(p): p for p in image_files(root / "cow_seg_labelsTr", f"topcow_{modality}_*")}
    if not images and not masks:
        present = sorted({p.name.split("_")[1] for p in image_files(root / "imagesTr", "topcow_*")})
        raise FileNotFoundError(f"{root} holds no topcow_{modality}_* cases (modalities present: {present}); "
                                "choose another --modality")
    return [SourceCase(case, image, mask) for case, image, mask in match_by_name(images, masks, str(root))]


def convert_topcow(src: Path, *, dataset_id: int, name: str | None = None, modality: str = "mr",
                   labels: str = "binary", overwrite: bool = False, raw: Path | None = None,
                   progress: bool = True) -> ConversionSummary:
    """Writes ``$nnUNet_raw/DatasetNNN_name`` from a TopCoW release; ``name`` defaults to TopCoW_MR_binary etc."""
    if labels not in LABEL_MODES:
        raise ValueError(f"labels {labels!r} is not one of {', '.join(LABEL_MODES)} (--labels binary|multiclass)")
    cases = find_cases(src, modality)
    name = name or f"TopCoW_{modality.upper()}_{labels}"
    release = Release(
        channel_name=MODALITIES[modality],
        description=f"TopCoW {modality.upper()}, {labels} Circle of Willis vessel labels"
                    + (" (TopCoW values 1-12, 15 renumbered 1-13; see topcow_label_values)"
                       if labels == "multiclass" else " (every vessel class -> 1)"),
        reference="TopCoW challenge 2023/2024, https://topcow24.grand-challenge.org/",
        licence="TopCoW terms of data use (non-commercial open use with attribution; see docs/data.md)",
        converted_by=f"nnmsf convert topcow --modality {modality} --labels {labels}",
    )
    if labels == "binary":
        return write_raw_dataset(cases, raw=raw or raw_folder(), dataset_id=dataset_id, name=name,
                                 labels=BINARY_TOPCOW_LABELS, release=release, overwrite=overwrite, progress=progress)
    mapping = label_mapping()
    return write_raw_dataset(
        cases, raw=raw or raw_folder(), dataset_id=dataset_id, name=name, labels=MULTICLASS_LABELS, release=release,
        overwrite=overwrite, progress=progress, extra_json={MAPPING_KEY: mapping},
        extra_files={MAPPING_FILE: json.dumps({"nnunet_to_topcow": mapping,
                                               "names": {str(v): n for v, n in TOPCOW_CLASSES.items()}}, indent=2)})


def label_mapping() -> dict[str, int]:
    """nnU-Net value -> TopCoW value for the multiclass data set (string keys, as JSON stores them)."""
    return {str(target): source for source, target in MULTICLASS_LABELS.values.items()}


def read_label_mapping(dataset_json: Path) -> dict[int, int]:
    """The nnU-Net -> TopCoW mapping stored in a dataset.json (a multiclass conversion or its predictions)."""
    if not dataset_json.is_file():
        raise FileNotFoundError(f"{dataset_json} does not exist; give --dataset-id of the converted TopCoW data set")
    stored = json.loads(dataset_json.read_text()).get(MAPPING_KEY)
    if stored is None:
        raise ValueError(f"{dataset_json} has no '{MAPPING_KEY}' entry: it is not a multiclass TopCoW data set "
                         "written by 'nnmsf convert topcow --labels multiclass' (binary predictions need no mapping)")
    return {int(k): int(v) for k, v in stored.items()}


def restore_topcow_labels(pred_dir: Path, out_dir: Path, mapping: dict[int, int], *, overwrite: bool = False,
                          progress: bool = True) -> int:
    """Writes every prediction of ``pred_dir`` to ``out_dir`` with TopCoW's label values; returns the count.

    Geometry is copied from each prediction; ``out_dir`` appears complete or not at all.
    """
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    files = image_files(pred_dir) if pred_dir.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{pred_dir} holds no prediction files; give the folder nnUNetv2_predict wrote")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it or choose another folder")
    if out_dir.resolve() == pred_dir.resolve():
        raise ValueError("OUT_DIR must differ from PRED_DIR (the predictions are kept as they are)")
    lookup = np.full(max(mapping) + 1, -1, dtype=np.int16)
    for target, source in mapping.items():
        lookup[target] = source
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.writing-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for path in tqdm(files, desc="restoring TopCoW labels", unit="case", disable=not progress):
            image, values = read_label_values(path, path.name)
            if values.size and (values.min() < 0 or values.max() >= len(lookup) or np.any(lookup[values] < 0)):
                raise ValueError(f"{path} holds values outside the data set's labels 0..{len(lookup) - 1}")
            restored = sitk.GetImageFromArray(lookup[values].astype(np.uint8))
            restored.CopyInformation(image)
            sitk.WriteImage(restored, str(staging / f"{strip_ending(path)}{file_ending(path)}"), useCompression=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, out_dir)
    return len(files)
