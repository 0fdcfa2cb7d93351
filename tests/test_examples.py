"""examples/: every command the shell scripts would run is checked by the real parser of its tool (DRY_RUN),
the conversions they start are run for real on stand-ins, and the Python examples and predict_only.sh run
end to end on a tiny model trained with the user trainer of examples/custom_trainer.py."""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import time
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nnunet_medsam_fusion.cli import build_parser
from nnunet_medsam_fusion.settings import EXT_TRAINER_ENV, ext_trainer_value, temporary_environ
from nnunet_medsam_fusion.testing.nnunet_env import DATASET, DATASET_ID, nnunet_env, run_cli
from nnunet_medsam_fusion.trainer_table import TABLE1_TRAINERS

from .test_convert import cas2023_release, topcow_release

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMOKE_TRAINER = "nnUNetTrainerMedSAM2FusionTiny_NoMirroring_smoke"  # examples/custom_trainer.py's own
SHELL_TOOLS = {"mkdir", "ln"}
CHECKPOINT_VARIABLES = ("nnUNet_MedSAM_checkpoint", "nnUNet_MedSAM2_checkpoint", "nnUNet_SwinUNet_checkpoint",
                        "nnUNet_TransUNet_checkpoint")


def smoke_trainers() -> list[str]:
    """Tiny trainers with the shortest schedule (``_smoke``: 1 epoch of 2 iterations), the one place these tests
    name them. They are test-only trainers; conftest's ``nnunet_env`` puts their folder in nnUNet_extTrainer.
    One is enough to run every step (each more costs about a minute of CI time)."""
    return ["nnUNetTrainerMedSAMFusionTiny_SkelRecall_smoke"]


def script_env(root: Path, **variables: str) -> dict[str, str]:
    """A user's shell for running an example for real: nnU-Net's folders in ``root`` (and the test trainers'
    folder in nnUNet_extTrainer), no checkpoint variables."""
    env = nnunet_env(root, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                     nnUNet_n_proc_DA="1", **variables)  # 0 crashes 2.8.1's planner
    for variable in CHECKPOINT_VARIABLES:
        env.pop(variable, None)
    return env


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
    assert sorted(trained) == sorted((str(f), t) for t in TABLE1_TRAINERS for f in range(5))  # the one declaration
    assert tools.count("nnUNetv2_predict") == 7 and tools.count("nnmsf") == 3  # convert, compare x2
    compare = commands[tools.index("nnmsf", 1)]
    assert compare[1:3] == ["compare", "120"]
    check_all(commands, monkeypatch, ext_trainer_value(""))
    run_for_real(commands[0], tmp_path)
    assert (tmp_path / "raw" / "Dataset120_CAS2023" / "dataset.json").is_file()


def test_reproduce_paper_trainers_can_be_chosen(tmp_path):
    commands = dry_run("reproduce_paper.sh", tmp_path, CAS2023=str(tmp_path), FOLDS="all",
                       TRAINERS="nnUNetTrainerFocalDice_demo  nnUNetTrainerMedSAMFusionTiny_demo")
    trained = [argv[argv.index("-tr") + 1] for argv in commands if argv[0] == "nnUNetv2_train"]
    assert trained == ["nnUNetTrainerFocalDice_demo", "nnUNetTrainerMedSAMFusionTiny_demo"]
    compare = next(argv for argv in commands if argv[:2] == ["nnmsf", "compare"])
    assert compare[compare.index("--trainers") + 1:compare.index("--folds")] == trained


