"""The fixed intensity window from the plans, the encoder precision and micro-batching of the frozen encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder, precision, preprocessing
from nnunet_medsam_fusion.foundation.preprocessing import ct_window, intensity_window, with_plans_window
from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV
from nnunet_medsam_fusion.testing.nnunet_env import DATASET, load_plans

PROPERTIES = {"mean": 40.0, "std": 120.0, "percentile_00_5": -900.0, "percentile_99_5": 1500.0,
              "median": 35.0, "min": -1024.0, "max": 3000.0}


def test_ct_window_is_the_exact_range_of_nnunets_ct_normalisation():
    image = np.random.default_rng(0).uniform(-2000, 4000, size=(1, 8, 32, 32)).astype(np.float32)
    normalised = CTNormalization(intensityproperties=PROPERTIES).run(image.copy())
    low, high = ct_window(PROPERTIES)
    assert low == pytest.approx(normalised.min(), abs=1e-5) and high == pytest.approx(normalised.max(), abs=1e-5)


ARCHITECTURE = {"network_class_name": "unused", "arch_kwargs": {}, "_kw_requires_import": []}  # nnU-Net 2.8's format


def test_ct_plans_need_no_data():
    plans = {"configurations": {"2d": {"normalization_schemes": ["CTNormalization"], "architecture": ARCHITECTURE}},
             "foreground_intensity_properties_per_channel": {"0": PROPERTIES}}
    assert intensity_window(plans, "2d", "/nonexistent") == ct_window(PROPERTIES)


def cascade_plans(scheme: str) -> dict:
    """Plans with nnU-Net's cascade as its planner writes it: ``3d_lowres`` with its own data, and
    ``3d_cascade_fullres``, which holds only ``inherits_from`` (3d_fullres) and ``previous_stage``."""
    full = {"normalization_schemes": [scheme], "data_identifier": "nnUNetPlans_3d_fullres",
            "architecture": ARCHITECTURE}
    return {"dataset_name": "Dataset1_X", "foreground_intensity_properties_per_channel": {"0": PROPERTIES},
            "configurations": {
                "3d_fullres": full,
                "3d_lowres": dict(full, data_identifier="nnUNetPlans_3d_lowres", next_stage="3d_cascade_fullres"),
                "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}}


@pytest.mark.parametrize("configuration, data", [("3d_lowres", "nnUNetPlans_3d_lowres"),
                                                 ("3d_cascade_fullres", "nnUNetPlans_3d_fullres")])
def test_cascade_configurations_are_resolved_as_nnunet_resolves_them(monkeypatch, configuration, data):
    assert intensity_window(cascade_plans("CTNormalization"), configuration, "/nonexistent") == ct_window(PROPERTIES)
    read = []
    monkeypatch.setattr(preprocessing, "sample_normalised_intensities",
                        lambda folder: read.append(folder) or np.linspace(-3.0, 3.0, 1001))
    low, high = intensity_window(cascade_plans("ZScoreNormalization"), configuration, "/pre/Dataset1_X")
    assert read == [Path("/pre/Dataset1_X") / data]  # the data nnU-Net trains that configuration on
    assert (low, high) == pytest.approx((-2.97, 2.97))


def test_zscore_window_is_the_percentiles_of_the_normalised_training_data(planned_dataset):
    plans = load_plans(planned_dataset)
    assert plans["configurations"]["2d"]["normalization_schemes"] == ["ZScoreNormalization"]
    folder = planned_dataset / "preprocessed" / DATASET
    low, high = intensity_window(plans, "2d", folder)
    # Reference: every voxel of channel 0 of every case (the tiny set is below every sampling bound).
    data_folder = str(folder / plans["configurations"]["2d"]["data_identifier"])
    dataset_class = infer_dataset_class(data_folder)
    identifiers = dataset_class.get_identifiers(data_folder)
    dataset = dataset_class(data_folder, identifiers)
    voxels = np.concatenate([np.asarray(dataset.load_case(i)[0][0]).ravel() for i in identifiers])
    assert (low, high) == pytest.approx(tuple(np.percentile(voxels, (0.5, 99.5))), rel=1e-6)
    assert np.mean((voxels >= low) & (voxels <= high)) == pytest.approx(0.99, abs=0.002)


def test_with_plans_window_records_everything_in_the_plans(planned_dataset):
    plans = load_plans(planned_dataset)
    spec = with_plans_window(FoundationSpec("medsam", "tiny", 64), plans, "2d",
                             planned_dataset / "preprocessed" / DATASET)
    assert spec.intensity_window is not None
    assert FoundationSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_window_needs_the_preprocessed_folder(monkeypatch):
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    plans = {"dataset_name": "Dataset1_X", "configurations": {
        "2d": {"normalization_schemes": ["ZScoreNormalization"], "data_identifier": "d", "architecture": ARCHITECTURE}}}
    with pytest.raises(ValueError, match="nnUNet_preprocessed is not set"):
        intensity_window(plans, "2d")


WINDOW = (-2.0, 2.0)
CPU = torch.device("cpu")


@pytest.mark.parametrize("setting, flags, expected", [
    ("fp32", ("avx512_bf16",), "fp32"), ("auto", ("amx_bf16",), "bf16"), ("auto", (), "fp32"),
    ("bf16", ("avx512_bf16",), "bf16")])
def test_a_new_model_folder_records_the_setting_resolved_on_its_device(monkeypatch, setting, flags, expected):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    monkeypatch.setenv(ENCODER_PRECISION_ENV, setting)
    assert precision.resolve_precision(CPU) == expected


def test_bf16_is_refused_where_it_would_be_emulated(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())
    monkeypatch.setenv(ENCODER_PRECISION_ENV, "bf16")
    with pytest.raises(ValueError, match=f"{ENCODER_PRECISION_ENV}=bf16.*no native bf16"):
        precision.resolve_precision(CPU)


def test_recorded_bf16_falls_back_to_float32_with_one_log_line(monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())
    monkeypatch.setattr(precision, "_fallbacks_reported", set())
    encoder = build_foundation_encoder(FoundationSpec("medsam", "tiny", 64, WINDOW, precision="bf16"))
    reference = build_foundation_encoder(FoundationSpec("medsam", "tiny", 64, WINDOW, precision="fp32"))
    reference.load_state_dict(encoder.state_dict())
    x = torch.randn(2, 1, 64, 64)
    assert torch.equal(encoder(x)[0], reference(x)[0])
    encoder(x)
    lines = [line for line in capsys.readouterr().out.splitlines() if "records a bf16" in line]
    assert len(lines) == 1 and "float32" in lines[0]


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = precision.cpu_bf16_flags()
    assert set(flags) <= set(precision.NATIVE_BF16_CPU_FLAGS)
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert all(f" {flag}" in text for flag in flags)


@pytest.mark.parametrize("family", ["medsam", "medical_sam2"])
def test_each_precision_means_what_it_says_inside_an_enclosing_autocast(monkeypatch, family):
    """nnU-Net runs training and prediction inside ``torch.autocast`` (fp16 on CUDA). The encoder's precision must
    not follow it: fp32 stays float32 and bf16 stays bf16. On the CPU the same region is entered with the CPU's
    autocast (fp16 and bf16), as nnU-Net enters CUDA's."""
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))  # plumbing, on any CPU
    torch.manual_seed(0)
    x = torch.randn(2, 1, 64, 64)
    for recorded in ("fp32", "bf16"):
        encoder = build_foundation_encoder(FoundationSpec(family, "tiny", 64, WINDOW, precision=recorded))
        with torch.no_grad():
            alone = encoder(x)
            for enclosing in (torch.float16, torch.bfloat16):
                with torch.autocast("cpu", dtype=enclosing):
                    inside = encoder(x)
                for a, b in zip(alone, inside, strict=True):
                    assert b.dtype == torch.float32 and torch.equal(a, b), (recorded, enclosing)


