"""``nnmsf evaluate`` and ``nnmsf compare``: the Python entry points (score, then write) and their argparse
wiring (the CLI maps ValueError etc. to exit 2)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnunet_medsam_fusion.evaluation.comparison import ComparisonResult, compare_runs
from nnunet_medsam_fusion.evaluation.comparison_tables import comparison_markdown
from nnunet_medsam_fusion.evaluation.conventions import DEFAULT, REGISTRY
from nnunet_medsam_fusion.evaluation.conventions.topbrain import TRACKS
from nnunet_medsam_fusion.evaluation.figures import write_comparison_figures, write_evaluation_figures
from nnunet_medsam_fusion.evaluation.folders import FolderEvaluation, score_folders
from nnunet_medsam_fusion.evaluation.tables import case_table, summary_table
from nnunet_medsam_fusion.evaluation.writing import write_comparison, write_evaluation

FIGURES_FOLDER = "figures"


def evaluate_folders(pred_dir: Path | str, ref_dir: Path | str, dataset_json: Path | str | None = None,
                     per_slice: bool = False, out_dir: Path | str | None = None, *,
                     cases: Sequence[str] | None = None, only_predicted: bool = False, num_workers: int = 1,
                     overwrite: bool = False, convention: str = DEFAULT,
                     roi_dir: Path | str | None = None,
                     options: Mapping[str, Any] | None = None) -> FolderEvaluation:
    """``folders.score_folders`` and, with ``out_dir``, its JSON/CSV files there (never over earlier ones)."""
    result = score_folders(pred_dir, ref_dir, dataset_json, per_slice, cases=cases, only_predicted=only_predicted,
                           num_workers=num_workers, convention=convention, roi_dir=roi_dir,
                           options=options)
    if out_dir is not None:
        write_evaluation(result, Path(out_dir), overwrite=overwrite)
    return result


def compare_trainers(dataset: str | int, trainers: Sequence[str], folds: Sequence[int | str] = (0, 1, 2, 3, 4), *,
                     configuration: str = "2d", plans: str = "nnUNetPlans", reference: str | None = None,
                     pred_dirs: Mapping[str, Path | str] | None = None, test_pred_root: Path | str | None = None,
                     ref_dir: Path | str | None = None, dataset_json: Path | str | None = None,
                     results_dir: Path | str | None = None, allow_partial: bool = False,
                     out_dir: Path | str | None = None, num_workers: int = 1, overwrite: bool = False,
                     convention: str = DEFAULT, roi_dir: Path | str | None = None,
                     options: Mapping[str, Any] | None = None) -> ComparisonResult:
    """``comparison.compare_runs`` and, with ``out_dir``, ``compare.md``, ``compare_cases.csv`` and
    ``compare_summary.csv`` there (never over earlier ones)."""
    result = compare_runs(dataset, trainers, folds, configuration=configuration, plans=plans, reference=reference,
                          pred_dirs=pred_dirs, test_pred_root=test_pred_root, ref_dir=ref_dir,
                          dataset_json=dataset_json, results_dir=results_dir, allow_partial=allow_partial,
                          num_workers=num_workers, convention=convention, roi_dir=roi_dir, options=options)
    if out_dir is not None:
        write_comparison(result, Path(out_dir), overwrite=overwrite)
    return result


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", type=Path, required=True,
                        help="folder of predicted label maps (CASE.nii.gz)")
    parser.add_argument("--ref", type=Path, required=True, help="folder of reference label maps, same names")
    parser.add_argument("--dataset-json", type=Path, default=None,
                        help="dataset.json giving labels and file ending (default: PRED/dataset.json, else the "
                             "dataset.json beside REF, else every label value found)")
    parser.add_argument("--per-slice", action="store_true",
                        help="score each 2D slice along z instead of the volume (to compare with 2D papers)")
    parser.add_argument("--only-predicted", action="store_true",
                        help="score only cases that have a prediction (e.g. one fold against "
                             "gt_segmentations)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for nnmsf_metrics.json/_cases.csv/_summary.csv (default: PRED)")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier output files")
    parser.add_argument("--num-workers", type=int, default=1, help="cases scored in parallel processes")
    parser.add_argument("--figures", action="store_true", help=f"write MIP overlays and metric plots to "
                                                               f"OUT/{FIGURES_FOLDER}")
    parser.add_argument("--images", type=Path, default=None,
                        help="folder of the images (CASE_0000.nii.gz) drawn under the MIP overlays")
    parser.add_argument("--max-figure-cases", type=int, default=None, help="MIP overlays for at most N cases")
    add_convention_arguments(parser)


def add_convention_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--convention", choices=tuple(REGISTRY), default=DEFAULT,
                        help="metric rules: 'ours' (default; docs/evaluation.md), 'topcow' (TopCoW 2024 task-1 "
                             "evaluation, official column names such as Dice_ClsAvgDice, HD95_ClsAvgHD95) or "
                             "'topbrain' (TopBrain 2025 task 1, docs/topbrain.md)")
    parser.add_argument("--roi-dir", type=Path, default=None,
                        help="with --convention topcow: folder of TopCoW roi_loc files (CASE.txt); each case "
                             "is scored on its ROI crop")
    parser.add_argument("--track", choices=TRACKS, default=None,
                        help="with --convention topbrain: the TopBrain track (mr: 42 labels, ct: 40); default: "
                             "read from the dataset.json label names")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset id or name (DatasetXXX_Name)")
    parser.add_argument("--trainers", nargs="+", required=True,
                        help="trainer class names, e.g. nnUNetTrainer nnUNetTrainerMedSAMFusion")
    parser.add_argument("--folds", nargs="+", default=["0", "1", "2", "3", "4"],
                        help="folds whose validation predictions are scored (default 0 1 2 3 4)")
    parser.add_argument("-c", "--configuration", default="2d", help="nnU-Net configuration (default 2d)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("--reference", default=None,
                        help="trainer the Wilcoxon tests compare against (default: nnUNetTrainer if "
                             "compared, else the first trainer)")
    parser.add_argument("--pred-dirs", nargs="+", default=None, metavar="TRAINER=DIR",
                        help="test-set predictions per trainer (needs --ref) instead of validation folds")
    parser.add_argument("--test-pred-root", type=Path, default=None,
                        help="test-set predictions in ROOT/TRAINER/ for each trainer (needs --ref)")
    parser.add_argument("--ref", type=Path, default=None,
                        help="reference labels (test set; default for validation: "
                             "$nnUNet_preprocessed/DATASET/gt_segmentations)")
    parser.add_argument("--dataset-json", type=Path, default=None, help="dataset.json to read labels from")
    parser.add_argument("--results", type=Path, default=None,
                        help="nnU-Net results folder holding the model folders (validation predictions and "
                             "each model's foundation-weights record; default: $nnUNet_results)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="compare trainers scored on different cases (missing trainer, fold or case) "
                             "instead of refusing; every row shows its n and the gaps are listed")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for compare.md and CSVs (default: ./nnmsf_compare_DATASET)")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier output files")
    parser.add_argument("--num-workers", type=int, default=1, help="cases scored in parallel processes")
    parser.add_argument("--figures", action="store_true",
                        help=f"write MIP overlays and metric distribution plots to OUT/{FIGURES_FOLDER}")
    parser.add_argument("--images", type=Path, default=None,
                        help="images under the MIPs (default for validation: $nnUNet_raw/DATASET/imagesTr)")
    parser.add_argument("--max-figure-cases", type=int, default=3, help="MIP overlays for at most N cases")
    add_convention_arguments(parser)


def _figures_folder(out_dir: Path, overwrite: bool) -> Path:
    folder = out_dir / FIGURES_FOLDER
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} already holds figures; pass --overwrite or choose another --out")
    return folder


def parse_pred_dirs(items: list[str] | None) -> dict[str, Path] | None:
    """``TRAINER=DIR`` pairs from the command line."""
    if items is None:
        return None
    folders = {}
    for item in items:
        trainer, sep, folder = item.partition("=")
        if not sep or not trainer or not folder:
            raise ValueError(f"--pred-dirs entry '{item}' is not TRAINER=DIR; "
                             "write e.g. nnUNetTrainer=pred/base")
        folders[trainer] = Path(folder)
    return folders


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The convention options of the command line (``--track``), given only when set."""
    return {"track": args.track} if args.track is not None else {}


