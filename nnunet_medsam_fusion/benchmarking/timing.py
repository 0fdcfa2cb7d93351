"""``nnmsf benchmark``: training-step, patch and volume inference time and peak memory of trainers on one plans.

Every trainer is built in-process the way ``nnUNetv2_train`` builds it (results go to a temporary folder, so
nothing of the user's is written) and measured in a fresh process of its own, so that peak memory, caches and
``torch.compile`` state of one trainer never leak into the next. Ratios are to the first trainer (the baseline).
Times do not depend on the weights, so ``--random-weights`` times the real-size encoders without checkpoints.
torch is imported inside the functions so that building ``nnmsf``'s parser (e.g. for ``nnmsf env``) stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm

DEFAULT_TRAINERS = (
    "nnUNetTrainer",
    "nnUNetTrainerFocalDice",
    "nnUNetTrainerMedSAMFusion",
    "nnUNetTrainerMedSAM2Fusion",
)
MEDSAM2_RANDOM_SIZES = ("hiera_t", "hiera_s")


@dataclass(frozen=True)
class BenchmarkSettings:
    """What one benchmark run measures; sent to each per-trainer process."""

    preprocessed_folder: str  # nnUNet_preprocessed/DatasetXXX_Name
    configuration: str = "2d"
    plans_identifier: str = "nnUNetPlans"
    device: str = "cpu"
    iters: int = 10
    warmup: int = 3
    volume_iters: int = 1
    batch_size: int | None = None  # None: the plans' batch size
    mirroring: bool = True
    compile: bool = False
    random_weights: bool = False
    medsam2_size: str = "hiera_s"
    folds: int = 1  # volume inference as nnUNetv2_predict -f with this many folds (same weights loaded each time)
    feature_cache: bool = True  # reuse frozen-encoder features across folds (fused trainers)
    encoder_precision: str | None = None  # NNMSF_ENCODER_PRECISION for the run; None: as set
    compare_precision: bool = False  # fused trainers: fp32 vs bf16 feature error and prediction agreement


def find_trainer_class(name: str) -> type:
    """A trainer class by name, found by nnU-Net's own lookup as ``nnUNetv2_train`` finds it.

    This package's trainer folder is added to ``nnUNet_extTrainer`` when the variable does not name it yet.
    """
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_medsam_fusion.settings import EXT_TRAINER_ENV, ext_trainer_value, temporary_environ

    folders = ext_trainer_value()
    try:
        with temporary_environ(**{EXT_TRAINER_ENV: folders}), contextlib.redirect_stdout(io.StringIO()):
            return recursive_find_trainer_class_by_name(name)  # nnU-Net narrates its search; silenced
    except RuntimeError as error:
        raise ValueError(f"Unknown trainer {name!r}: neither nnU-Net nor {EXT_TRAINER_ENV} ({folders}) has it. "
                         "Check the spelling.") from error


def random_weights_variant(trainer_class: type, medsam2_size: str = "hiera_s") -> type:
    """The same trainer with a fixed foundation spec and no checkpoint required (random encoder weights).

    MedSAM2 trainers read family and size from the checkpoint, so without one they use Medical SAM 2 (the
    family the paper cites) of ``medsam2_size`` at the trainer's encoder input size (native 1024 by default).
    Trainers without a foundation encoder, or that need no checkpoint already, are returned unchanged.
    """
    from nnunet_medsam_fusion.foundation import MEDICAL_SAM2, FoundationSpec, native_input_size
    from nnunet_medsam_fusion.trainers.foundation_fusion import FoundationFusionTrainer
    from nnunet_medsam_fusion.trainers.medsam2_fusion import nnUNetTrainerMedSAM2Fusion

    if not issubclass(trainer_class, FoundationFusionTrainer) or not trainer_class.requires_checkpoint:
        return trainer_class
    if issubclass(trainer_class, nnUNetTrainerMedSAM2Fusion):
        input_size = trainer_class.encoder_input_size or native_input_size(MEDICAL_SAM2, medsam2_size)
        spec = FoundationSpec(MEDICAL_SAM2, medsam2_size, input_size)
    else:
        spec = trainer_class.foundation_spec(None)

    def foundation_spec(cls, checkpoint: str | None) -> FoundationSpec:
        return spec

    return type(trainer_class.__name__, (trainer_class,), {
        "requires_checkpoint": False,
        "foundation_spec": classmethod(foundation_spec),
        "__module__": __name__,
        "__doc__": f"{trainer_class.__name__} with a randomly initialised {spec} encoder (benchmarks only).",
    })


def training_loader(trainer) -> Iterator[dict]:
    """The trainer's own nnU-Net training loader, with its transforms (e.g. the Skeleton Recall tube), run in this
    process (``nnUNet_n_proc_DA=0``). Every preprocessed case is a training case, so no ``splits_final.json`` is
    written into the user's preprocessed folder."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    from nnunet_medsam_fusion.settings import temporary_environ

    folder = trainer.preprocessed_dataset_folder
    identifiers = sorted(infer_dataset_class(folder).get_identifiers(folder))
    trainer.do_split = lambda: (identifiers, identifiers)
    with temporary_environ(nnUNet_n_proc_DA="0"), contextlib.redirect_stdout(io.StringIO()):
        loader, _ = trainer.get_dataloaders()
    return loader


