"""nnU-Net finds our trainers through nnUNet_extTrainer, as ``nnmsf env`` sets it, with their real classes."""

import os
import pickle
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

import nnunet_medsam_fusion.trainers as trainers
from nnunet_medsam_fusion.cli import main
from nnunet_medsam_fusion.settings import ext_trainer_path

NNMSF = [sys.executable, "-m", "nnunet_medsam_fusion.cli"]


def nnmsf_env(**variables: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"} | variables
    return subprocess.run([*NNMSF, "env"], capture_output=True, text=True, check=True, env=environment).stdout.strip()


def test_env_prints_the_export_line_and_ext_path_the_folder():
    path = subprocess.run([*NNMSF, "ext-path"], capture_output=True, text=True, check=True).stdout.strip()
    assert nnmsf_env() == f"export nnUNet_extTrainer={path}"
    assert Path(path) == Path(ext_trainer_path()) and Path(path).is_dir()


def test_env_appends_our_folder_to_the_users_once(tmp_path):
    """The user's own trainer folders stay; ours is added once, however often the line is evaluated."""
    theirs = os.pathsep.join([str(tmp_path / "my trainers"), str(tmp_path / "lab")])
    line = nnmsf_env(nnUNet_extTrainer=theirs)
    assert line == f"export nnUNet_extTrainer={shlex.quote(theirs + os.pathsep + ext_trainer_path())}"
    exported = shlex.split(line.removeprefix("export nnUNet_extTrainer="))[0]
    assert nnmsf_env(nnUNet_extTrainer=exported) == line  # evaluated twice: still once


def test_ext_folder_holds_only_the_re_export_module():
    modules = sorted(p.name for p in Path(ext_trainer_path()).glob("*.py"))
    assert modules == ["__init__.py", "nnunet_medsam_fusion_trainers.py"]


@pytest.mark.parametrize("name", trainers.__all__)
def test_nnunet_finds_every_trainer_as_the_packaged_class(name, monkeypatch):
    monkeypatch.setenv("nnUNet_extTrainer", ext_trainer_path())
    found = recursive_find_trainer_class_by_name(name)
    packaged = getattr(trainers, name)
    assert found is packaged and found.__name__ == name
    assert found.__module__.startswith("nnunet_medsam_fusion.trainers")
    assert issubclass(found, nnUNetTrainer)
    assert pickle.loads(pickle.dumps(found)) is packaged


def test_without_the_variable_nnunet_says_where_to_look(monkeypatch):
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    with pytest.raises(RuntimeError, match="nnUNet_extTrainer"):
        recursive_find_trainer_class_by_name("nnUNetTrainerFocalDice")


def test_cli_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
