"""argparse wiring for ``nnmsf convert`` (the CLI maps ValueError etc. to exit 2)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnunet_medsam_fusion.data.convert.dataset_writer import raw_folder

RELEASES = ("cas2023", "topcow", "topbrain", "costa", "pairs")


def _common(parser: argparse.ArgumentParser, default_name: str | None, name_help: str | None = None) -> None:
    parser.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id (1..999)")
    parser.add_argument("--name", default=default_name, help=f"dataset name (default {name_help or default_name})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing data set of that id and name")


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="release", required=True,
                                metavar="{cas2023,topcow,topbrain,costa,pairs,topcow-restore}")

    p = sub.add_parser("cas2023", help="CAS 2023 challenge folder (data/NNN.nii.gz + mask/NNN.nii.gz)")
    p.add_argument("src", type=Path, help="the unpacked release (holding data/ and mask/)")
    _common(p, "CAS2023")

    p = sub.add_parser("topcow", help="TopCoW 2023/2024 folder (imagesTr + cow_seg_labelsTr)")
    p.add_argument("src", type=Path, help="the unpacked release (holding imagesTr/ and cow_seg_labelsTr/)")
    _common(p, None, "TopCoW_MR_binary, TopCoW_CT_multiclass, ...")
    p.add_argument("--modality", choices=("mr", "ct"), default="mr", help="which cases to convert (default mr)")
    p.add_argument("--labels", choices=("binary", "multiclass"), default="binary",
                   help="binary: every vessel class -> 1 (default); multiclass: the 13 classes renumbered 1..13")

    p = sub.add_parser("topbrain", help="TopBrain 2025 folder (imagesTr_topbrain_mr + labelsTr_topbrain_mr, or _ct)")
    p.add_argument("src", type=Path, help="the unpacked release (holding imagesTr_topbrain_* and labelsTr_topbrain_*)")
    _common(p, None, "TopBrain_MR or TopBrain_CT")
    p.add_argument("--modality", choices=("mr", "ct"), default="mr", help="which cases to convert (default mr)")

    p = sub.add_parser("costa", help="COSTA subset folder(s) (TaskXX_*/imagesTr + labelsTr [+ imagesTs + labelsTs])")
    p.add_argument("src", type=Path, help="a TaskXX_* folder, or the folder holding several")
    _common(p, "COSTA")

    p = sub.add_parser("pairs", help="any image/mask files matched by case name")
    p.add_argument("--images", required=True, help="glob pattern of the images, quoted (e.g. 'scans/*.nii.gz')")
    p.add_argument("--masks", required=True, help="glob pattern of the binary masks, quoted")
    _common(p, "TOFPairs")

    p = sub.add_parser("topcow-restore", help="map multiclass predictions back to TopCoW's label values")
    p.add_argument("pred_dir", type=Path, help="folder nnUNetv2_predict wrote")
    p.add_argument("out_dir", type=Path, help="new folder for the predictions with TopCoW values (1-12, 15)")
    p.add_argument("--dataset-id", type=int, default=None,
                   help="the converted TopCoW data set whose mapping to use (default: PRED_DIR/dataset.json, "
                        "which nnUNetv2_predict writes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")


def run_convert(args: argparse.Namespace) -> int:
    """``nnmsf convert``; Ctrl-C ends it with one line and exit code 130 (nothing is left half written)."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(f"nnmsf convert: interrupted; nothing was written (an existing "
              f"{'OUT_DIR' if args.release == 'topcow-restore' else 'data set'} is left as it was)", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.release == "topcow-restore":
        return _restore(args)
    if args.release == "cas2023":
        from nnunet_medsam_fusion.data.convert.cas2023 import convert_cas2023

        summary = convert_cas2023(args.src, dataset_id=args.dataset_id, name=args.name, overwrite=args.overwrite)
    elif args.release == "topcow":
        from nnunet_medsam_fusion.data.convert.topcow import convert_topcow

        summary = convert_topcow(args.src, dataset_id=args.dataset_id, name=args.name, modality=args.modality,
                                 labels=args.labels, overwrite=args.overwrite)
        if args.labels == "multiclass":
            print("NOTE: left/right classes: nnU-Net's mirroring swaps the image sides but not the R-/L- labels. "
                  "Train with mirroring off: a fusion trainer's _NoMirroring variant (e.g. -tr "
                  "nnUNetTrainerMedSAM2Fusion_NoMirroring, nnUNetTrainerMedSAMFusion_NoMirroring) or nnU-Net's "
                  "nnUNetTrainerNoMirroring (docs/data.md).")
    elif args.release == "topbrain":
        from nnunet_medsam_fusion.data.convert.topbrain import SIDE_PAIRS, convert_topbrain

        summary = convert_topbrain(args.src, dataset_id=args.dataset_id, name=args.name, modality=args.modality,
                                   overwrite=args.overwrite)
        print(f"NOTE: left/right classes: {len(SIDE_PAIRS[args.modality])} R-/L- label pairs; nnU-Net's mirroring "
              "swaps the image sides but not the labels. Train with mirroring off: a fusion trainer's _NoMirroring "
              "variant (e.g. -tr nnUNetTrainerMedSAM2Fusion_NoMirroring) or nnU-Net's nnUNetTrainerNoMirroring "
              "(docs/data.md).")
    elif args.release == "costa":
        from nnunet_medsam_fusion.data.convert.costa import convert_costa

        summary = convert_costa(args.src, dataset_id=args.dataset_id, name=args.name, overwrite=args.overwrite)
    else:
        from nnunet_medsam_fusion.data.convert.pairs import convert_pairs

        summary = convert_pairs(args.images, args.masks, dataset_id=args.dataset_id, name=args.name,
                                overwrite=args.overwrite)
    print(summary)
    # README's command: 2d for the paper's 2D fusion and the baselines, 3d_fullres for 3D fusion.
    print(f"next: nnUNetv2_plan_and_preprocess -d {args.dataset_id} -c 2d 3d_fullres --verify_dataset_integrity"
          "   # -c 2d alone for the paper's 2D")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from nnunet_medsam_fusion.data.convert.topcow import read_label_mapping, restore_topcow_labels

    if args.dataset_id is None:
        dataset_json = args.pred_dir / "dataset.json"
    else:
        folders = sorted(raw_folder().glob(f"Dataset{args.dataset_id:03d}_*"))
        if not folders:
            raise FileNotFoundError(f"no Dataset{args.dataset_id:03d}_* in {raw_folder()}; check --dataset-id")
        dataset_json = folders[0] / "dataset.json"
    count = restore_topcow_labels(args.pred_dir, args.out_dir, read_label_mapping(dataset_json),
                                  overwrite=args.overwrite)
    print(f"wrote {count} prediction(s) with TopCoW label values to {args.out_dir}")
    return 0
