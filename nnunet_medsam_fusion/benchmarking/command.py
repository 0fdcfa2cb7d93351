"""``nnmsf benchmark``'s arguments, their checks before anything runs, the run and its output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from .discovery import find_trainer_class
from .formatting import add_ratios, format_foundation_table, format_table, machine_description
from .options import DEFAULT_TRAINERS, MEDSAM2_RANDOM_SIZES, BenchmarkSettings
from .timing import measure_trainer


def resolve_settings(args: argparse.Namespace) -> BenchmarkSettings:
    """Check every argument before anything runs; errors name the problem and the fix."""
    import torch
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from nnunet_medsam_fusion.settings import checkpoint_path
    from nnunet_medsam_fusion.trainers.foundation_fusion import FoundationFusionTrainer

    for option in ("iters", "volume_iters", "folds"):
        if getattr(args, option) < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}.")
    if args.warmup < 0 or (args.batch_size is not None and args.batch_size < 1):
        raise ValueError("--warmup must be >= 0 and --batch-size >= 1.")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu.")
    if not nnUNet_preprocessed.is_set():
        raise ValueError("nnUNet_preprocessed is not set; export it (the folder nnUNetv2_plan_and_preprocess "
                         "wrote) and run again.")
    try:
        dataset_name = maybe_convert_to_dataset_name(args.dataset)
    except RuntimeError as error:
        raise ValueError(f"Dataset {args.dataset!r} not found ({error}). Plan and preprocess it first: "
                         f"nnUNetv2_plan_and_preprocess -d {args.dataset} -c {args.configuration}") from error
    folder = Path(str(nnUNet_preprocessed)) / dataset_name
    plans_file = folder / f"{args.plans}.json"
    if not plans_file.is_file():
        raise FileNotFoundError(f"No plans {plans_file}; run nnUNetv2_plan_and_preprocess -d {args.dataset} or "
                                "name existing plans with --plans.")
    configurations = json.loads(plans_file.read_text())["configurations"]
    if args.configuration not in configurations:
        raise ValueError(f"Configuration {args.configuration!r} is not in {plans_file.name}; it has "
                         f"{', '.join(configurations)}.")
    for name in args.trainers:
        trainer_class = find_trainer_class(name)
        if (issubclass(trainer_class, FoundationFusionTrainer) and trainer_class.requires_checkpoint
                and not args.random_weights and not checkpoint_path(trainer_class.checkpoint_env)):
            raise ValueError(f"{name} needs its foundation checkpoint in {trainer_class.checkpoint_env}; set it, "
                             "or pass --random-weights to time the real-size encoder with random weights.")
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; choose another --out or pass --overwrite to replace it.")
    return BenchmarkSettings(
        preprocessed_folder=str(folder), configuration=args.configuration, plans_identifier=args.plans,
        device=device, iters=args.iters, warmup=args.warmup, volume_iters=args.volume_iters,
        batch_size=args.batch_size, mirroring=not args.no_mirroring, compile=args.compile,
        random_weights=args.random_weights, medsam2_size=args.medsam2_size, folds=args.folds,
        feature_cache=not args.no_feature_cache, encoder_precision=args.encoder_precision,
        compare_precision=args.compare_precision)


def run_benchmark(settings: BenchmarkSettings, trainers: list[str], log: Callable[[str], None] = print) -> dict:
    """Measure each trainer in a fresh process; the report with ratios to the first trainer."""
    results = []
    for name in trainers:
        log(f"measuring {name} ...")
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            results.append(pool.submit(measure_trainer, name, settings).result())
    return {"machine": machine_description(settings.device), "settings": asdict(settings),
            "trainers": add_ratios(results)}


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset id or name (planned and preprocessed)")
    parser.add_argument("--trainers", nargs="+", default=list(DEFAULT_TRAINERS),
                        help="trainer class names; the first is the baseline of the ratios")
    parser.add_argument("--configuration", default="2d",
                        help="nnU-Net configuration of the plans: 2d, 3d_fullres or 3d_lowres (default: 2d)")
    parser.add_argument("--plans", default="nnUNetPlans", help="plans identifier")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda where PyTorch sees a GPU, else cpu")
    parser.add_argument("--iters", type=int, default=10, help="timed training steps and patch forwards")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--volume-iters", type=int, default=1, help="timed sliding-window predictions")
    parser.add_argument("--batch-size", type=int, default=None, help="override the plans' batch size")
    parser.add_argument("--no-mirroring", action="store_true", help="predict volumes without test-time mirroring")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile each network (also on CPU) and check it matches eager")
    parser.add_argument("--random-weights", action="store_true",
                        help="real-size foundation encoders with random weights (no checkpoint needed)")
    parser.add_argument("--medsam2-size", choices=MEDSAM2_RANDOM_SIZES, default="hiera_s",
                        help="Hiera size of MedSAM2 trainers under --random-weights")
    parser.add_argument("--folds", type=int, default=1,
                        help="predict the volume as nnUNetv2_predict -f with this many folds (the same weights)")
    parser.add_argument("--no-feature-cache", action="store_true",
                        help="recompute frozen-encoder features for every fold (the reuse switched off)")
    parser.add_argument("--encoder-precision", choices=("auto", "fp32", "bf16"), default=None,
                        help="NNMSF_ENCODER_PRECISION for this run (default: as set in the environment)")
    parser.add_argument("--compare-precision", action="store_true",
                        help="fused trainers: fp32 vs bf16 feature error and prediction agreement")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run_benchmark_command(args: argparse.Namespace) -> int:
    settings = resolve_settings(args)
    report = run_benchmark(settings, args.trainers)
    print(format_table(report["trainers"], settings.device))
    foundation_table = format_foundation_table(report["trainers"])
    if foundation_table:
        print(foundation_table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0
