"""The transfer procedure shared by ``tests/test_transfer.py`` and the benchmark scripts (``transfer_seeds.py``,
``depth_cell_probe.py``): the blob set, the pretraining of a tiny encoder with a linear vessel head, and fused
training of the Tiny trainer with nnU-Net's loader followed by validation Dice. Every choice a caller varies (seed,
training cases, steps, 3D width and depth image) is an argument, so no caller edits this module's names.

The task is the synthetic TOF-MRA set with unlabelled bright blobs (``bright_blobs``): spheres as bright as blood in
a large vessel, so intensity alone does not find the vessels, shape does. On the plain set nnU-Net's own encoder learns
the bright vessels within 20-40 steps whatever the foundation gives, and no transfer can show
(docs/benchmarks.md). The encoder is pretrained with a linear head on its features predicting the vessel mask,
written in the family's official checkpoint layout (as ``tiny_checkpoints.py`` writes them) and given to the
trainer through its checkpoint variable, which reads it with the real loader; nnU-Net plans and preprocesses the
fused-training set, its loader (augmentation included) feeds the trainer's own ``train_step`` (loss, optimiser,
deep supervision), and Dice is scored on held-out preprocessed cases.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from torch import nn

from nnunet_medsam_fusion.data.synthetic import SyntheticSet, generate_case
from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder
from nnunet_medsam_fusion.settings import temporary_environ
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny, nnUNetTrainerMedSAMFusionTiny
from nnunet_medsam_fusion.trainers.foundation_fusion import unwrap

from .nnunet_env import load_dataset_json, load_plans, nnunet_env
from .tiny_checkpoints import tiny_sam, tiny_sam2

DATASET_ID, DATASET = 978, "Dataset978_BlobTOF"
SHAPE, SPACING, BLOBS = (64, 64, 16), (0.3, 0.3, 0.6), 8
# The fused-training set: 12 blob volumes, other seeds than the pretraining slices (``blob_slices(range(100, 108))``)
BLOB_SET = SyntheticSet(DATASET_ID, "BlobTOF", 12, 0, SHAPE, SPACING, 11, BLOBS)
# The 3D test's set: the same volumes with 1.2 mm slices, where a blob spans one to three slices, so its 3D shape
# tells it from a vessel less, and nnU-Net's 3D network leaves its all-background start sooner (docs/benchmarks.md)
THICK_BLOB_SET = dataclasses.replace(BLOB_SET, spacing=(0.3, 0.3, 1.2))
PRETRAIN_STEPS, PRETRAIN_BATCH = {"medsam": 500, "medical_sam2": 400}, 8
# Fused training: (training cases of the 12, the rest validate; steps of batch BATCH). Short enough that the
# untrained run is still learning, where transfer can show; Hiera-T needs 100 steps to leave the all-background
# start reliably (at 60 steps one seed of three stayed below Dice 0.2 with either encoder).
SCHEDULE = {"medsam": (2, 60), "medical_sam2": (3, 100)}
BATCH = 6


class MedSAMTransfer(nnUNetTrainerMedSAMFusionTiny):
    encoder_input_size = volume_input_size = 512  # 32² ViT tokens for a 64² patch: 2 pixels each


class MedSAM2Transfer(nnUNetTrainerMedSAM2FusionTiny):
    encoder_input_size = volume_input_size = 256  # Hiera's finest map is then 64², one cell per pixel


TRAINERS = {"medsam": MedSAMTransfer, "medical_sam2": MedSAM2Transfer}


def blob_volumes(seeds: range) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole blob volumes z-scored per volume as nnU-Net does, axial slices first: (V, Z, 1, 64, 64) float32 images
    and uint8 labels."""
    images, labels = [], []
    for seed in seeds:
        image, label = generate_case(SHAPE, SPACING, np.random.default_rng(seed), bright_blobs=BLOBS)
        images.append(np.moveaxis((image - image.mean()) / image.std(), -1, 0)[:, None])
        labels.append(np.moveaxis(label, -1, 0)[:, None])
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def blob_slices(seeds: range) -> tuple[torch.Tensor, torch.Tensor]:
    """The axial slices of ``blob_volumes`` holding vessels: (N, 1, 64, 64) images and float labels."""
    images, labels = blob_volumes(seeds)
    keep = labels.sum(dim=(2, 3, 4)) > 20
    return images[keep], labels[keep].float()


