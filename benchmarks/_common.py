"""Shared set-up of the benchmark scripts: the synthetic data sets the docs measure on, planned and preprocessed by
nnU-Net's own CLI, and trainers built in-process the way ``nnUNetv2_train`` builds them.

Uses the helpers the tests use (``nnunet_medsam_fusion/testing/nnunet_env.py``: ``nnunet_env``, ``run_cli``,
``load_plans``, ``load_dataset_json``); the repository root is put on ``sys.path``, so a checkout's package is run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from nnunet_medsam_fusion.data.synthetic import SyntheticSet

if TYPE_CHECKING:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def synthetic_sets() -> dict[str, SyntheticSet]:
    """``test``: the test suite's set (``planned_dataset`` in tests/conftest.py; 64² patch, batch 5). ``demo``: the set
    ``nnmsf demo`` writes (``nnunet_medsam_fusion.demo.DEMO_SETS["2d"]``; 64² patch, batch 10). ``blobs``: the transfer
    test's fused-training set (``testing/transfer_procedure.BLOB_SET``: 12 volumes with 8 bright blobs each)."""
    from nnunet_medsam_fusion import demo
    from nnunet_medsam_fusion.testing import transfer_procedure as transfer

    return {
        "test": SyntheticSet(977, "TinyTOF", 6, 2, (64, 64, 16), (0.3, 0.3, 0.6), 3),
        "demo": demo.DEMO_SETS["2d"],
        "blobs": transfer.BLOB_SET,
    }


def add_data_arguments(parser: argparse.ArgumentParser, default_set: str) -> None:
    parser.add_argument("--data-set", choices=("test", "demo"), default=default_set,
                        help=f"which synthetic set to plan and measure on (default: {default_set})")
    parser.add_argument("--root", type=Path, default=None,
                        help="folder for raw/preprocessed data; reused when already planned (default: a temporary "
                             "folder, removed afterwards)")


@contextlib.contextmanager
def planned_root(root: Path | None, synthetic: SyntheticSet, configurations: tuple[str, ...] = ("2d",)
                 ) -> Iterator[Path]:
    """A root with ``raw/`` and ``preprocessed/`` holding ``synthetic`` planned by ``nnUNetv2_plan_and_preprocess
    -c CONFIGURATIONS`` (written and planned only when ``root`` does not hold them yet)."""
    from nnunet_medsam_fusion.testing.nnunet_env import nnunet_env, run_cli

    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nnmsf_bench_")))
        root = Path(root).resolve()
        check_same_set(root, synthetic)
        preprocessed = root / "preprocessed" / synthetic.dataset
        if not all((preprocessed / f"nnUNetPlans_{c}").is_dir() for c in configurations):
            print(f"writing and planning {synthetic.dataset} in {root} ...", file=sys.stderr, flush=True)
            synthetic.write(root / "raw")
            run_cli(["nnUNetv2_plan_and_preprocess", "-d", str(synthetic.dataset_id), "-c", *configurations,
                     "-np", "2"], nnunet_env(root))
        yield root


def check_same_set(root: Path, synthetic: SyntheticSet) -> None:
    """Refuse a ``root`` whose raw set of the same name was written with other parameters (shape, spacing, seed,
    cases, blobs): reusing it would measure another set, and writing over it would lose it."""
    dataset_json = root / "raw" / synthetic.dataset / "dataset.json"
    if not dataset_json.is_file():
        return
    recorded = json.loads(dataset_json.read_text())
    wanted = {"numTraining": synthetic.num_train, "synthetic": {
        "seed": synthetic.seed, "shape": list(synthetic.shape), "spacing_mm": [float(s) for s in synthetic.spacing],
        "num_test": synthetic.num_test, "bright_blobs": synthetic.bright_blobs}}
    found = {key: recorded.get(key) for key in wanted}
    if found != wanted:
        raise SystemExit(f"{root} holds {synthetic.dataset} written with {found}, not {wanted}: give another --root "
                         "(or none, for a temporary folder)")


@contextlib.contextmanager
def nnunet_folders(root: Path) -> Iterator[Path]:
    """nnU-Net's folders pointed at ``root`` for in-process trainers, results in a temporary folder, data loading
    in this process (``nnUNet_n_proc_DA=0``); the caller's environment is restored afterwards."""
    from nnunet_medsam_fusion.settings import temporary_environ
    from nnunet_medsam_fusion.testing.nnunet_env import nnunet_env

    folders = {key: value for key, value in nnunet_env(root).items() if key.startswith("nnUNet_")}
    with tempfile.TemporaryDirectory(prefix="nnmsf_results_") as results, \
            temporary_environ(**{**folders, "nnUNet_results": results, "nnUNet_n_proc_DA": "0",
                                 "nnUNet_MedSAM_checkpoint": None, "nnUNet_MedSAM2_checkpoint": None}):
        yield Path(results)


def build_trainer(name: str | type, root: Path, dataset: str, batch_size: int | None = None) -> nnUNetTrainer:
    """Trainer ``name`` (a class, or a name found by nnU-Net's lookup), built on CPU from the preprocessed plans as
    ``nnUNetv2_train`` builds it, and initialised. Call inside :func:`nnunet_folders`."""
    import torch

    from nnunet_medsam_fusion.benchmarking.discovery import find_trainer_class
    from nnunet_medsam_fusion.testing.nnunet_env import load_dataset_json, load_plans

    plans = load_plans(root, dataset=dataset)
    if batch_size is not None:
        plans["configurations"]["2d"]["batch_size"] = batch_size
    trainer_class = find_trainer_class(name) if isinstance(name, str) else name
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates the build
        trainer = trainer_class(plans, "2d", 0, load_dataset_json(root, dataset=dataset), torch.device("cpu"))
        trainer.initialize()
    return trainer


