"""What every foundation-fusion trainer shares: the fused network, frozen weights, the model folder as truth.

The family-specific trainers (``medsam_fusion.py``, ``medsam2_fusion.py``) only say which encoder they use
and which of its feature levels they fuse.

Which encoder a model folder holds is decided once, when its first fold starts training, and recorded in the
plans that nnU-Net copies into the model folder: the :class:`FoundationSpec` under ``foundation`` and the
pretrained file's name and SHA-256 under ``foundation_weights`` (``null``: random weights). From then on the
model folder is the truth: ``--val`` and ``--c`` take the frozen weights from the fold's checkpoint and need no
checkpoint variable; a new fold in the same folder must start from the same pretrained file (same digest); a
variable that names another file is refused, naming both, and nothing is rewritten.
"""

from __future__ import annotations

import dataclasses

import torch
from batchgenerators.utilities.file_and_folder_operations import isfile, join, load_json
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from nnunet_medsam_fusion.foundation import (
    FoundationSpec,
    build_foundation_encoder,
    file_sha256,
    load_foundation_weights,
)
from nnunet_medsam_fusion.foundation.precision import describe_encoder_precision, resolve_precision
from nnunet_medsam_fusion.foundation.preprocessing import with_plans_window
from nnunet_medsam_fusion.foundation.spec import no_depth_image_message
from nnunet_medsam_fusion.fusion.network import FoundationFusionUNet
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY, WEIGHTS_KEY, model_folder
from nnunet_medsam_fusion.settings import ENCODER_PRECISION_ENV, checkpoint_path, encoder_precision, nnunet_folder
from nnunet_medsam_fusion.trainers.focal_dice import nnUNetTrainerFocalDice

RANDOM_FOUNDATION_SEED = 0  # random (test/demo) encoders are the same in every fold and every run


