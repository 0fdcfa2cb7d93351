"""The measurements of one trainer, in a process of its own: loader, training step, patch and volume inference,
peak memory and, for fused trainers, the frozen encoder."""

from __future__ import annotations

import contextlib
import copy
import io
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .discovery import find_trainer_class, random_weights_variant
from .formatting import describe_spec
from .options import BenchmarkSettings

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm


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
    data = network.encoder_images(batch.to(device))  # 3D: the images the encoder sees of the batch
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
