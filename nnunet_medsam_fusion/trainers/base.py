"""What every trainer of this package adds to nnU-Net's: its schedule, a patch check, a finite-input check,
crash-safe checkpoints.

The checks guard against failures that nnU-Net would otherwise report late or not at all: a patch with an axis of
1-3 voxels (nnU-Net plans one for a volume of 1-3 slices) fails in the augmentation of the first batches, after
the model folder is written, a NaN/inf image turns the loss into NaN and silently ruins the weights, and a training
killed while ``torch.save`` writes ``checkpoint_latest.pth`` leaves a truncated file that makes ``nnUNetv2_train
--c`` crash.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from batchgeneratorsv2.transforms.noise.gaussian_blur import blur_dimension
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion.trainer_table import Schedule

PARTIAL_SUFFIX = ".partial"  # a checkpoint being written; renamed to its final name only once complete
# nnU-Net's training augmentation blurs every axis of the patch with a sigma of up to 1 voxel
# (GaussianBlurTransform(blur_sigma=(0.5, 1.)) in nnUNetTrainer.get_training_transforms); the blur pads each axis by
# reflection, which torch refuses for an axis not longer than the pad.
AUGMENTATION_MAX_BLUR_SIGMA = 1.0
# nnU-Net writes checkpoint_latest.pth every ``save_every`` (50) epochs, 20 times in its 1000; ours at least as often
# relative to the schedule, so that --c after an interrupt of a short schedule resumes near where it stopped
# (without a latest checkpoint nnU-Net's --c takes checkpoint_best.pth, an earlier epoch).
LATEST_CHECKPOINTS_PER_SCHEDULE = 20


def latest_checkpoint_interval(num_epochs: int, nnunet_interval: int) -> int:
    """Epochs between two checkpoint_latest.pth: nnU-Net's interval, or a 20th of a shorter schedule (at least 1)."""
    return max(1, min(nnunet_interval, num_epochs // LATEST_CHECKPOINTS_PER_SCHEDULE))


def blur_fits(length: int) -> bool:
    """Whether nnU-Net's strongest augmentation blur can pad a patch axis of ``length`` voxels."""
    try:
        blur_dimension(torch.zeros(1, length), AUGMENTATION_MAX_BLUR_SIGMA, 0)
    except RuntimeError:
        return False
    return True


def check_patch_trains(trainer: str, configuration: str, patch_size: Sequence[int]) -> None:
    """Refuse a patch that nnU-Net's augmentation cannot handle (a 3D patch over a volume of 1-3 slices)."""
    short = [int(length) for length in patch_size if not blur_fits(int(length))]
    if short:
        shortest = next(length for length in range(1, 64) if blur_fits(length))
        raise ValueError(
            f"{trainer}: configuration '{configuration}' has patch size {list(patch_size)}, whose axis of "
            f"{min(short)} voxel(s) is shorter than the {shortest} voxels nnU-Net's training augmentation needs "
            "(its Gaussian blur pads every axis by reflection), so training would stop at the first strong blur. "
            "Volumes this thin are slices: train the 2d configuration (nnUNetv2_train DATASET 2d FOLD -tr "
            f"{trainer}).")


class nnUNetTrainerPluginBase(nnUNetTrainer):
    """nnU-Net's trainer, refusing patches its augmentation cannot pad and non-finite training batches, and
    writing checkpoints atomically, checkpoint_latest.pth at least every 20th of the schedule.

    ``schedule`` (a class attribute: nnU-Net's ``__init__`` signature stays exact) shortens training, as nnU-Net's
    own ``nnUNetTrainer_5epochs`` variants do in their ``__init__``.
    """

    schedule: Schedule | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        check_patch_trains(type(self).__name__, configuration,
                           PlansManager(plans).get_configuration(configuration).patch_size)
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.schedule is not None:
            self.num_epochs = self.schedule.epochs
            self.num_iterations_per_epoch = self.schedule.iterations_per_epoch
            self.num_val_iterations_per_epoch = self.schedule.val_iterations_per_epoch
        self.save_every = latest_checkpoint_interval(self.num_epochs, self.save_every)

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's training step, after checking the batch for NaN/inf.

        The check runs on the CPU tensor that nnU-Net's data loader delivers, before it moves to the device, so
        it adds no GPU synchronisation. ``aminmax`` propagates NaN and shows +-inf, so finite extremes mean a
        finite batch; it reads the batch once and, unlike ``isfinite(data).all()``, builds no boolean copy of it.
        """
        data = batch["data"]
        if not torch.isfinite(torch.stack(torch.aminmax(data))).all():
            finite = torch.isfinite(data).flatten(1).all(dim=1).tolist()
            cases = [str(key) for key, ok in zip(batch["keys"], finite, strict=True) if not ok]
            raise ValueError(
                f"Training batch holds NaN or infinite intensities in case(s) {cases}. Training on them would "
                "turn the loss and the weights into NaN. nnUNetv2_plan_and_preprocess -d DATASET "
                "--verify_dataset_integrity lists images with NaN (check for inf with numpy.isfinite); fix or "
                "remove those cases in nnUNet_raw and preprocess again.")
        return super().train_step(batch)

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written to ``filename + '.partial'`` and renamed into place when complete.

        A killed process or a full disk mid-write then leaves the previous checkpoint intact: ``os.replace`` is
        atomic within a folder. (No fsync: a power cut is the file system's business, and checkpoints are large.)
        """
        if self.local_rank != 0 or self.disable_checkpointing:
            super().save_checkpoint(filename)  # nnU-Net writes nothing here (and logs why)
            return
        partial = filename + PARTIAL_SUFFIX
        try:
            super().save_checkpoint(partial)
            os.replace(partial, filename)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