def unwrap(network: nn.Module) -> nn.Module:
    """The plain module inside nnU-Net's DDP and torch.compile wrappers."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


def trainer_model_folder(plans: dict, trainer_name: str, configuration: str) -> str | None:
    """The model folder under ``$nnUNet_results`` this trainer trains into (None when that is unset)."""
    folder = model_folder(nnunet_folder("nnUNet_results"), plans["dataset_name"], trainer_name, plans["plans_name"],
                          configuration)
    return None if folder is None else str(folder)


def fold_checkpoints(plans: dict, trainer_name: str, configuration: str, fold: int | str) -> list[str]:
    """The checkpoints a fold of the model folder already holds (what --val and --c load)."""
    folder = trainer_model_folder(plans, trainer_name, configuration)
    if folder is None:
        return []
    names = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
    return [join(folder, f"fold_{fold}", name) for name in names if isfile(join(folder, f"fold_{fold}", name))]


def model_folder_plans(plans: dict, trainer_name: str, configuration: str) -> dict | None:
    """The plans.json of the model folder this trainer trains into, if an earlier fold wrote it."""
    folder = trainer_model_folder(plans, trainer_name, configuration)
    if folder is None or not isfile(join(folder, "plans.json")):
        return None
    return load_json(join(folder, "plans.json"))


class FoundationFusionTrainer(nnUNetTrainerFocalDice):
    """Base class: nnU-Net + frozen foundation features (FrequencyLoRA -> fusion -> AttentionGate), Dice + focal.

    Subclasses set ``checkpoint_env``, ``sizes`` and ``feature_levels`` and implement ``foundation_spec``.
    Everything that can fail on user input (configuration, checkpoint, disagreement with the model folder) fails
    in ``__init__`` before nnU-Net writes anything.
    """

    checkpoint_env: str = ""
    checkpoint_help: str = ""  # where the weights come from, for the error message
    requires_checkpoint: bool = True  # False only for the explicitly named tiny test/demo encoders
    sizes: tuple[str, ...] = ()  # encoder sizes this trainer accepts (published ones; "tiny" for Tiny trainers)
    feature_levels: tuple[int, ...] = (0,)
    lora_rank: int = 8
    attention_reduction: int = 16
    # 3D configurations (our defaults; docs/design.md gives the cost behind them, benchmarks/fusion_3d_flops.py
    # the command): the encoder input side at most this, and one image per volume_cells_per_image depth cells of
    # the finest fused stage, made from the cells' slab as volume_depth_image says (fusion/depth_cells.py).
    volume_input_size: int = 384
    volume_depth_image: str = "mip"
    volume_cells_per_image: int = 1

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        volumetric = len(PlansManager(plans).get_configuration(configuration).patch_size) == 3
        checkpoint = checkpoint_path(self.checkpoint_env)
        recorded = model_folder_plans(plans, type(self).__name__, configuration)
        entry = recorded["configurations"][configuration] if recorded else {}
        if FOUNDATION_KEY in entry:
            spec = FoundationSpec.from_dict(entry[FOUNDATION_KEY])
            weights = entry[WEIGHTS_KEY]
            if checkpoint is not None:
                self.check_against_model_folder(checkpoint, spec, weights)
            elif weights is not None and not fold_checkpoints(plans, type(self).__name__, configuration, fold):
                raise ValueError(self.recorded_file_needed(fold, weights))
            self.check_precision_setting(spec)
            if volumetric and spec.depth_image is None:
                raise ValueError(no_depth_image_message())
        else:
            spec, weights = self.first_fold_foundation(checkpoint)
            spec = with_plans_window(spec, plans, configuration)  # one intensity mapping for every fold and tile
            spec = dataclasses.replace(spec, precision=resolve_precision(torch.device(device)))
            if volumetric:
                spec = dataclasses.replace(spec, input_size=min(spec.input_size, self.volume_input_size),
                                           depth_image=self.volume_depth_image,
                                           cells_per_image=self.volume_cells_per_image)
        # Validate the file against the encoder before nnU-Net creates the output folder; loaded in initialize().
        if checkpoint is not None:
            load_foundation_weights(build_foundation_encoder(spec), checkpoint)
        plans["configurations"][configuration][FOUNDATION_KEY] = spec.to_dict()
        plans["configurations"][configuration][WEIGHTS_KEY] = weights
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.foundation_checkpoint = checkpoint
        self.foundation_weights = weights
        self.frozen_weights_from_fold_checkpoint = False

    def check_precision_setting(self, spec: FoundationSpec) -> None:
        """An explicit NNMSF_ENCODER_PRECISION that contradicts the model folder's recorded precision is refused."""
        setting = encoder_precision()
        if setting != "auto" and setting != spec.precision:
            raise ValueError(
                f"{ENCODER_PRECISION_ENV}={setting}, but this {type(self).__name__} model folder's encoder runs in "
                f"{spec.precision} (recorded when its first fold started). Unset {ENCODER_PRECISION_ENV} to go on "
                "with the recorded precision, or train a new model folder (another trainer name) in the other one.")

    def first_fold_foundation(self, checkpoint: str | None) -> tuple[FoundationSpec, dict | None]:
        """Spec and weights record for a model folder's first training, from the user's checkpoint file."""
        if checkpoint is None and self.requires_checkpoint:
            raise ValueError(
                f"{type(self).__name__} needs pretrained foundation weights: set {self.checkpoint_env} to the "
                f"checkpoint file ({self.checkpoint_help}), e.g. export {self.checkpoint_env}=/path/to/file. "
                "Prediction, --val and --c later need only the trained model folder.")
        spec = self.foundation_spec(checkpoint)
        if spec.size not in self.sizes:
            raise ValueError(
                f"{type(self).__name__} takes foundation encoders of size {' or '.join(self.sizes)}, but "
                f"{checkpoint} holds size {spec.size!r}. "
                + ("Tiny encoders are for tests and demos: use the trainer's Tiny variant."
                   if spec.size == "tiny" else "Use the trainer made for that size."))
        if checkpoint is None:
            return spec, None
        return spec, {"file": str(checkpoint), "sha256": file_sha256(checkpoint)}

    def recorded_file_needed(self, fold: int | str, weights: dict) -> str:
        """Error text: a fold that starts fresh in a pretrained model folder needs the recorded file."""
        what = f"{weights['file']} (sha256 {weights['sha256'][:16]}...)"
        return (f"Fold {fold} of {type(self).__name__} starts training from scratch in a model folder whose encoder "
                f"was trained from {what}: set {self.checkpoint_env} to that file so every fold fuses the same "
                "encoder (or use --c to continue a fold that has a checkpoint).")

    def check_against_model_folder(self, checkpoint: str, spec: FoundationSpec, weights: dict | None) -> None:
        """Refuse a checkpoint variable that names other weights than the model folder was trained from."""
        folder = f"{type(self).__name__} model folder (encoder {spec})"
        if weights is None:
            raise ValueError(
                f"{self.checkpoint_env}={checkpoint}, but this {folder} was trained with RANDOM encoder weights; "
                f"unset {self.checkpoint_env} to validate or continue it, or train a new model folder "
                "(another trainer name) with the pretrained file.")
        digest = file_sha256(checkpoint)
        if digest != weights["sha256"]:
            raise ValueError(
                f"{self.checkpoint_env}={checkpoint} (sha256 {digest[:16]}...) is not the file this {folder} was "
                f"trained from: {weights['file']} (sha256 {weights['sha256'][:16]}...). Unset "
                f"{self.checkpoint_env} for --val / --c (the fold checkpoints hold the encoder), or point it at "
                "that file to train another fold; a different file needs a new model folder.")

    @classmethod
    def foundation_spec(cls, checkpoint: str | None) -> FoundationSpec:
        """The encoder this trainer fuses, given the user's checkpoint file (or None for random weights)."""
        raise NotImplementedError(f"{cls.__name__} must say which foundation encoder it uses")

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """nnU-Net's own U-Net from the plans, plus the (randomly initialised) frozen encoder and fusions.

        nnU-Net loads the trained weights (frozen encoder included) from ``checkpoint_*.pth`` afterwards.
        """
        recorded = configuration_manager.configuration.get(FOUNDATION_KEY)
        if recorded is None:
            raise ValueError(
                f"The plans' configuration has no '{FOUNDATION_KEY}' entry, so {cls.__name__} cannot rebuild its "
                "foundation encoder. Use the plans.json that training "
                "wrote into the model folder (nnUNetv2_predict does), not the preprocessed plans.")
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        with torch.random.fork_rng(devices=[]):  # the same random encoder in every fold; nnU-Net's RNG untouched
            torch.manual_seed(RANDOM_FOUNDATION_SEED)
            foundation = build_foundation_encoder(FoundationSpec.from_dict(recorded))
        return FoundationFusionUNet(unet=unet, foundation=foundation, patch_size=configuration_manager.patch_size,
                                    feature_levels=cls.feature_levels, lora_rank=cls.lora_rank,
                                    attention_reduction=cls.attention_reduction)

    def initialize(self) -> None:
        super().initialize()
        network = unwrap(self.network)
        spec = network.foundation.spec
        if self.foundation_checkpoint is not None:
            load_foundation_weights(network.foundation, self.foundation_checkpoint)
            self.print_to_log_file(f"Foundation encoder {spec} loaded from {self.foundation_checkpoint}")
        elif self.foundation_weights is None:
            self.print_to_log_file(
                f"WARNING: foundation encoder {spec} has RANDOM, UNTRAINED weights (no {self.checkpoint_env}). "
                "Its features mean nothing; use this only for tests and demos.")
        else:
            self.print_to_log_file(f"Foundation encoder {spec}: frozen weights come from this fold's checkpoint "
                                   f"(trained from {self.foundation_weights['file']}); {self.checkpoint_env} is "
                                   "not needed")
        precision = describe_encoder_precision(spec.precision, self.device)
        self.print_to_log_file(f"Foundation encoder precision: {precision}")
        frozen = sum(p.numel() for p in network.parameters() if not p.requires_grad)
        trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
        self.print_to_log_file(
            f"Fusing foundation levels {network.feature_levels} into encoder stages {network.fusion_stages}; "
            f"parameters: {frozen:,} frozen, {trainable:,} trainable")
        if len(self.configuration_manager.patch_size) == 3:
            images = network.depth_plan(self.configuration_manager.patch_size).images_per_patch
            self.print_to_log_file(
                f"3D fusion: the 2D encoder sees {images} images per patch ({spec.depth_image} of the "
                f"slabs of {spec.cells_per_image} depth cell(s) of the finest fused stage, slices along the first "
                f"patch axis as nnU-Net's 2d configuration sees them), at input {spec.input_size}")
        if self.num_input_channels > 1:
            self.print_to_log_file(f"{self.num_input_channels} input channels: the foundation encoder sees "
                                   "channel 0 only; nnU-Net's encoder sees all of them")

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        """nnU-Net's, noting that the frozen encoder now holds the weights the fold was trained with."""
        super().load_checkpoint(filename_or_checkpoint)
        self.frozen_weights_from_fold_checkpoint = True

    def on_train_start(self) -> None:
        """A new fold of a pretrained model folder must start from the recorded file; refuse before writing."""
        starts_fresh = self.foundation_checkpoint is None and not self.frozen_weights_from_fold_checkpoint
        if starts_fresh and self.foundation_weights is not None:
            raise ValueError(self.recorded_file_needed(self.fold, self.foundation_weights))
        super().on_train_start()