def probe_features(encoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Every feature level of the encoder on (N, 1, 64, 64) slices, resized to 64² and stacked: (N, C, 64, 64),
    what the pretraining's linear head reads."""
    maps = encoder.crop_to_patch(encoder.encode_images(encoder.preprocess(images)), 64, 64)
    return torch.cat([F.interpolate(m, size=(64, 64), mode="bilinear") for m in maps], dim=1)


def pretrain_and_save(family: str, images: torch.Tensor, labels: torch.Tensor, path: Path, steps: int,
                      input_size: int | None = None) -> tuple[nn.Module, nn.Conv2d]:
    """Train a tiny encoder + linear head to predict the vessel mask from its features; save the encoder in the
    family's official checkpoint layout (position embeddings kept at the checkpoint's native grid). With
    ``steps=0`` the file holds the same initial weights, untrained. ``input_size``: the encoder's (default: the
    trainer's). Returns the encoder and its head (its pretraining's vessel probe)."""
    full = tiny_sam(seed=1) if family == "medsam" else tiny_sam2(family, seed=1)
    window = tuple(float(v) for v in np.percentile(images.numpy(), (0.5, 99.5)))
    encoder = build_foundation_encoder(
        FoundationSpec(family, "tiny", input_size or TRAINERS[family].encoder_input_size, intensity_window=window))
    encoder.image_encoder.load_state_dict(encoder.adapt_state_dict(full.image_encoder.state_dict()))
    trainable = [p for name, p in encoder.image_encoder.named_parameters() if name != "pos_embed"]
    for parameter in trainable:
        parameter.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = nn.Conv2d(sum(encoder.feature_channels), 1, 1)
    optimiser = torch.optim.Adam([*trainable, head.weight, head.bias], lr=2e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1 - step / max(steps, 1))  # a stable end
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        pick = torch.randint(0, len(images), (PRETRAIN_BATCH,), generator=generator)
        loss = F.binary_cross_entropy_with_logits(head(probe_features(encoder, images[pick])), labels[pick],
                                                  pos_weight=torch.tensor(5.0))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        decay.step()
    state = full.state_dict()
    for key, value in encoder.image_encoder.state_dict().items():
        if key != "pos_embed":
            state[f"image_encoder.{key}"] = value.detach().clone()
    torch.save(state if family == "medsam" else {"model": state}, path)
    return encoder, head


def misaligned(network: torch.nn.Module, configuration: str) -> None:
    """The control: 2D features flipped left-right; 3D features of each slab handed to the cells of the slab half
    the patch depth away (every position moves; each image's in-plane content stays whole)."""
    if configuration == "2d":
        crop = network.foundation.crop_to_patch
        network.foundation.crop_to_patch = lambda features, h, w: [f.flip(-1) for f in crop(features, h, w)]
        return
    plan_for = network.depth_plan

    def rolled(spatial_size):
        plan = plan_for(spatial_size)
        half = len(plan.slabs) // 2
        return dataclasses.replace(plan, slabs=plan.slabs[half:] + plan.slabs[:half],
                                   slices=plan.slices[half:] + plan.slices[:half])

    network.depth_plan = rolled


def train_and_validate(root: Path, family: str, checkpoint: Path, results: Path, misalign: bool = False,
                       configuration: str = "2d", seed: int = 0, train_cases: int | None = None,
                       steps: Sequence[int] | None = None, width_divisor: int = 1,
                       depth_image: str | None = None) -> list[float]:
    """The fused Tiny trainer with ``checkpoint``: its own ``train_step`` on nnU-Net's loader over the first
    ``train_cases`` cases (default: the family's SCHEDULE), then Dice over every voxel of the other cases (the whole
    case is the patch: 64² slices in 2D, the 16x64x64 volume in 3D) after each step count of ``steps`` (ascending;
    default: the SCHEDULE's one). ``seed``: nnU-Net's initial weights and batches. ``width_divisor`` divides the
    network's features per stage (affordable 3D schedules on a CPU); ``depth_image`` (3D) overrides the trainer's
    ``volume_depth_image`` (how each depth cell's slab becomes an encoder image)."""
    default_cases, default_steps = SCHEDULE[family]
    train_cases = train_cases or default_cases
    steps = list(steps or [default_steps])
    if steps != sorted(steps) or steps[0] < 1:
        raise ValueError(f"steps must be ascending step counts of at least 1, got {steps}")
    trainer_class = TRAINERS[family]
    if depth_image is not None:
        trainer_class = type(trainer_class.__name__, (trainer_class,), {"volume_depth_image": depth_image})
    plans = load_plans(root, dataset=DATASET)
    if configuration == "2d":
        plans["configurations"]["2d"]["batch_size"] = BATCH
    network_kwargs = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
    network_kwargs["features_per_stage"] = [max(1, width // width_divisor)
                                            for width in network_kwargs["features_per_stage"]]
    folders = {key: value for key, value in nnunet_env(root).items() if key.startswith("nnUNet_")}
    with temporary_environ(**{**folders, "nnUNet_results": str(results), "nnUNet_n_proc_DA": "0",
                              trainer_class.checkpoint_env: str(checkpoint)}):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        trainer = trainer_class(plans, configuration, 0, load_dataset_json(root, dataset=DATASET),
                                torch.device("cpu"))
        whole_case = list(SHAPE[:2]) if configuration == "2d" else [SHAPE[2], *SHAPE[:2]]
        assert list(trainer.configuration_manager.patch_size) == whole_case
        trainer.initialize()
        network = unwrap(trainer.network)
        if misalign:
            misaligned(network, configuration)
        folder = trainer.preprocessed_dataset_folder
        dataset_class = infer_dataset_class(folder)
        cases = sorted(dataset_class.get_identifiers(folder))
        trainer.do_split = lambda: (cases[:train_cases], cases[train_cases:])
        loader, _ = trainer.get_dataloaders()
        validation = [validation_case(dataset_class(folder, cases[train_cases:]), case, configuration)
                      for case in cases[train_cases:]]
        dice, done = [], 0
        for target in steps:
            network.train()
            for _ in range(target - done):
                trainer.train_step(next(loader))
            done = target
            dice.append(validation_dice(network, validation))
    return dice


def validation_case(dataset, case: str, configuration: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A preprocessed case as the network's input and its vessel mask: 2d, (Z, 1, Y, X) slices; 3d,
    (1, 1, Z, Y, X)."""
    data, seg, *_ = dataset.load_case(case)
    image = torch.from_numpy(np.asarray(data[:], dtype=np.float32))  # (1, Z, Y, X)
    truth = torch.from_numpy(np.asarray(seg[:])) == 1
    return (image[0][:, None], truth[0][:, None]) if configuration == "2d" else (image[None], truth[None])


def validation_dice(network: nn.Module, cases: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Dice of the argmax over every voxel of ``cases``, in eval mode."""
    network.eval()
    overlap = total = 0.0
    with torch.no_grad():
        for image, truth in cases:
            predicted = network(image)[0].argmax(1, keepdim=True) == 1
            overlap += float((predicted & truth).sum())
            total += float(predicted.sum() + truth.sum())
    return 2 * overlap / total