def test_train_3d_commands(tmp_path, monkeypatch):
    """3D: plans 3d_fullres, trains nnU-Net and both fusion trainers with Skeleton Recall on it, compares 3d_fullres;
    every command parses with its own tool and every trainer is found by nnU-Net."""
    commands = dry_run("train_3d.sh", tmp_path, CAS2023=str(tmp_path / "CAS2023"), DATASET_ID="121", FOLDS="0 1")
    tools = [argv[0] for argv in commands]
    assert tools[:2] == ["nnmsf", "nnUNetv2_plan_and_preprocess"]
    assert commands[1][commands[1].index("-c") + 1] == "3d_fullres"
    trained = [(argv[2], argv[3], argv[argv.index("-tr") + 1]) for argv in commands if argv[0] == "nnUNetv2_train"]
    expected = ("nnUNetTrainerSkelRecall", "nnUNetTrainerMedSAMFusion_SkelRecall",
                "nnUNetTrainerMedSAM2Fusion_SkelRecall")
    assert trained == [("3d_fullres", fold, t) for t in expected for fold in ("0", "1")]
    compare = commands[-1]
    assert compare[:2] == ["nnmsf", "compare"] and compare[compare.index("-c") + 1] == "3d_fullres"
    check_all(commands, monkeypatch, ext_trainer_value(""))


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


def zipped_model(path: Path, folds: list[str]) -> Path:
    """A zip laid out as nnUNetv2_export_model_to_zip writes one (empty files: only the names are read)."""
    model = "Dataset120_CAS2023/nnUNetTrainerMedSAM2Fusion__nnUNetPlans__2d"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ["dataset.json", "plans.json", *(f"fold_{fold}/checkpoint_final.pth" for fold in folds)]:
            archive.writestr(f"{model}/{name}", "")
    return path


def scans_folder(tmp_path: Path) -> Path:
    scans = tmp_path / "ixi"
    scans.mkdir()
    for name in ("IXI002-Guys-0828-MRA.nii.gz", "IXI012-HH-1211-MRA.nii.gz"):
        (scans / name).write_bytes(b"")
    return scans


def test_predict_only_commands_for_a_zipped_model(tmp_path, monkeypatch):
    model = zipped_model(tmp_path / "model.zip", ["0", "2"])
    commands = dry_run("predict_only.sh", tmp_path, MODEL=str(model), SCANS=str(scans_folder(tmp_path)),
                       DATASET_ID="120", TRAINER="nnUNetTrainerMedSAM2Fusion", OUT=str(tmp_path / "out"),
                       REF="/data/labels")
    links = [argv[-1] for argv in commands if argv[0] == "ln"]
    assert sorted(Path(link).name for link in links) == ["IXI002-Guys-0828-MRA_0000.nii.gz",
                                                         "IXI012-HH-1211-MRA_0000.nii.gz"]
    assert [argv[0] for argv in commands if argv[0].startswith("nnUNetv2")] == \
        ["nnUNetv2_install_pretrained_model_from_zip", "nnUNetv2_predict"]
    predict = next(argv for argv in commands if argv[0] == "nnUNetv2_predict")
    assert predict[predict.index("-f") + 1:predict.index("-device")] == ["0", "2"]  # the folds the zip holds
    check_all(commands, monkeypatch, ext_trainer_value(""))


