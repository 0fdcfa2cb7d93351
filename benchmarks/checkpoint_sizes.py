"""Size of a fold checkpoint (``checkpoint_final.pth``) of trainers on a planned data set (README, "Install").

Each trainer is built as ``nnUNetv2_train`` builds it on the plans in ``$nnUNet_preprocessed/DATASET``, its optimizer
state is created as after a training step (zero gradients, one step: SGD momentum for every trainable parameter),
and nnU-Net's ``save_checkpoint`` writes the file into a temporary folder. A trained checkpoint differs only in its
logs (a few KB): on the demo's 2d set the file written here was within 1 KB of the demo's trained
``checkpoint_final.pth``. The size follows nnU-Net's plan (stages, features), not the training.

    python benchmarks/checkpoint_sizes.py DATASET CONFIGURATION TRAINER [TRAINER ...]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import _common  # noqa: F401  (puts the repository root on sys.path)


def checkpoint_size(dataset_folder: Path, configuration: str, trainer_name: str) -> tuple[int, list[int], int]:
    """Bytes of the checkpoint, the configuration's patch size and its number of stages."""
    import torch

    import nnunet_medsam_fusion.trainers as trainers

    plans = json.loads((dataset_folder / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((dataset_folder / "dataset.json").read_text())
    with tempfile.TemporaryDirectory() as results:
        os.environ["nnUNet_results"] = results
        trainer = getattr(trainers, trainer_name)(plans, configuration, 0, dataset_json, torch.device("cpu"))
        trainer.initialize()
        for parameter in trainer.network.parameters():
            if parameter.requires_grad:
                parameter.grad = torch.zeros_like(parameter)
        trainer.optimizer.step()
        path = Path(results) / "checkpoint_final.pth"
        trainer.save_checkpoint(str(path))
        manager = trainer.configuration_manager
        return path.stat().st_size, list(manager.patch_size), len(manager.pool_op_kernel_sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="DatasetNNN_Name in $nnUNet_preprocessed")
    parser.add_argument("configuration")
    parser.add_argument("trainers", nargs="+")
    args = parser.parse_args()
    folder = Path(os.environ["nnUNet_preprocessed"]) / args.dataset
    for name in args.trainers:
        size, patch, stages = checkpoint_size(folder, args.configuration, name)
        print(f"{name} {args.configuration} patch {'x'.join(map(str, patch))}, {stages} stages: "
              f"{size:,} bytes ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
