"""``nnmsf demo`` with one trainer: a second run reuses the first's work; the user's folders stay untouched."""

import os
import subprocess
import sys

import pytest

from nnunet_medsam_fusion.demo import _child_env, default_trainers


def run_demo(workdir, env):
    command = [sys.executable, "-m", "nnunet_medsam_fusion.cli", "demo", "--workdir", str(workdir), "--device", "cpu",
               "--trainers", "nnUNetTrainerFocalDice_demo"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_full_size_encoders_only_with_a_checkpoint_on_a_gpu(device, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("nnUNet_MedSAM_checkpoint", "/weights/medsam_vit_b.pth")
    monkeypatch.delenv("nnUNet_MedSAM2_checkpoint", raising=False)
    trainers = default_trainers(device)
    medsam = "nnUNetTrainerMedSAMFusion_demo" if device == "cuda" else "nnUNetTrainerMedSAMFusionTiny_demo"
    assert trainers[2:] == (medsam, "nnUNetTrainerMedSAM2FusionTiny_demo")
    env = _child_env(tmp_path, device, list(trainers))
    assert ("nnUNet_MedSAM_checkpoint" in env) == (device == "cuda")  # a tiny encoder never gets a full file
    assert env["nnUNet_raw"] == str(tmp_path / "nnUNet_raw")
    assert ("GPU work" in capsys.readouterr().out) == (device == "cpu")


@pytest.mark.slow
def test_demo_runs_then_reuses_its_work_and_leaves_the_users_folders_alone(tmp_path):
    users = {name: tmp_path / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in users.values():
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")} | {k: str(v) for k, v in users.items()}
    workdir = tmp_path / "demo"

    first = run_demo(workdir, env)
    assert "[train nnUNetTrainerFocalDice_demo]" in first and "Dice (%)" in first
    assert (workdir / "comparison" / "compare.md").is_file()
    assert any((workdir / "comparison" / "figures").glob("mip_*.png"))

    second = run_demo(workdir, env)
    assert "already trained" in second and "[plan+preprocess]" not in second and "[synth]" not in second
    assert "Dice (%)" in second
    assert all(not any(folder.iterdir()) for folder in users.values())