def training_batches(trainer, warmup: int, iters: int, progress: tqdm | None = None) -> tuple[list[float], dict]:
    """Seconds per batch of ``training_loader``, the CPU cost of one batch, and its last batch."""
    import torch

    loader = training_loader(trainer)
    latest = {}
    times = timed(lambda: latest.update(batch=next(loader)), warmup, iters, torch.device("cpu"), progress)
    return times, latest["batch"]


def timed(call: Callable[[], object], warmup: int, iters: int, device: torch.device,
          progress: tqdm | None = None) -> list[float]:
    """Seconds per call after ``warmup`` untimed calls (CUDA synchronised around each timed call); each call
    advances ``progress``."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        call()
        if progress is not None:
            progress.update()
    times = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - start)
        if progress is not None:
            progress.update()
    return times


def progress_bar(name: str, settings: BenchmarkSettings, fused: bool) -> tqdm:
    """One bar per trainer on stderr, a tick per timed or warm-up call: a real-size run takes minutes per trainer."""
    from tqdm import tqdm

    calls = 3 * (settings.warmup + settings.iters) + settings.volume_iters  # loader, train step, patch; volumes
    if fused:  # encoder forwards, one prediction counting encoder calls, fp32 and bf16 predictions
        calls += 1 + settings.iters + 1 + (2 if settings.compare_precision else 0)
    return tqdm(total=calls, desc=name, unit="call", file=sys.stderr, dynamic_ncols=True)


def first_case(settings: BenchmarkSettings, data_identifier: str) -> np.ndarray:
    """The first preprocessed case of the configuration, (C, Z, Y, X) as nnU-Net's predictor takes it."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = str(Path(settings.preprocessed_folder) / data_identifier)
    dataset_class = infer_dataset_class(folder)
    identifiers = sorted(dataset_class.get_identifiers(folder))
    data = dataset_class(folder, identifiers[:1]).load_case(identifiers[0])[0]
    return np.asarray(data[:], dtype=np.float32)


def peak_memory_mb(device: torch.device, rss_before_kb: int) -> float:
    """CUDA: max_memory_allocated. CPU: growth of the process's peak RSS (ru_maxrss, KiB on Linux)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024


def measure_trainer(name: str, settings: BenchmarkSettings) -> dict:
    """Build ``name`` on the settings' plans and time train step, patch and volume inference (one process)."""
    from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, temporary_environ

    precision = {ENCODER_PRECISION_ENV: settings.encoder_precision} if settings.encoder_precision else {}
    with temporary_environ(**precision):
        return _measure_trainer(name, settings)


