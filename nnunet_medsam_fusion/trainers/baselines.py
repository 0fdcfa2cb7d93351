"""The paper's Table 1 baselines as nnU-Net trainers: UNet, SwinUNet and TransUNet on nnU-Net's pipeline.

All three keep everything of nnU-Net but the network and the optimiser: the same plans, splits,
preprocessing, augmentation, Dice + CE loss, validation and prediction as ``nnUNetTrainer``, so Table 1 compares
architectures and nothing else. Deep supervision is off, handled as nnU-Net's own non-U-Net trainers (Primus)
do it: ``enable_deep_supervision = False`` and a no-op ``set_deep_supervision_enabled``. 2D only.

| trainer               | network (networks/)                 | optimiser (ours, docs/baselines.md)            |
|-----------------------|-------------------------------------|------------------------------------------------|
| nnUNetTrainerUNet        | U-Net, 64-1024 channels, ~31.0M  | nnU-Net's SGD (Nesterov 0.99, lr 1e-2), poly   |
| nnUNetTrainerSwinUNet    | Swin-Unet (Swin-T), ~27.2M       | AdamW (lr 3e-4, wd 5e-2), 5% warm-up, poly     |
| nnUNetTrainerTransUNet   | TransUNet (R50-ViT-B/16), ~105M  | AdamW (lr 3e-4, wd 5e-2), 5% warm-up, poly     |

Training starts from scratch unless ``nnUNet_SwinUNet_checkpoint`` / ``nnUNet_TransUNet_checkpoint`` names the
ImageNet file the reference code starts from (checked in ``__init__``, before nnU-Net writes anything, and
loaded in ``initialize``); prediction needs only the model folder.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import torch
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch.optim.lr_scheduler import _LRScheduler

from nnunet_medsam_fusion.settings import SWINUNET_CHECKPOINT_ENV, TRANSUNET_CHECKPOINT_ENV, checkpoint_path
from nnunet_medsam_fusion.trainers.base import nnUNetTrainerPluginBase
from nnunet_medsam_fusion.trainers.foundation_fusion import unwrap

INSTALL_HINT = "pip install 'nnunet-medsam-fusion[baselines]' (it adds timm)"


def warmup_poly_lr(epoch: int, initial_lr: float, num_epochs: int, warmup_epochs: int,
                   exponent: float = 0.9) -> float:
    """Linear warm-up to ``initial_lr`` over ``warmup_epochs``, then nnU-Net's poly decay over the rest.

    The same two phases as nnU-Net's Primus trainers (``Lin_incr_LRScheduler`` then ``PolyLRScheduler_offset``),
    as one function of the epoch, so that ``--c`` resumes on the right value with nothing extra to save.
    """
    if epoch < warmup_epochs:
        return initial_lr * (epoch + 1) / warmup_epochs
    progress = (epoch - warmup_epochs) / max(num_epochs - warmup_epochs, 1)
    return initial_lr * max(1.0 - progress, 0.0) ** exponent


class WarmupPolyLRScheduler(_LRScheduler):
    """:func:`warmup_poly_lr` for nnU-Net, which calls ``step(current_epoch)`` at the start of every epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, num_epochs: int, warmup_epochs: int):
        self.initial_lr, self.num_epochs, self.warmup_epochs = initial_lr, num_epochs, warmup_epochs
        self.ctr = 0
        super().__init__(optimizer, -1)

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step, self.ctr = self.ctr, self.ctr + 1
        lr = warmup_poly_lr(current_step, self.initial_lr, self.num_epochs, self.warmup_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def require_2d(trainer: str, configuration: str, patch_size: Sequence[int]) -> None:
    """A clear error for 3D configurations: the baselines are 2D networks."""
    if len(patch_size) != 2:
        raise ValueError(
            f"{trainer} is a 2D network, but {configuration} has a {len(patch_size)}D patch "
            f"{list(patch_size)}. Train the '2d' configuration: nnUNetv2_train DATASET 2d FOLD -tr {trainer}")


class BaselineTrainer(nnUNetTrainerPluginBase):
    """nnU-Net with a fixed baseline network, no deep supervision and (optionally) ImageNet weights.

    Subclasses implement ``network_class`` and, when they have pretrained weights, set ``checkpoint_env`` and
    implement ``read_pretrained`` / ``load_pretrained``.
    """

    checkpoint_env: str | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        patch_size = PlansManager(plans).get_configuration(configuration).patch_size
        require_2d(type(self).__name__, f"configuration '{configuration}'", patch_size)
        type(self).network_class()  # a missing timm fails here, before nnU-Net writes anything
        checkpoint = checkpoint_path(self.checkpoint_env) if self.checkpoint_env else None
        self.pretrained = self.read_pretrained(checkpoint) if checkpoint else None  # checked before anything runs
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.pretrained_checkpoint = checkpoint
        self.enable_deep_supervision = False

    @classmethod
    def network_class(cls) -> type[nn.Module]:
        raise NotImplementedError(f"{cls.__name__} must name its network")

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The baseline network for the plans' 2D patch size; deep supervision is never built."""
        require_2d(cls.__name__, "the configuration", configuration_manager.patch_size)
        return cls.network_class()(num_input_channels, num_output_channels, configuration_manager.patch_size)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """No deep supervision to switch (as nnU-Net's Primus trainers): the network has one output."""

    def read_pretrained(self, checkpoint: str) -> object:
        raise NotImplementedError(f"{type(self).__name__} has no pretrained weights")

    def load_pretrained(self, network: nn.Module, weights: object) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} has no pretrained weights")

    def initialize(self) -> None:
        super().initialize()
        network = unwrap(self.network)
        parameters = sum(p.numel() for p in network.parameters() if p.requires_grad)
        self.print_to_log_file(f"{type(network).__name__}: {parameters:,} trainable parameters, patch "
                               f"{list(self.configuration_manager.patch_size)}, no deep supervision")
        if self.pretrained is not None:
            loaded = self.load_pretrained(network, self.pretrained)
            self.pretrained = None
            self.print_to_log_file(f"Pretrained weights loaded from {self.pretrained_checkpoint} "
                                   f"({len(loaded)} tensors); the rest starts from scratch")
        elif self.checkpoint_env:
            self.print_to_log_file(f"Training from scratch (random initialisation): {self.checkpoint_env} is not "
                                   "set. Set it to the ImageNet weights to start as the reference code does.")


