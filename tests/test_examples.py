"""examples/: every command the shell scripts would run is checked by the real parser of its tool (DRY_RUN),
the conversions they start are run for real on stand-ins, and the Python examples and predict_only.sh run
end to end on a tiny model trained with the user trainer of examples/custom_trainer.py."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from nnunet_medsam_fusion.cli import build_parser
from nnunet_medsam_fusion.settings import EXT_TRAINER_ENV, ext_trainer_value, temporary_environ

from .conftest import DATASET, DATASET_ID, nnunet_env, run_cli
from .test_convert import cas2023_release, topcow_release

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PAPER_TRAINERS = ["nnUNetTrainerUNet", "nnUNetTrainerSwinUNet", "nnUNetTrainerTransUNet", "nnUNetTrainer",
                  "nnUNetTrainerFocalDice", "nnUNetTrainerMedSAMFusion", "nnUNetTrainerMedSAM2Fusion"]
SMOKE_TRAINER = "nnUNetTrainerMedSAM2FusionTiny_NoMirroring_smoke"
SHELL_TOOLS = {"mkdir", "ln"}


class Parsed(Exception):
    """Raised by the patched parse_args once a command line has been parsed: the tool does no work."""


def dry_run(script: str, root: Path, **variables: str) -> list[list[str]]:
    """The commands ``script`` prints with DRY_RUN=1 (each line '+ cmd args', quoted by printf %q)."""
    env = nnunet_env(root, DRY_RUN="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                     **variables)
    env.pop(EXT_TRAINER_ENV)  # the scripts set it themselves
    done = subprocess.run(["bash", str(EXAMPLES / script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]


def check_command(argv: list[str], monkeypatch, ext_trainer: str) -> None:
    """Parses ``argv`` with the tool's own argparse parser (bad lines fail the test) and finds its ``-tr``
    trainer the way nnU-Net does."""
    tool, args = argv[0], argv[1:]
    if tool in SHELL_TOOLS:
        return
    if tool == "nnmsf":
        build_parser().parse_args(args)  # SystemExit(2) on a bad command line
        return
    (entry,) = entry_points(group="console_scripts", name=tool)
    real_parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        real_parse(self, args, namespace)
        raise Parsed

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        patch.setattr(sys, "argv", argv)
        with pytest.raises(Parsed):
            entry.load()()
    if "-tr" in args:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        with temporary_environ(**{EXT_TRAINER_ENV: ext_trainer}):
            recursive_find_trainer_class_by_name(args[args.index("-tr") + 1])  # RuntimeError if not found


def check_all(commands: list[list[str]], monkeypatch, ext_trainer: str) -> None:
    for argv in commands:
        check_command(argv, monkeypatch, ext_trainer)


def run_for_real(argv: list[str], root: Path) -> None:
    """Runs one ``nnmsf`` command a script printed (its conversions are quick on stand-ins)."""
    run_cli(argv, nnunet_env(root))


def test_reproduce_paper_commands(tmp_path, monkeypatch):
    cas2023_release(tmp_path / "CAS2023")
    commands = dry_run("reproduce_paper.sh", tmp_path, CAS2023=str(tmp_path / "CAS2023"), DATASET_ID="120",
                       TEST_IMAGES="/data/test/images", TEST_LABELS="/data/test/labels")
    tools = [argv[0] for argv in commands]
    assert tools[:2] == ["nnmsf", "nnUNetv2_plan_and_preprocess"]
    trained = [(argv[3], argv[argv.index("-tr") + 1]) for argv in commands if argv[0] == "nnUNetv2_train"]
    assert sorted(trained) == sorted((str(f), t) for t in PAPER_TRAINERS for f in range(5))
    assert tools.count("nnUNetv2_predict") == 7 and tools.count("nnmsf") == 3  # convert, compare x2
    compare = commands[tools.index("nnmsf", 1)]
    assert compare[1:3] == ["compare", "120"]
    check_all(commands, monkeypatch, ext_trainer_value(""))
    run_for_real(commands[0], tmp_path)
    assert (tmp_path / "raw" / "Dataset120_CAS2023" / "dataset.json").is_file()


def test_topcow_multiclass_commands(tmp_path, monkeypatch):
    topcow_release(tmp_path / "TopCoW")
    commands = dry_run("topcow_multiclass.sh", tmp_path, TOPCOW=str(tmp_path / "TopCoW"), FOLDS="0 1",
                       SCANS="/data/new_scans")
    trainers = {argv[argv.index("-tr") + 1] for argv in commands if "-tr" in argv}
    assert trainers == {"nnUNetTrainerMedSAM2Fusion_NoMirroring"}
    restores = [argv for argv in commands if argv[:3] == ["nnmsf", "convert", "topcow-restore"]]
    assert len(restores) == 3
    assert restores[0][3] == str(tmp_path / "results" / "Dataset130_TopCoW_MR_multiclass" /
                                 "nnUNetTrainerMedSAM2Fusion_NoMirroring__nnUNetPlans__2d" / "fold_0" / "validation")
    check_all(commands, monkeypatch, ext_trainer_value(str(EXAMPLES)))
    run_for_real(commands[0], tmp_path)
    assert (tmp_path / "raw" / "Dataset130_TopCoW_MR_multiclass" / "topcow_label_map.json").is_file()


def test_predict_only_commands_for_a_zipped_model(tmp_path, monkeypatch):
    scans = tmp_path / "ixi"
    scans.mkdir()
    for name in ("IXI002-Guys-0828-MRA.nii.gz", "IXI012-HH-1211-MRA.nii.gz"):
        (scans / name).write_bytes(b"")
    commands = dry_run("predict_only.sh", tmp_path, MODEL="model.zip", SCANS=str(scans), DATASET_ID="120",
                       TRAINER="nnUNetTrainerMedSAM2Fusion", OUT=str(tmp_path / "out"), REF="/data/labels")
    links = [argv[-1] for argv in commands if argv[0] == "ln"]
    assert sorted(Path(link).name for link in links) == ["IXI002-Guys-0828-MRA_0000.nii.gz",
                                                         "IXI012-HH-1211-MRA_0000.nii.gz"]
    assert [argv[0] for argv in commands if argv[0].startswith("nnUNetv2")] == \
        ["nnUNetv2_install_pretrained_model_from_zip", "nnUNetv2_predict"]
    check_all(commands, monkeypatch, ext_trainer_value(""))


def test_custom_trainers_are_found_by_nnunet():
    """custom_trainer.py's own check: nnU-Net's lookup finds each class through nnUNet_extTrainer."""
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_trainer.py")], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items() if k != EXT_TRAINER_ENV})
    assert done.returncode == 0, done.stderr
    assert f"export {EXT_TRAINER_ENV}={EXAMPLES}{os.pathsep}" in done.stdout
    assert "nnU-Net finds nnUNetTrainerMedSAM2Fusion_stride16_300epochs: fuses levels (2,)" in done.stdout
    assert "nnU-Net finds nnUNetTrainerMedSAM2Fusion_NoMirroring: fuses levels (1, 2)" in done.stdout


@pytest.fixture(scope="module")
def smoke_model(planned_dataset, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A tiny fusion model trained by custom_trainer.py through nnUNetv2_train (1 epoch of 3 iterations)."""
    results = tmp_path_factory.mktemp("example_results")
    env = nnunet_env(planned_dataset, nnUNet_results=str(results), nnUNet_n_proc_DA="0")
    env.pop(EXT_TRAINER_ENV)
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_trainer.py"), "--train", str(DATASET_ID),
                           "--trainer", SMOKE_TRAINER, "--fold", "0", "--device", "cpu"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = results / DATASET / f"{SMOKE_TRAINER}__nnUNetPlans__2d"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    env[EXT_TRAINER_ENV] = str(EXAMPLES)  # where the user's trainer lives, for prediction too
    return model, env