def _measure_trainer(name: str, settings: BenchmarkSettings) -> dict:
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_medsam_fusion.foundation import MEDSAM2_CHECKPOINT_ENV, MEDSAM_CHECKPOINT_ENV
    from nnunet_medsam_fusion.settings import temporary_environ
    from nnunet_medsam_fusion.trainers.foundation_fusion import FoundationFusionTrainer, unwrap

    torch.manual_seed(0)
    device = torch.device(settings.device)
    trainer_class = find_trainer_class(name)
    unset_checkpoints = {}
    if settings.random_weights:
        unset_checkpoints = {MEDSAM_CHECKPOINT_ENV: None, MEDSAM2_CHECKPOINT_ENV: None}
        trainer_class = random_weights_variant(trainer_class, settings.medsam2_size)
    folder = Path(settings.preprocessed_folder)
    plans = copy.deepcopy(load_json(str(folder / f"{settings.plans_identifier}.json")))
    plans["continue_training"] = False
    if settings.batch_size is not None:
        plans["configurations"][settings.configuration]["batch_size"] = settings.batch_size
    dataset_json = load_json(str(folder / "dataset.json"))

    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    progress = progress_bar(name, settings, issubclass(trainer_class, FoundationFusionTrainer))
    with tempfile.TemporaryDirectory() as results, contextlib.redirect_stdout(io.StringIO()), progress, \
            temporary_environ(nnUNet_results=results, nnUNet_compile="f", **unset_checkpoints):  # compiled below
        progress.set_postfix_str("building")
        trainer = trainer_class(plans, settings.configuration, 0, dataset_json, device)
        trainer.initialize()
        if settings.compile:
            trainer.network = torch.compile(trainer.network)
        progress.set_postfix_str("training batches")
        loading, batch = training_batches(trainer, settings.warmup, settings.iters, progress)
        progress.set_postfix_str("training steps")
        step = timed(lambda: trainer.train_step(batch), settings.warmup, settings.iters, device, progress)

        trainer.set_deep_supervision_enabled(False)
        network = trainer.network.eval()
        patch = torch.randn(1, trainer.num_input_channels, *trainer.configuration_manager.patch_size,
                            device=device)
        autocast = torch.autocast("cuda") if device.type == "cuda" else contextlib.nullcontext()
        progress.set_postfix_str("patch inference")
        with torch.no_grad(), autocast:
            patch_times = timed(lambda: network(patch), settings.warmup, settings.iters, device, progress)
            compile_error = None
            if settings.compile:  # the compiled network must give what the eager one gives
                compile_error = (network(patch) - unwrap(network)(patch)).abs().max().item()

        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=settings.mirroring,
                                    perform_everything_on_device=True, device=device, verbose=False,
                                    allow_tqdm=False)
        fused = isinstance(trainer, FoundationFusionTrainer)
        volume = torch.from_numpy(first_case(settings, trainer.configuration_manager.data_identifier))
        # As nnUNetv2_predict -f 0 1 ...: load each fold's parameters (here the same ones), predict, average.
        parameters = [unwrap(network).state_dict()] * settings.folds
        predictor.manual_initialization(network, trainer.plans_manager, trainer.configuration_manager, parameters,
                                        dataset_json, name, trainer.inference_allowed_mirroring_axes)
        progress.set_postfix_str("foundation encoder")
        foundation = foundation_figures(unwrap(network), predictor, volume, batch["data"], settings, device,
                                        progress) if fused else {}
        progress.set_postfix_str(f"volume prediction {list(volume.shape)}")
        volume_times = timed(lambda: predictor.predict_logits_from_preprocessed_data(volume), 0,
                             settings.volume_iters, device, progress)
        peak = peak_memory_mb(device, rss_before_kb)

    return {
        "trainer": name,
        "foundation": describe_spec(unwrap(network).foundation.spec) if fused else None,
        "weights": (trainer.foundation_checkpoint or "RANDOM") if fused else None,
        "batch_size": int(trainer.configuration_manager.batch_size),
        "patch_size": [int(s) for s in trainer.configuration_manager.patch_size],
        "volume_shape": list(volume.shape),
        "step_ms": 1000 * statistics.median(step),
        "load_ms": 1000 * statistics.median(loading),
        "step_load_ms": 1000 * (statistics.median(step) + statistics.median(loading)),
        "patch_ms": 1000 * statistics.median(patch_times),
        "volume_s": statistics.median(volume_times),
        "peak_memory_mb": peak,
        "compile_max_abs_diff": compile_error,
        "step_ms_all": [1000 * t for t in step],
        "load_ms_all": [1000 * t for t in loading],
        "patch_ms_all": [1000 * t for t in patch_times],
        "volume_s_all": volume_times,
        "folds": settings.folds,
        **foundation,
    }


def foundation_figures(network, predictor, volume, batch, settings: BenchmarkSettings, device,
                       progress: tqdm | None = None) -> dict:
    """Fused trainers: encoder precision and forward time, encoder calls of one ensemble prediction (cache on or
    off) and, on request, fp32 vs bf16 feature error and prediction agreement."""
    import dataclasses

    import torch

    from nnunet_medsam_fusion.foundation.precision import describe_encoder_precision

    encoder = network.foundation
    if not settings.feature_cache:
        encoder.feature_cache.budget_bytes = 0
    data = network.encoded_slices(batch.to(device))  # 3D: the slices the encoder sees of the batch
    with torch.no_grad():
        encoder_times = timed(lambda: encoder(data), 1, settings.iters, device, progress)
    calls = []  # images the frozen image encoder really computes (reused features never reach it)
    hook = encoder.image_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    original = predictor.predict_logits_from_preprocessed_data

    def predict(case):  # a fresh cache per timed prediction, as for a new case
        encoder.feature_cache.clear()
        return original(case)

    predictor.predict_logits_from_preprocessed_data = predict
    try:
        predict(volume)
    finally:
        hook.remove()
    if progress is not None:
        progress.update()
    figures = {"encoder_precision": describe_encoder_precision(encoder.spec.precision, device),
               "encoder_batch": int(data.shape[0]), "encoder_ms": 1000 * statistics.median(encoder_times),
               "encoder_calls": sum(calls), "feature_cache": settings.feature_cache}
    if settings.compare_precision:
        outputs, recorded = {}, encoder.spec
        for precision in ("fp32", "bf16"):
            encoder.spec = dataclasses.replace(recorded, precision=precision)
            with torch.no_grad():
                outputs[precision] = ([f.float() for f in encoder(data)], predict(volume).argmax(0))
            if progress is not None:
                progress.update()
        encoder.spec = recorded
        errors = [((a - b).norm() / a.norm()).item()
                  for a, b in zip(outputs["fp32"][0], outputs["bf16"][0], strict=True)]
        figures["feature_rel_error"] = max(errors)
        figures["prediction_agreement"] = (outputs["fp32"][1] == outputs["bf16"][1]).float().mean().item()
    return figures


