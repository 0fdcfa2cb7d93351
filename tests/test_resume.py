"""A fused training killed mid-run resumes with ``nnUNetv2_train --c``; best and final checkpoints both predict."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from nnunet_medsam_fusion.testing.nnunet_env import BIN, DATASET, DATASET_ID, nnunet_env, run_cli

pytestmark = pytest.mark.slow
TRAINER = "nnUNetTrainerMedSAM2FusionTiny_demo"
EPOCHS = 6  # the _demo schedule


def first_epoch(log: str) -> int:
    return int(re.search(r"Epoch (\d+)", log).group(1))


def kill_after_first_checkpoint(command: list[str], env: dict, fold: Path, output: Path, timeout: float = 300):
    """Run ``command`` and SIGKILL it (no clean-up possible) once a checkpoint_latest.pth exists."""
    with open(output, "w") as stream:
        process = subprocess.Popen(command, env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not (fold / "checkpoint_latest.pth").exists():
            assert process.poll() is None, f"training ended before writing a checkpoint:\n{output.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint written in time"
            time.sleep(0.05)
        assert process.poll() is None, "training finished before it could be killed"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


def test_killed_fusion_training_resumes_and_both_checkpoints_predict(planned_dataset, tmp_path):
    env = nnunet_env(planned_dataset, nnUNet_results=str(tmp_path / "results"))
    train = [str(BIN / "nnUNetv2_train"), str(DATASET_ID), "2d", "0", "-tr", TRAINER, "-device", "cpu"]
    fold = tmp_path / "results" / DATASET / f"{TRAINER}__nnUNetPlans__2d" / "fold_0"

    kill_after_first_checkpoint(train, dict(env, nnUNet_n_proc_DA="0"), fold, tmp_path / "killed_run.txt")
    assert not (fold / "checkpoint_final.pth").exists()
    # nnUNetv2_train --c continues from checkpoint_latest.pth, which a short schedule writes after every epoch
    # (nnU-Net's 50-epoch interval wrote none in the demo's 6, and --c fell back to checkpoint_best.pth)
    saved_epoch = torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False)["current_epoch"]
    assert 0 < saved_epoch < EPOCHS
    logs_before = set(fold.glob("training_log_*.txt"))

    run_cli(["nnUNetv2_train", *train[1:], "--c"], dict(env, nnUNet_n_proc_DA="0"))
    assert (fold / "checkpoint_final.pth").exists() and (fold / "checkpoint_best.pth").exists()
    (resumed_log,) = set(fold.glob("training_log_*.txt")) - logs_before
    text = resumed_log.read_text()
    assert first_epoch(text) == saved_epoch  # continued where the killed run stopped, not from epoch 0
    assert len(re.findall(r"Epoch \d+", text)) == EPOCHS - saved_epoch

    images = planned_dataset / "raw" / DATASET / "imagesTs"
    cases = sorted(path.name.replace("_0000.nii.gz", ".nii.gz") for path in images.glob("*_0000.nii.gz"))
    for checkpoint in ("checkpoint_best.pth", "checkpoint_final.pth"):
        out = tmp_path / f"pred_{checkpoint}"
        run_cli(["nnUNetv2_predict", "-i", str(images), "-o", str(out), "-d", str(DATASET_ID), "-c", "2d", "-f",
                 "0", "-tr", TRAINER, "-chk", checkpoint, "-device", "cpu", "-npp", "1", "-nps", "1"], env)
        assert cases and sorted(path.name for path in out.glob("*.nii.gz")) == cases
