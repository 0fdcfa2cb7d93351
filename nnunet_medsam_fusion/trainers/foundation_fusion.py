"""What every foundation-fusion trainer shares: the fused network, frozen weights, trainable-only optimiser.

The family-specific trainers (``medsam_fusion.py``, ``medsam2_fusion.py``) only say which encoder they use
and which of its feature levels they fuse.
"""

from __future__ import annotations

import os

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from nnunet_medsam_fusion.foundation import (
    FoundationEncoder,
    FoundationSpec,
    build_foundation_encoder,
    load_foundation_weights,
)
from nnunet_medsam_fusion.fusion.network import FoundationFusionUNet
from nnunet_medsam_fusion.trainers.focal_dice import nnUNetTrainerFocalDice

PLANS_KEY = "foundation"  # entry of the plans' configuration that records the FoundationSpec


def unwrap(network: nn.Module) -> nn.Module:
    """The plain module inside nnU-Net's DDP and torch.compile wrappers."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


class FoundationFusionTrainer(nnUNetTrainerFocalDice):
    """Base class: nnU-Net + frozen foundation features (FrequencyLoRA -> fusion -> AttentionGate), Dice + focal.

    Subclasses set ``checkpoint_env`` and ``feature_levels`` and implement ``foundation_spec``.
    Everything that can fail on user input (configuration, checkpoint) fails in ``__init__`` before nnU-Net
    writes anything. The chosen :class:`FoundationSpec` is written into the plans that nnU-Net copies to the
    model folder, so ``nnUNetv2_predict`` rebuilds the same network with no checkpoint file or variable.
    """

    checkpoint_env: str = ""
    checkpoint_help: str = ""  # where the weights come from, for the error message
    requires_checkpoint: bool = True  # False only for the explicitly named tiny test/demo encoders
    feature_levels: tuple[int, ...] = (0,)
    lora_rank: int = 8
    attention_reduction: int = 16

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        patch_size = PlansManager(plans).get_configuration(configuration).patch_size
        if len(patch_size) != 2:
            raise ValueError(
                f"{type(self).__name__} fuses 2D foundation features, but configuration '{configuration}' has a "
                f"{len(patch_size)}D patch {list(patch_size)}. Train the '2d' configuration: "
                f"nnUNetv2_train DATASET 2d FOLD -tr {type(self).__name__}")
        checkpoint = os.environ.get(self.checkpoint_env) or None
        if checkpoint is None and self.requires_checkpoint:
            raise ValueError(
                f"{type(self).__name__} needs pretrained foundation weights: set {self.checkpoint_env} to the "
                f"checkpoint file ({self.checkpoint_help}), e.g. export {self.checkpoint_env}=/path/to/file. "
                "Prediction later needs only the trained model folder.")
        spec = self.foundation_spec(checkpoint)
        self.pretrained_foundation: FoundationEncoder | None = None
        if checkpoint is not None:
            self.pretrained_foundation = build_foundation_encoder(spec)
            load_foundation_weights(self.pretrained_foundation, checkpoint)
        plans["configurations"][configuration][PLANS_KEY] = spec.to_dict()
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.foundation_checkpoint = checkpoint

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
        recorded = configuration_manager.configuration.get(PLANS_KEY)
        if recorded is None:
            raise ValueError(
                f"The plans' configuration has no '{PLANS_KEY}' entry, so {cls.__name__} cannot rebuild its "
                "foundation encoder. Use the plans.json that training "
                "wrote into the model folder (nnUNetv2_predict does), not the preprocessed plans.")
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        foundation = build_foundation_encoder(FoundationSpec.from_dict(recorded))
        return FoundationFusionUNet(unet, foundation, configuration_manager.patch_size, cls.feature_levels,
                                    cls.lora_rank, cls.attention_reduction)

    def initialize(self) -> None:
        super().initialize()
        network = unwrap(self.network)
        spec = network.foundation.spec
        if self.pretrained_foundation is not None:
            network.foundation.load_state_dict(self.pretrained_foundation.state_dict())
            self.pretrained_foundation = None
            self.print_to_log_file(f"Foundation encoder {spec} loaded from {self.foundation_checkpoint}")
        else:
            self.print_to_log_file(
                f"WARNING: foundation encoder {spec} has RANDOM, UNTRAINED weights (no {self.checkpoint_env}). "
                "Its features mean nothing; use this only for tests and demos.")
        frozen = sum(p.numel() for p in network.parameters() if not p.requires_grad)
        trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
        self.print_to_log_file(
            f"Fusing foundation levels {network.feature_levels} into encoder stages {network.fusion_stages}; "
            f"parameters: {frozen:,} frozen, {trainable:,} trainable")
        if self.num_input_channels > 1:
            self.print_to_log_file(f"{self.num_input_channels} input channels: the foundation encoder sees "
                                   "channel 0 only; nnU-Net's encoder sees all of them")

    def configure_optimizers(self):
        """nnU-Net's SGD + poly schedule, over the trainable parameters only (the encoder stays frozen)."""
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                                    nesterov=True)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)
