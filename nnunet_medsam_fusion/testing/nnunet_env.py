"""nnU-Net environment helpers for tests and benchmarks: the tiny synthetic set's names, nnU-Net's folders and
trainer lookup for child processes, its commands, its plans, and trainers and batches built as nnUNetv2_train builds
them."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json

from nnunet_medsam_fusion.settings import ext_trainer_path

DATASET_ID = 977
DATASET = f"Dataset{DATASET_ID}_TinyTOF"
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent.parent
TEST_TRAINERS = REPO / "tests" / "nnunet_ext_tests"  # the test-only _smoke trainers (tests/smoke_trainers.py)


def nnunet_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for nnU-Net child processes rooted in ``root``, CPU-friendly; finds the test-only trainers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(root / "results"),
               nnUNet_extTrainer=os.pathsep.join((ext_trainer_path(), str(TEST_TRAINERS))), nnUNet_compile="f",
               nnUNet_def_n_proc="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    env.update(extra)
    return env


def run_cli(command: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs an nnU-Net / nnmsf command; fails the test with its output when it fails."""
    done = subprocess.run([str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def load_plans(root: Path, plans: str = "nnUNetPlans", dataset: str = DATASET) -> dict:
    """A trainer-ready copy of the preprocessed plans (``continue_training`` is what nnUNetv2_train adds)."""
    loaded = copy.deepcopy(load_json(str(root / "preprocessed" / dataset / f"{plans}.json")))
    loaded["continue_training"] = False
    return loaded


def load_dataset_json(root: Path, dataset: str = DATASET) -> dict:
    return load_json(str(root / "preprocessed" / dataset / "dataset.json"))


def make_trainer(trainer_class: type, root: Path, configuration: str = "2d"):
    """A trainer built on CPU as nnUNetv2_train builds it (not initialised)."""
    return trainer_class(load_plans(root), configuration, 0, load_dataset_json(root), torch.device("cpu"))


def training_batch(trainer, seed: int = 0, batch_size: int | None = None) -> dict:
    """A batch as nnU-Net's loader gives it (data, one target per deep-supervision scale, keys): vessel-like
    voxels are brighter, so training on it can lower the loss. ``batch_size`` defaults to the plans'."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = batch_size or trainer.configuration_manager.batch_size
    patch = list(trainer.configuration_manager.patch_size)
    target = (torch.rand(batch_size, 1, *patch, generator=generator) < 0.1).float()
    data = torch.randn(batch_size, 1, *patch, generator=generator) + 2 * target
    scales = trainer._get_deep_supervision_scales() if trainer.enable_deep_supervision else [[1.0] * len(patch)]
    targets = [torch.nn.functional.interpolate(target, scale_factor=tuple(s), mode="nearest") for s in scales]
    return {"data": data, "target": targets if trainer.enable_deep_supervision else targets[0],
            "keys": np.array([f"batch{seed}_{i}" for i in range(batch_size)])}
