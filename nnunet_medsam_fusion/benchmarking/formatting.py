"""Ratios to the baseline, the machine's description and the printed tables of a benchmark run."""

from __future__ import annotations

import os
import platform


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