def format_foundation_table(results: list[dict]) -> str:
    """The frozen-encoder figures of the fused trainers (empty when there are none)."""
    fused = [r for r in results if "encoder_ms" in r]
    if not fused:
        return ""
    header = (f"{'trainer':<36} {'precision':<24} {'encoder ms (batch)':>18} {'folds':>5} {'cache':>5} "
              f"{'encoder calls':>13} {'volume s':>9} {'feat rel err':>12} {'agreement':>9}")
    lines = [header, "-" * len(header)]
    for r in fused:
        error = f"{r['feature_rel_error']:.2e}" if "feature_rel_error" in r else "-"
        agreement = f"{r['prediction_agreement']:.5f}" if "prediction_agreement" in r else "-"
        lines.append(f"{r['trainer']:<36} {r['encoder_precision']:<24} "
                     f"{r['encoder_ms']:>11.1f} ({r['encoder_batch']:>3}) {r['folds']:>5} "
                     f"{'on' if r['feature_cache'] else 'off':>5} {r['encoder_calls']:>13} {r['volume_s']:>9.2f} "
                     f"{error:>12} {agreement:>9}")
    lines.append("encoder calls: frozen-encoder forwards of one prediction of the first case (tiles x mirrors x "
                 "folds without reuse); feat rel err = max over levels of |bf16 - fp32| / |fp32|; agreement = "
                 "fraction of voxels with the same predicted label in fp32 and bf16.")
    return "\n".join(lines)


def describe_spec(spec) -> str:
    """Short name of a foundation spec for the table, e.g. ``medsam/vit_b@512``."""
    return f"{spec.family}/{spec.size}@{spec.input_size}"


RATIO_KEYS = ("step_ms", "load_ms", "step_load_ms", "patch_ms", "volume_s", "peak_memory_mb")


def add_ratios(results: list[dict]) -> list[dict]:
    """Add ``<key>_ratio`` to every result: its figure over the first (baseline) result's."""
    baseline = results[0]
    for result in results:
        for key in (key for key in RATIO_KEYS if key in baseline):
            result[f"{key}_ratio"] = result[key] / baseline[key] if baseline[key] > 0 else float("nan")
    return results


def machine_description(device: str) -> dict:
    """The machine the figures come from, for the JSON and docs."""
    import torch

    described = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
    }
    if device == "cuda":
        described["gpu"] = torch.cuda.get_device_name()
    return described


def format_table(results: list[dict], device: str) -> str:
    """The printed table: times and peak memory with their ratios to the baseline (first row)."""
    header = (f"{'trainer':<44} {'step ms':>9} {'x':>6} {'load ms':>9} {'step+load':>9} {'x':>6} {'patch ms':>9} "
              f"{'x':>6} {'volume s':>9} {'x':>6} {'peak MB':>9} {'x':>6}  encoder (weights)")
    lines = [header, "-" * len(header)]
    for r in results:
        encoder = f"{r['foundation']} ({r['weights']})" if r["foundation"] else "-"
        lines.append(
            f"{r['trainer']:<44} {r['step_ms']:>9.1f} {r['step_ms_ratio']:>6.2f} {r['load_ms']:>9.1f} "
            f"{r['step_load_ms']:>9.1f} {r['step_load_ms_ratio']:>6.2f} {r['patch_ms']:>9.1f} "
            f"{r['patch_ms_ratio']:>6.2f} {r['volume_s']:>9.2f} {r['volume_s_ratio']:>6.2f} "
            f"{r['peak_memory_mb']:>9.0f} {r['peak_memory_mb_ratio']:>6.2f}  {encoder}")
    memory = ("CUDA max_memory_allocated" if device == "cuda"
              else "growth of the process's peak RSS (ru_maxrss), a rough CPU proxy")
    lines.append(f"ratios (x) are to {results[0]['trainer']}; peak memory = {memory}; times are medians.")
    lines.append("load ms = one training batch of nnU-Net's data loader with the trainer's transforms, in one "
                 "process (nnUNet_n_proc_DA workers run in parallel during training).")
    if any(r["weights"] == "RANDOM" for r in results):
        lines.append("NOTE: foundation encoders marked RANDOM have random weights: times are real, features are not.")
    return "\n".join(lines)


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
