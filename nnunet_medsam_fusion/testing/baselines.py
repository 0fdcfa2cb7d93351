"""The baselines' published sizes and their short run through nnU-Net's commands, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from nnunet_medsam_fusion.trainers.baselines import nnUNetTrainerSwinUNet, nnUNetTrainerTransUNet, nnUNetTrainerUNet

from .nnunet_env import DATASET, DATASET_ID, nnunet_env, run_cli

# Published sizes: milesial/Pytorch-UNet (the common PyTorch U-Net, 31.04M), Swin-Unet (Cao et al.: 27.17M),
# TransUNet R50-ViT-B/16 (Chen et al.: 105.28M).
REFERENCE_PARAMETERS = {nnUNetTrainerUNet: 31.04e6, nnUNetTrainerSwinUNet: 27.17e6, nnUNetTrainerTransUNet: 105.28e6}


def train_predict_and_score(root: Path, work: Path, trainer: str) -> float:
    """``nnUNetv2_train`` (SwinUNet then ``--c``), ``nnUNetv2_predict`` of the test volumes, and their mean vessel
    Dice (also run by benchmarks/baseline_short_runs.py)."""
    from nnunet_medsam_fusion.evaluation.commands import evaluate_folders

    env = nnunet_env(root, nnUNet_results=str(work / "results"))
    train = ["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu"]
    run_cli(train, dict(env, nnUNet_n_proc_DA="0"))
    if "SwinUNet" in trainer:
        run_cli([*train, "--c"], dict(env, nnUNet_n_proc_DA="0"))
    raw = root / "raw" / DATASET
    run_cli(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(work / "pred"), "-d", str(DATASET_ID),
             "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    result = evaluate_folders(work / "pred", raw / "labelsTs", raw / "dataset.json")
    return result.summary["vessel"]["metrics"]["dice"]["mean"]
