"""``nnmsf``: the plugin's small command line: env / ext-path (let nnU-Net find the trainers), synth (synthetic
data), convert (a public release -> nnU-Net raw data set), demo, evaluate (metrics of predictions), compare (the
paper's tables from trained folds), benchmark (time and memory), trainers (trainer names, e.g. Table 1's)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from nnunet_medsam_fusion.settings import EXT_TRAINER_ENV, ext_trainer_path, ext_trainer_value


def _cmd_ext_path(args: argparse.Namespace) -> int:
    print(ext_trainer_path())
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    """Our folder appended to the user's nnUNet_extTrainer (nnU-Net searches every listed folder), once."""
    print(f"export {EXT_TRAINER_ENV}={shlex.quote(ext_trainer_value())}")
    return 0


def _cmd_trainers(args: argparse.Namespace) -> int:
    """Names one per line, for scripts: ``TRAINERS=$(nnmsf trainers --table1)``."""
    from nnunet_medsam_fusion.trainer_table import TABLE1_TRAINERS, trainer_names

    print("\n".join(TABLE1_TRAINERS if args.table1 else trainer_names()))
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from nnunet_medsam_fusion.data.synthetic import write_dataset

    folder = write_dataset(
        args.out,
        dataset_id=args.dataset_id,
        name=args.name,
        num_train=args.cases,
        num_test=args.test_cases,
        shape=tuple(args.shape),
        spacing=tuple(args.spacing),
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"wrote {folder}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """``nnmsf demo``; Ctrl-C ends it with one line and exit code 130 (trained models stay and are reused)."""
    from nnunet_medsam_fusion.demo import run_demo

    try:
        return run_demo(workdir=args.workdir, device=args.device, fresh=args.fresh, trainers=args.trainers,
                        table1=args.table1, three_d=args.three_d)
    except KeyboardInterrupt:
        print(f"nnmsf demo: interrupted; the models trained so far stay in {args.workdir} and the next "
              "nnmsf demo reuses them", file=sys.stderr)
        return 130


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from nnunet_medsam_fusion.evaluation.commands import run_evaluate

    return run_evaluate(args)


def _cmd_compare(args: argparse.Namespace) -> int:
    from nnunet_medsam_fusion.evaluation.commands import run_compare

    return run_compare(args)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from nnunet_medsam_fusion.benchmarking.command import run_benchmark_command

    return run_benchmark_command(args)


def _cmd_convert(args: argparse.Namespace) -> int:
    from nnunet_medsam_fusion.data.convert.commands import run_convert

    return run_convert(args)


def build_parser() -> argparse.ArgumentParser:
    from nnunet_medsam_fusion.benchmarking.command import add_benchmark_arguments
    from nnunet_medsam_fusion.data.convert.commands import add_convert_arguments
    from nnunet_medsam_fusion.evaluation.commands import add_compare_arguments, add_evaluate_arguments

    parser = argparse.ArgumentParser(prog="nnmsf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ext-path", help="print the folder for nnUNet_extTrainer")
    p.set_defaults(func=_cmd_ext_path)

    p = sub.add_parser("env", help="print the export line that appends our trainers to nnUNet_extTrainer")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("synth", help="write a synthetic TOF-MRA data set in nnU-Net's raw layout")
    p.add_argument("--out", type=Path, required=True, help="nnU-Net raw folder to write DatasetXXX_Name into")
    p.add_argument("--cases", type=int, default=20, help="training cases (imagesTr/labelsTr)")
    p.add_argument("--test-cases", type=int, default=4, help="test cases (imagesTs/labelsTs)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same cases (default 0)")
    p.add_argument("--dataset-id", type=int, default=501, help="nnU-Net dataset id, 1..999 (default 501)")
    p.add_argument("--name", default="SyntheticTOF", help="dataset name: DatasetNNN_NAME (default SyntheticTOF)")
    p.add_argument("--shape", type=int, nargs=3, default=(128, 128, 64), metavar=("X", "Y", "Z"),
                   help="voxels per case (default 128 128 64)")
    p.add_argument("--spacing", type=float, nargs=3, default=(0.3, 0.3, 0.6), metavar=("SX", "SY", "SZ"),
                   help="voxel spacing in mm")
    p.add_argument("--overwrite", action="store_true", help="replace an existing data set of that id")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("demo", help="synthesise, plan, train, predict and score on a laptop CPU")
    p.add_argument("--workdir", type=Path, default=Path("nnmsf_demo"),
                   help="working folder (nnUNet_raw/preprocessed/results live inside it)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where nnU-Net trains and predicts (default auto: cuda when available, else cpu)")
    p.add_argument("--fresh", action="store_true", help="delete the working folder first")
    p.add_argument("--trainers", nargs="+", default=None, help="demo trainers to run (default: all)")
    p.add_argument("--table1", action="store_true",
                   help="also train the UNet, SwinUNet and TransUNet baselines: all seven rows of the paper's Table 1 "
                        "(longer than the default demo; docs/baselines.md)")
    p.add_argument("--3d", dest="three_d", action="store_true",
                   help="the same trainers on nnU-Net's 3d_fullres of a smaller synthetic set of its own "
                        "(Dataset502): 3D U-Nets with the 2D encoder's slice features")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("evaluate", help="paper metrics for a folder of predictions against references")
    add_evaluate_arguments(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compare", help="the paper's comparison and ablation tables from trained folds")
    add_compare_arguments(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("benchmark", help="training-step / inference time and peak memory against the baseline")
    add_benchmark_arguments(p)
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("trainers", help="print trainer names, one per line (default: every trainer of this package)")
    p.add_argument("--table1", action="store_true", help="only the seven rows of the paper's Table 1, in its order")
    p.set_defaults(func=_cmd_trainers)

    p = sub.add_parser("convert", help="a public TOF-MRA release (CAS 2023, TopCoW, COSTA, image/mask pairs) "
                                       "-> $nnUNet_raw/DatasetNNN_Name")
    add_convert_arguments(p)
    p.set_defaults(func=_cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        print(f"nnmsf {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
