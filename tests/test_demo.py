"""``nnmsf demo`` with one trainer: a second run reuses the first's work; the user's folders stay untouched;
``--3d`` runs nnU-Net's commands on 3d_fullres of its own set.

The run uses a test-only ``_smoke`` trainer (tests/smoke_trainers.py): what is checked is the demo's own work
(synthesis, planning, reuse, tables, figures); the ``_demo`` schedules train through nnU-Net in test_end_to_end."""

import os
import re
import subprocess
import sys

import pytest
import SimpleITK as sitk

from nnunet_medsam_fusion import demo
from nnunet_medsam_fusion.demo import PLAN_PROGRESS, PREDICT_PROGRESS, _child_env, _run, default_trainers
from nnunet_medsam_fusion.testing.nnunet_env import REPO, TEST_TRAINERS

TRAINER = "nnUNetTrainerFocalDice_smoke"


def run_demo(workdir, env):
    command = [sys.executable, "-m", "nnunet_medsam_fusion.cli", "demo", "--workdir", str(workdir), "--device", "cpu",
               "--trainers", TRAINER]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_full_size_encoders_only_with_a_checkpoint_on_a_gpu(device, monkeypatch, tmp_path, capsys):
    weights = tmp_path / "medsam_vit_b.pth"
    weights.write_bytes(b"PK\x03\x04\x00\x00")  # a file that passes the path check (it is never read here)
    monkeypatch.setenv("nnUNet_MedSAM_checkpoint", str(weights))
    monkeypatch.delenv("nnUNet_MedSAM2_checkpoint", raising=False)
    trainers = default_trainers(device)
    medsam = "nnUNetTrainerMedSAMFusion_demo" if device == "cuda" else "nnUNetTrainerMedSAMFusionTiny_demo"
    assert trainers[2:] == (medsam, "nnUNetTrainerMedSAM2FusionTiny_demo")
    env = _child_env(tmp_path, device, list(trainers))
    assert ("nnUNet_MedSAM_checkpoint" in env) == (device == "cuda")  # a tiny encoder never gets a full file
    assert env["nnUNet_raw"] == str(tmp_path / "nnUNet_raw")
    assert ("GPU work" in capsys.readouterr().out) == (device == "cpu")


# What nnU-Net 2.8.1 prints in each step (its own print calls), with the noise around it.
NNUNET_OUTPUT = {
    "plan": ["Fingerprint extraction...", "Dataset501_SyntheticTOF", "Experiment planning...", "Preprocessing...",
             "Configuration: 2d...", "100%|##########| 8/8 [00:03<00:00,  2.41it/s]"],
    "predict": ["There are 3 cases in the source folder", "There are 3 cases that I would like to predict", "",
                "Predicting SyntheticTOF_008:", "perform_everything_on_device: False",
                "sending off prediction to background worker for resampling and export",
                "done with SyntheticTOF_008"],
}
ECHOED = {
    "plan": ["Fingerprint extraction...", "Experiment planning...", "Preprocessing...", "Configuration: 2d..."],
    "predict": ["There are 3 cases that I would like to predict", "Predicting SyntheticTOF_008:",
                "done with SyntheticTOF_008"],
}


@pytest.mark.parametrize("step, pattern", [("plan", PLAN_PROGRESS), ("predict", PREDICT_PROGRESS)])
def test_long_steps_echo_nnunets_progress_lines(step, pattern, tmp_path, capsys):
    """Planning (70 s) and prediction (up to 206 s) showed only 'done in N s' before."""
    script = "".join(f"print({line!r})\n" for line in NNUNET_OUTPUT[step])
    _run(step, [sys.executable, "-c", script], dict(os.environ), tmp_path / "log.txt", pattern)
    out = capsys.readouterr().out
    echoed = [line.strip() for line in out.splitlines() if line.startswith("  ") and "log:" not in line]
    assert echoed[:-1] == ECHOED[step] and echoed[-1].startswith("done in")
    assert (tmp_path / "log.txt").read_text().splitlines() == NNUNET_OUTPUT[step]  # everything still logged


TRAINING_OUTPUT = ["2026-12-07 21:00:00.123456: Epoch 0", "2026-12-07 21:00:00.123457: Current learning rate: 0.01",
                   "2026-12-07 21:00:09.123458: Pseudo dice [np.float32(0.1)]", "2026-12-07 21:00:09.5: Epoch 1"]


def test_training_echoes_which_trainer_epoch_k_of_n_and_the_time_so_far(tmp_path, capsys):
    """nnU-Net's bare 'Epoch 0' said neither which trainer nor how many epochs were left."""
    trainer = "nnUNetTrainerFocalDice_demo"
    assert demo.schedule_epochs(trainer) == 6 and demo.schedule_epochs("nnUNetTrainerFocalDice_smoke") is None
    script = "".join(f"print({line!r})\n" for line in TRAINING_OUTPUT)
    _run(f"train {trainer}", [sys.executable, "-c", script], dict(os.environ), tmp_path / "log.txt", demo.PROGRESS,
         demo.schedule_epochs(trainer))
    echoed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")][1:]
    assert re.fullmatch(rf"\[train {trainer}\] epoch 1 of 6, \d+ s so far", echoed[0])
    assert echoed[1] == "Pseudo dice [np.float32(0.1)]"
    assert re.fullmatch(rf"\[train {trainer}\] epoch 2 of 6, \d+ s so far", echoed[2])
    assert demo.progress_line("train x", "2026-12-07 21:00:00.5: Epoch 4", 12.4) == "  [train x] epoch 5, 12 s so far"