class nnUNetTrainerUNet(BaselineTrainer):
    """The paper's "UNet": Ronneberger's U-Net (64 to 1024 channels), nnU-Net's SGD + poly schedule."""

    @classmethod
    def network_class(cls) -> type[nn.Module]:
        from nnunet_medsam_fusion.networks.unet import UNet

        return UNet


class TransformerBaselineTrainer(BaselineTrainer):
    """AdamW with linear warm-up then poly decay, the recipe of nnU-Net's own transformer (Primus) trainers."""

    adamw_lr: float = 3e-4
    adamw_weight_decay: float = 5e-2
    warmup_fraction: float = 0.05  # Primus: 50 of 1000 epochs

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = self.adamw_lr
        self.weight_decay = self.adamw_weight_decay

    @property
    def warmup_epochs(self) -> int:
        return max(1, round(self.warmup_fraction * self.num_epochs))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay,
                                      betas=(0.9, 0.98), fused=self.device.type == "cuda")
        self.print_to_log_file(f"AdamW (lr {self.initial_lr}, weight decay {self.weight_decay}), "
                               f"{self.warmup_epochs} warm-up epochs, then poly decay")
        return optimizer, WarmupPolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, self.warmup_epochs)


class nnUNetTrainerSwinUNet(TransformerBaselineTrainer):
    """The paper's "SwinUNet": Swin-Unet (Swin-T); ImageNet weights from ``nnUNet_SwinUNet_checkpoint``."""

    checkpoint_env = SWINUNET_CHECKPOINT_ENV

    @classmethod
    def network_class(cls) -> type[nn.Module]:
        return _import_network("swin_unet", "SwinUNet")

    def read_pretrained(self, checkpoint: str) -> object:
        from nnunet_medsam_fusion.networks.pretrained import read_swin_checkpoint

        return read_swin_checkpoint(checkpoint)

    def load_pretrained(self, network: nn.Module, weights: object) -> list[str]:
        from nnunet_medsam_fusion.networks.pretrained import load_swin_weights

        return load_swin_weights(network, weights)


class nnUNetTrainerTransUNet(TransformerBaselineTrainer):
    """The paper's "TransUNet": R50-ViT-B/16; ImageNet-21k weights from ``nnUNet_TransUNet_checkpoint``."""

    checkpoint_env = TRANSUNET_CHECKPOINT_ENV

    @classmethod
    def network_class(cls) -> type[nn.Module]:
        return _import_network("transunet", "TransUNet")

    def read_pretrained(self, checkpoint: str) -> object:
        from nnunet_medsam_fusion.networks.pretrained import read_transunet_npz

        return read_transunet_npz(checkpoint)

    def load_pretrained(self, network: nn.Module, weights: object) -> list[str]:
        from nnunet_medsam_fusion.networks.pretrained import load_transunet_weights

        return load_transunet_weights(network, weights)


def _import_network(module: str, name: str) -> type[nn.Module]:
    """A transformer baseline's class; they need timm, an optional dependency."""
    try:
        imported = importlib.import_module(f"nnunet_medsam_fusion.networks.{module}")
    except ModuleNotFoundError as error:
        if error.name != "timm" and not str(error.name).startswith("timm."):
            raise
        raise ImportError(f"The {name} baseline needs timm, which is not installed: {INSTALL_HINT}.") from error
    return getattr(imported, name)