@pytest.mark.parametrize("model, folds, message", [
    ("missing_folder", None, "MODEL={model} is not a trained model folder (no plans.json)"),
    ("missing.zip", None, "MODEL={model} does not exist: give the .zip nnUNetv2_export_model_to_zip wrote"),
    ("one_fold", "0 1 2 3 4", "FOLDS=0 1 2 3 4: MODEL={model} has no fold 1 (it holds folds: 0)"),
    ("one_fold.zip", "3", "FOLDS=3: MODEL={model} has no fold 3 (it holds folds: 0)"),
    ("no_fold", None, "MODEL={model} holds no trained fold"),
])
def test_predict_only_checks_the_model_and_its_folds_first(tmp_path, model, folds, message):
    """A wrong MODEL path, or folds the model does not hold: one line and exit 2 before any work (before: raw
    tracebacks from nnU-Net)."""
    path = tmp_path / model
    if model == "one_fold":
        (path / "fold_0").mkdir(parents=True)
        (path / "fold_0" / "checkpoint_final.pth").touch()
    if model in ("one_fold", "no_fold"):
        path.mkdir(exist_ok=True)
        (path / "plans.json").write_text("{}")
    if model == "one_fold.zip":
        zipped_model(path, ["0"])
    env = script_env(tmp_path, MODEL=str(path), SCANS=str(scans_folder(tmp_path)), OUT=str(tmp_path / "out"),
                     DATASET_ID="120", TRAINER="nnUNetTrainerMedSAM2Fusion", **({"FOLDS": folds} if folds else {}))
    done = subprocess.run(["bash", str(EXAMPLES / "predict_only.sh")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith(message.format(model=path)), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out").exists()


def test_custom_trainers_are_found_by_nnunet(tmp_path):
    """custom_trainer.py's own check: nnU-Net's lookup finds each class through nnUNet_extTrainer, and the
    export line it prints keeps the folders the user already had (as nnmsf env does)."""
    yours = tmp_path / "my_trainers"
    yours.mkdir()
    env = {**os.environ, EXT_TRAINER_ENV: str(yours)}
    done = subprocess.run([sys.executable, str(EXAMPLES / "custom_trainer.py")], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    # The script imports the installed package, which need not be this source tree (CI installs a copy).
    ours = subprocess.run([sys.executable, "-c", "from nnunet_medsam_fusion.settings import ext_trainer_path; "
                           "print(ext_trainer_path())"], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path, check=True).stdout.strip()
    assert f"export {EXT_TRAINER_ENV}={os.pathsep.join([str(EXAMPLES), str(yours), ours])}\n" in done.stdout
    assert "nnU-Net finds nnUNetTrainerMedSAM2Fusion_stride16_300epochs: fuses levels (2,)" in done.stdout
    assert "nnU-Net finds nnUNetTrainerMedSAM2FusionTiny_NoMirroring_smoke: fuses levels (1, 2)" in done.stdout


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
    top = np.asarray(Image.open(tmp_path / "features.png").convert("L"))[:3]
    assert top.min() == 255, "the panel titles are cut at the top of the figure"


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


# ----------------------------------------------------- the shell examples for real: Tiny trainers on a CPU
def run_example(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs a shell example for real; prints its wall and CPU time (what it adds to CI)."""
    start, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(["bash", str(EXAMPLES / script)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{script}: {time.monotonic() - start:.0f} s wall, "
          f"{used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime:.0f} s CPU")
    return done


@pytest.mark.slow
def test_reproduce_paper_runs_end_to_end_with_tiny_trainers(tmp_path):
    """convert -> plan -> train -> compare on a 2-case CAS 2023 stand-in, no checkpoint variable set: each step
    asks only for what it needs."""
    cas2023_release(tmp_path / "CAS2023")
    for case in ("003", "004"):  # two cases are enough (fold 'all' trains and validates on both)
        for sub in ("data", "mask"):
            (tmp_path / "CAS2023" / sub / f"{case}.nii.gz").unlink()
    trainers = smoke_trainers()
    env = script_env(tmp_path, CAS2023=str(tmp_path / "CAS2023"), DATASET_ID="121", FOLDS="all", NPROC="1",
                     DEVICE="cpu", OUT=str(tmp_path / "tables"), TRAINERS=" ".join(trainers))
    run_example("reproduce_paper.sh", env)
    table = (tmp_path / "tables" / "cross_validation" / "compare.md").read_text()
    assert all(trainer in table for trainer in trainers)


@pytest.mark.slow
def test_topcow_multiclass_runs_end_to_end_with_a_tiny_trainer(tmp_path):
    topcow_release(tmp_path / "TopCoW")
    for path in (tmp_path / "TopCoW").glob("*/topcow_mr_003*"):  # two MR cases are enough
        path.unlink()
    env = script_env(tmp_path, TOPCOW=str(tmp_path / "TopCoW"), DATASET_ID="131", FOLDS="all", NPROC="1",
                     DEVICE="cpu", OUT=str(tmp_path / "out"), TRAINER=SMOKE_TRAINER)
    run_example("topcow_multiclass.sh", env)
    restored = sorted(p.name for p in (tmp_path / "out" / "validation_fold_all").glob("*.nii.gz"))
    assert restored == ["topcow_mr_001.nii.gz", "topcow_mr_002.nii.gz"]
