"""nnmsf benchmark end to end on the tiny trainers, SDPA attention against segment_anything's, bad arguments."""

import json
import re
import subprocess

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention, window_partition

from nnunet_medsam_fusion.benchmarking.discovery import random_weights_variant
from nnunet_medsam_fusion.benchmarking.formatting import add_ratios
from nnunet_medsam_fusion.foundation import FoundationSpec
from nnunet_medsam_fusion.foundation.medsam import SDPAAttention, build_vit_image_encoder, resize_pos_embed
from nnunet_medsam_fusion.testing.nnunet_env import BIN, DATASET_ID, nnunet_env
from nnunet_medsam_fusion.testing.tiny_checkpoints import write_tiny_medsam2_checkpoint
from nnunet_medsam_fusion.trainers import (
    nnUNetTrainerFocalDice,
    nnUNetTrainerMedSAM2Fusion,
    nnUNetTrainerMedSAM2Fusion_512,
    nnUNetTrainerMedSAMFusion,
    nnUNetTrainerMedSAMFusion_512,
    nnUNetTrainerMedSAMFusionTiny,
)

TINY_TRAINERS = ["nnUNetTrainer", "nnUNetTrainerMedSAMFusionTiny"]  # MedSAM2: the 3d_fullres test below


def nnmsf(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "nnmsf"), *args], env=env, capture_output=True, text=True, timeout=300)


def perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random non-zero weights everywhere (segment_anything zero-initialises the relative-position tables)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return module.eval()