def run_evaluate(args: argparse.Namespace) -> int:
    out_dir = args.out or args.pred
    figures = _figures_folder(out_dir, args.overwrite) if args.figures else None
    if args.figures and args.convention != DEFAULT:
        raise ValueError(f"--figures draws the 'ours' metrics; run it without --convention {args.convention}")
    result = evaluate_folders(args.pred, args.ref, args.dataset_json, per_slice=args.per_slice,
                              out_dir=out_dir, only_predicted=args.only_predicted,
                              num_workers=args.num_workers, overwrite=args.overwrite,
                              convention=args.convention, roi_dir=args.roi_dir, options=_options(args))
    print(f"convention: {args.convention}")
    if not args.per_slice:
        print(case_table(result), end="\n\n")
    print(summary_table(result))
    for note in result.notes:
        print(f"note: {note}")
    print(f"{len(result.rows)} rows scored ({args.convention} convention), {result.seconds_per_case:.2f} s per "
          f"case; labels from {result.labels_source}; results in {out_dir}")
    if figures is not None:
        written = write_evaluation_figures(result, figures, args.images, args.max_figure_cases)
        print(f"{len(written)} figure(s) in {figures}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    out_dir = args.out or Path(f"nnmsf_compare_{args.dataset}")
    if args.figures and args.convention != DEFAULT:
        raise ValueError(f"--figures draws the 'ours' metrics; run it without --convention {args.convention}")
    figures = _figures_folder(out_dir, args.overwrite) if args.figures else None
    result = compare_trainers(args.dataset, args.trainers, args.folds, configuration=args.configuration,
                              plans=args.plans, reference=args.reference,
                              pred_dirs=parse_pred_dirs(args.pred_dirs),
                              test_pred_root=args.test_pred_root, ref_dir=args.ref,
                              dataset_json=args.dataset_json, results_dir=args.results,
                              allow_partial=args.allow_partial, out_dir=out_dir, num_workers=args.num_workers,
                              overwrite=args.overwrite, convention=args.convention, roi_dir=args.roi_dir,
                              options=_options(args))
    print(comparison_markdown(result))
    if figures is not None:
        written = write_comparison_figures(result, figures, args.images, args.max_figure_cases)
        print(f"{len(written)} figure(s) in {figures}")
    if result.missing_folds:
        print(f"nnmsf compare: warning: fold(s) {', '.join(result.missing_folds)} of --folds have no scored case "
              "for any trainer; the tables leave them out", file=sys.stderr)
    if result.problems:
        print(f"nnmsf compare: warning: {len(result.problems)} problem(s), listed under 'Problems' in "
              f"{out_dir / 'compare.md'}", file=sys.stderr)
    print(f"tables in {out_dir / 'compare.md'}, CSVs in {out_dir}")
    return 0
