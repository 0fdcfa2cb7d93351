"""Shared fixtures: a tiny synthetic data set planned and preprocessed by nnU-Net's own CLI (the helpers they use
are in ``nnunet_medsam_fusion/testing/nnunet_env.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_medsam_fusion.data.synthetic import write_dataset
from nnunet_medsam_fusion.testing.nnunet_env import DATASET_ID, nnunet_env, run_cli

CLI_FIXTURES = {"planned_dataset", "blob_dataset", "smoke_model"}  # fixtures that run nnU-Net's own commands


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs a fixture running nnU-Net's CLI is ``slow``: ``pytest -m "not slow"`` skips them."""
    for item in items:
        if CLI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def planned_dataset(tmp_path_factory) -> Path:
    """Root folder with raw/preprocessed/results for a 6-case 64x64x16 synthetic set, 2d and 3d_fullres plans
    (plain and ResEnc)."""
    root = tmp_path_factory.mktemp("nnunet")
    write_dataset(root / "raw", dataset_id=DATASET_ID, name="TinyTOF", num_train=6, num_test=2,
                  shape=(64, 64, 16), spacing=(0.3, 0.3, 0.6), seed=3, overwrite=False)
    env = nnunet_env(root)
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "3d_fullres", "-np", "2"], env)
    run_cli(["nnUNetv2_plan_experiment", "-d", str(DATASET_ID), "-pl", "nnUNetPlannerResEncM"], env)
    return root


@pytest.fixture
def results(planned_dataset, tmp_path, monkeypatch) -> Path:
    """nnU-Net's folders for in-process trainers, a fresh results folder per test, no checkpoint variables."""
    for key, value in nnunet_env(planned_dataset).items():
        if key.startswith("nnUNet_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.delenv("nnUNet_MedSAM_checkpoint", raising=False)
    monkeypatch.delenv("nnUNet_MedSAM2_checkpoint", raising=False)
    return tmp_path / "results"