@pytest.mark.slow
def test_benchmark_cli_measures_every_trainer_against_the_baseline(planned_dataset, tmp_path):
    out = tmp_path / "bench.json"
    env = nnunet_env(planned_dataset, nnUNet_results=str(tmp_path / "untouched"))
    done = nnmsf(["benchmark", str(DATASET_ID), "--trainers", *TINY_TRAINERS, "--device", "cpu", "--iters", "2",
                  "--warmup", "1", "--batch-size", "2", "--no-mirroring", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    results = {r["trainer"]: r for r in report["trainers"]}
    assert list(results) == TINY_TRAINERS
    for result in results.values():
        assert result["step_ms"] > 0 and result["patch_ms"] > 0 and result["volume_s"] > 0
        assert len(result["step_ms_all"]) == 2 and result["batch_size"] == 2
        assert result["volume_shape"][0] == 1 and len(result["volume_shape"]) == 4
    baseline = results["nnUNetTrainer"]
    assert all(baseline[f"{key}_ratio"] == 1.0 for key in ("step_ms", "patch_ms", "volume_s"))
    assert baseline["foundation"] is None
    assert results["nnUNetTrainerMedSAMFusionTiny"]["foundation"] == "medsam/tiny@64"
    assert results["nnUNetTrainerMedSAMFusionTiny"]["weights"] == "RANDOM"
    assert "RANDOM" in done.stdout and "nnUNetTrainerMedSAMFusionTiny" in done.stdout
    for trainer in TINY_TRAINERS:  # no silent minutes: a progress bar per trainer, run to its end
        assert re.search(rf"{trainer}: 100%\|.*\| (\d+)/\1 \[", done.stderr), done.stderr[-3000:]
    assert not (tmp_path / "untouched").exists()  # trainers wrote into a temporary folder only
    refused = nnmsf(["benchmark", str(DATASET_ID), "--trainers", "nnUNetTrainer", "--out", str(out)], env)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert json.loads(out.read_text()) == report  # the earlier figures are kept


@pytest.mark.slow
def test_benchmark_cli_on_3d_fullres_counts_the_encoder_calls_that_reuse_saves(planned_dataset, tmp_path):
    """One tile covers the 16x64x64 case: each of nnU-Net's 8 mirrorings of 2 folds would encode the tile's
    slices; with reuse the folds and the slice-axis mirror (the same slices, reversed) cost nothing more."""
    env = nnunet_env(planned_dataset, nnUNet_results=str(tmp_path / "untouched"))
    common = ["benchmark", str(DATASET_ID), "--configuration", "3d_fullres", "--device", "cpu", "--iters", "1",
              "--warmup", "0", "--batch-size", "1", "--folds", "2"]
    reports = {}
    for name, trainers, extra in (("reuse", ["nnUNetTrainer", "nnUNetTrainerMedSAM2FusionTiny"], []),
                                  ("no_reuse", ["nnUNetTrainerMedSAM2FusionTiny"], ["--no-feature-cache"])):
        done = nnmsf([*common, "--trainers", *trainers, *extra, "--out", str(tmp_path / f"{name}.json")], env)
        assert done.returncode == 0, done.stderr[-3000:]
        reports[name] = {r["trainer"]: r for r in json.loads((tmp_path / f"{name}.json").read_text())["trainers"]}
    baseline, fused = reports["reuse"]["nnUNetTrainer"], reports["reuse"]["nnUNetTrainerMedSAM2FusionTiny"]
    assert baseline["step_ms_ratio"] == 1.0 and fused["step_ms_ratio"] > 0
    assert len(fused["patch_size"]) == 3 and len(fused["volume_shape"]) == 4
    assert fused["patch_size"] == [fused["volume_shape"][1], *fused["volume_shape"][2:]]  # one tile
    images = fused["encoder_batch"]  # batch 1: the images the encoder sees of one patch, one per depth cell
    assert 1 <= images <= fused["patch_size"][0]
    assert reports["no_reuse"]["nnUNetTrainerMedSAM2FusionTiny"]["encoder_calls"] == 2 * 8 * images
    assert fused["encoder_calls"] == 4 * images  # the in-plane mirrorings change the images; nothing else does


@pytest.mark.parametrize("args, message", [
    (["--trainers", "nnUNetTrainer", "nnUNetTrainerNoSuchThing"], "nnUNetTrainerNoSuchThing"),
    (["--trainers", "nnUNetTrainer", "nnUNetTrainerMedSAMFusion"], "--random-weights"),
    (["--iters", "0"], "--iters"),
    (["--configuration", "3d_lowres"], "3d_lowres"),
])
def test_bad_arguments_exit_2_naming_the_problem(planned_dataset, args, message):
    done = nnmsf(["benchmark", str(DATASET_ID), *args], nnunet_env(planned_dataset))
    assert done.returncode == 2 and message in done.stderr


def test_unknown_dataset_says_how_to_plan_it(planned_dataset):
    done = nnmsf(["benchmark", "Dataset404_Nothing"], nnunet_env(planned_dataset))
    assert done.returncode == 2 and "nnUNetv2_plan_and_preprocess" in done.stderr


@pytest.mark.parametrize("windowed", [True, False])
@pytest.mark.parametrize("table_side", [4, 6])  # 4: tables fit the grid; 6: tables interpolated (other sizes)
def test_sdpa_attention_equals_segment_anything_attention(windowed, table_side):
    reference = perturbed(Attention(32, num_heads=2, use_rel_pos=True, input_size=(table_side, table_side)))
    sdpa = SDPAAttention(32, num_heads=2, use_rel_pos=True, input_size=(table_side, table_side)).eval()
    sdpa.load_state_dict(reference.state_dict())
    x = torch.randn(2, 8, 8, 32)
    if windowed:  # as a windowed block calls it: 2x2 windows of 4x4 tokens
        x = window_partition(x, 4)[0]
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("input_size", [64, 96])
def test_sdpa_vit_equals_segment_anything_vit(input_size):
    reference = perturbed(build_vit_image_encoder("tiny", sdpa=False))
    sdpa = build_vit_image_encoder("tiny").eval()
    assert all(isinstance(block.attn, SDPAAttention) for block in sdpa.blocks)
    sdpa.load_state_dict(reference.state_dict())  # same parameter names: checkpoints load unchanged
    for encoder in (reference, sdpa):
        encoder.pos_embed = torch.nn.Parameter(resize_pos_embed(encoder.pos_embed.detach(), input_size // 16))
    images = torch.rand(2, 3, input_size, input_size)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(images), reference(images), rtol=1e-4, atol=1e-4)


def test_random_weights_variant_fixes_the_spec_and_drops_the_checkpoint_requirement():
    medsam = random_weights_variant(nnUNetTrainerMedSAMFusion_512)
    assert not medsam.requires_checkpoint and issubclass(medsam, nnUNetTrainerMedSAMFusion_512)
    assert medsam.foundation_spec(None) == FoundationSpec("medsam", "vit_b", 512)
    assert random_weights_variant(nnUNetTrainerMedSAM2Fusion, "hiera_t").foundation_spec(None) == \
        FoundationSpec("medical_sam2", "hiera_t", 1024)
    assert random_weights_variant(nnUNetTrainerMedSAM2Fusion_512).foundation_spec(None) == \
        FoundationSpec("medical_sam2", "hiera_s", 512)
    assert random_weights_variant(nnUNetTrainerFocalDice) is nnUNetTrainerFocalDice
    assert random_weights_variant(nnUNetTrainerMedSAMFusionTiny) is nnUNetTrainerMedSAMFusionTiny
    assert nnUNetTrainerMedSAMFusion.requires_checkpoint  # the real class is untouched


def test_512_variants_run_the_checkpoint_family_at_512(tmp_path, monkeypatch):
    monkeypatch.setattr(nnUNetTrainerMedSAM2Fusion_512, "sizes", ("tiny",))  # the test file's size
    write_tiny_medsam2_checkpoint(tmp_path / "m2.pt", family="bowang_medsam2")
    assert nnUNetTrainerMedSAM2Fusion_512.foundation_spec(str(tmp_path / "m2.pt")) == \
        FoundationSpec("bowang_medsam2", "tiny", 512)
    assert nnUNetTrainerMedSAMFusion_512.foundation_spec(None).input_size == 512


def test_add_ratios_divides_by_the_first_result():
    results = add_ratios([{"step_ms": 2.0, "patch_ms": 1.0, "volume_s": 4.0, "peak_memory_mb": 10.0},
                          {"step_ms": 3.0, "patch_ms": 1.5, "volume_s": 2.0, "peak_memory_mb": 0.0}])
    assert [r["step_ms_ratio"] for r in results] == [1.0, 1.5]
    assert results[1]["volume_s_ratio"] == 0.5 and results[1]["patch_ms_ratio"] == 1.5