@pytest.mark.slow
def test_custom_trainer_trains_without_mirroring(smoke_model):
    model, _ = smoke_model
    checkpoint = torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == SMOKE_TRAINER
    assert checkpoint["inference_allowed_mirroring_axes"] is None
    assert "Fusing foundation levels (1, 2)" in next((model / "fold_0").glob("training_log_*.txt")).read_text()


@pytest.mark.slow
def test_python_api_example(smoke_model, planned_dataset, tmp_path):
    model, env = smoke_model
    image = planned_dataset / "raw" / DATASET / "imagesTs" / "TinyTOF_006_0000.nii.gz"
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py"), str(model), "--image", str(image),
                           "--device", "cpu", "--out", str(tmp_path / "features.png")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "foundation level 1 (stride 8" in done.stdout and "-> encoder stage" in done.stdout
    assert (tmp_path / "features.png").stat().st_size > 10_000


@pytest.mark.slow
def test_predict_only_example_on_a_model_folder(smoke_model, planned_dataset, tmp_path):
    model, env = smoke_model
    raw = planned_dataset / "raw" / DATASET
    env = {**env, "MODEL": str(model), "SCANS": str(raw / "imagesTs"), "OUT": str(tmp_path / "out"),
           "FOLDS": "0", "DEVICE": "cpu", "REF": str(raw / "labelsTs"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(EXAMPLES / "predict_only.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    masks = sorted(p.name for p in (tmp_path / "out" / "masks").glob("*.nii.gz"))
    assert masks == sorted(p.name for p in (raw / "labelsTs").glob("*.nii.gz"))
    assert (tmp_path / "out" / "masks" / "nnmsf_metrics.json").is_file()