@pytest.mark.parametrize("family", ["medsam", "medical_sam2"])
def test_bf16_features_are_close_to_float32(monkeypatch, family):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))  # plumbing, on any CPU
    torch.manual_seed(0)
    full_encoder = build_foundation_encoder(FoundationSpec(family, "tiny", 64, WINDOW, precision="fp32"))
    half_encoder = build_foundation_encoder(FoundationSpec(family, "tiny", 64, WINDOW, precision="bf16"))
    half_encoder.load_state_dict(full_encoder.state_dict())
    x = torch.randn(2, 1, 64, 64)
    for a, b in zip(full_encoder(x), half_encoder(x), strict=True):
        assert b.dtype == torch.float32 and not torch.equal(a, b)
        assert (a - b).norm() / a.norm() < 0.05


@pytest.mark.parametrize("family", ["medsam", "medical_sam2"])
def test_micro_batches_give_the_whole_batch_result(family):
    torch.manual_seed(0)
    encoder = build_foundation_encoder(FoundationSpec(family, "tiny", 64, intensity_window=WINDOW))
    x = torch.randn(5, 1, 48, 64)
    whole = encoder(x)
    calls = []
    encoder.image_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    encoder.memory_budget = 2 * encoder.bytes_per_image(None)
    assert encoder.micro_batch_size(None) == 2
    chunked = encoder(x)
    assert calls == [2, 2, 1]
    for a, b in zip(whole, chunked, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


def test_vit_b_at_1024_runs_in_micro_batches_of_two_under_the_default_budget():
    encoder = build_foundation_encoder(FoundationSpec("medsam", "vit_b", 1024))
    bias_per_image = 12 * 4096**2 * 2  # heads x tokens² x bf16: 403 MB, 4.8 GB for a batch of 12
    assert encoder.bytes_per_image(torch.bfloat16) > 4 * bias_per_image
    assert encoder.micro_batch_size(torch.bfloat16) == 2 and encoder.micro_batch_size(None) == 1


def test_precision_is_described_for_logs(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert precision.describe_encoder_precision("bf16", CPU) == "bf16 (avx512_bf16)"
    assert precision.describe_encoder_precision("fp32", CPU) == "fp32"
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ())
    assert precision.describe_encoder_precision("bf16", CPU) == "fp32 (bf16 recorded, not native here)"