def test_ctrl_c_prints_one_line_exits_130_and_ends_the_running_command(tmp_path, monkeypatch, capsys):
    from nnunet_medsam_fusion.cli import main

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 130
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "nnmsf demo: interrupted" in captured.err
    assert "Traceback" not in captured.out + captured.err

    started = []
    popen = subprocess.Popen

    def recorded(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    class Interrupt:  # Ctrl-C while the demo echoes a line of the command
        def search(self, line):
            raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", recorded)
    command = [sys.executable, "-c", "import time; print('Epoch 0', flush=True); time.sleep(120)"]
    with pytest.raises(KeyboardInterrupt):
        _run("train x", command, dict(os.environ), tmp_path / "log.txt", Interrupt())
    assert started[0].poll() is not None  # the child was ended, not left running


@pytest.mark.slow
def test_demo_runs_then_reuses_its_work_and_leaves_the_users_folders_alone(tmp_path):
    users = {name: tmp_path / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for folder in users.values():
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")} | {k: str(v) for k, v in users.items()}
    env |= {"nnUNet_extTrainer": str(TEST_TRAINERS), "PYTHONPATH": str(REPO)}  # the test-only trainer
    workdir = tmp_path / "demo"

    first = run_demo(workdir, env)
    assert f"[train {TRAINER}]" in first and "Dice (%)" in first
    assert "  Fingerprint extraction..." in first and "  Predicting SyntheticTOF_008:" in first  # progress
    assert (workdir / "comparison" / "compare.md").is_file()
    assert any((workdir / "comparison" / "figures").glob("mip_*.png"))

    second = run_demo(workdir, env)
    assert "already trained" in second and "[plan+preprocess]" not in second and "[synth]" not in second
    assert "Dice (%)" in second
    assert all(not any(folder.iterdir()) for folder in users.values())


def test_3d_demo_runs_nnunets_commands_on_3d_fullres_of_its_own_set(tmp_path, monkeypatch):
    """The demo's wiring for ``--3d``: the smaller 3D set is written beside the 2D one, and planning, training,
    prediction and the comparison all name that set and ``3d_fullres``. The commands are recorded, not run: the
    fusion trainers run them on 3d_fullres in test_end_to_end; README gives the whole 3D demo's time."""
    commands, compared = [], {}
    monkeypatch.setattr(demo, "_run", lambda step, command, env, log, progress=None, epochs=None:
                        commands.append(command[1:]))

    monkeypatch.setattr(demo, "compare_trainers", lambda dataset, trainers, **kwargs: compared.update(
        dataset=dataset, trainers=trainers, **kwargs) or object())
    monkeypatch.setattr(demo, "comparison_markdown", lambda comparison: "| table |")
    monkeypatch.setattr(demo, "write_comparison_figures", lambda comparison, out, image_dir: None)
    trainers = ["nnUNetTrainer_demo", "nnUNetTrainerMedSAM2FusionTiny_demo"]
    assert demo.run_demo(tmp_path, device="cpu", trainers=trainers, three_d=True) == 0

    demo_set = demo.DEMO_SETS["3d_fullres"]
    raw = tmp_path / "nnUNet_raw" / demo_set.dataset
    assert demo_set.dataset != demo.DEMO_SETS["2d"].dataset
    image = sitk.ReadImage(str(next((raw / "imagesTr").glob("*.nii.gz"))))
    assert image.GetSize() == demo_set.shape
    plan, *runs = commands
    assert plan == ["-d", str(demo_set.dataset_id), "-c", "3d_fullres", "-np", "2"]
    train = [c for c in runs if "-tr" in c and "-i" not in c]
    predict = [c for c in runs if "-i" in c]
    assert [c[:3] for c in train] == [[str(demo_set.dataset_id), "3d_fullres", "0"]] * 2
    assert all(c[c.index("-d") + 1] == str(demo_set.dataset_id) and c[c.index("-c") + 1] == "3d_fullres"
               and c[c.index("-i") + 1] == str(raw / "imagesTs") for c in predict)
    assert [c[c.index("-tr") + 1] for c in train] == [c[c.index("-tr") + 1] for c in predict] == trainers
    assert compared["dataset"] == demo_set.dataset and compared["configuration"] == "3d_fullres"
    assert compared["out_dir"] == tmp_path / "comparison_3d"
    assert compared["pred_dirs"] == {t: tmp_path / "predictions_3d" / t for t in trainers}
