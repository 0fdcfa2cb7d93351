"""The fusion trainers under DDP (``nnUNetv2_train ... -num_gpus N``), on CPU with a 2-process gloo group.

nnU-Net's trainer assumes CUDA under DDP (``__init__`` sets ``self.device = cuda:local_rank`` and ``initialize``
wraps the network with ``device_ids=[local_rank]``). So each process builds the trainer under an initialised
process group (``is_ddp`` is then True, as in a real DDP run), sets its device back to the CPU, and repeats the
DDP part of ``nnUNetTrainer.initialize`` on the CPU: the trainer's ``build_network_architecture`` and
``configure_optimizers``, SyncBatchNorm conversion, ``DistributedDataParallel(find_unused_parameters=False)`` as
nnU-Net wraps it, and the trainer's ``_build_loss`` (nnU-Net's Dice with ``ddp=True`` all-gathers in batch-Dice
mode). Two steps of the trainer's own ``train_step`` then run on different data per rank.
"""

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny

from .conftest import load_dataset_json, load_plans, nnunet_env

WORLD_SIZE = 2
STEPS = 2
CPU = torch.device("cpu")


def batch_for(trainer, seed):
    """A 2-case batch (one per rank differs by seed), with one target per deep-supervision scale."""
    generator = torch.Generator().manual_seed(seed)
    patch = list(trainer.configuration_manager.patch_size)
    target = (torch.rand(2, 1, *patch, generator=generator) < 0.1).float()
    data = torch.randn(2, 1, *patch, generator=generator) + 2 * target
    scales = trainer._get_deep_supervision_scales()
    targets = [torch.nn.functional.interpolate(target, scale_factor=tuple(s), mode="nearest") for s in scales]
    return {"data": data, "target": targets, "keys": np.array([f"rank{seed}_a", f"rank{seed}_b"])}


def train_in_ddp(rank: int, root: Path, env: dict, init_file: str, out: str) -> None:
    """One DDP rank: build as nnU-Net does, train two steps, save what the parent checks."""
    os.environ.update(env)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE,
                            timeout=timedelta(seconds=120))
    try:
        torch.manual_seed(rank)  # different initial weights per rank: DDP must start all ranks from rank 0's
        trainer = nnUNetTrainerMedSAM2FusionTiny(load_plans(root), "2d", 0, load_dataset_json(root), CPU)
        assert trainer.is_ddp
        trainer.device, trainer.grad_scaler = CPU, None  # what nnU-Net sets for a CPU run
        network = trainer.build_network_architecture(trainer.plans_manager, trainer.configuration_manager, 1,
                                                     trainer.label_manager.num_segmentation_heads, True)
        trainer.network = network
        trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
        trainer.network = DistributedDataParallel(network, find_unused_parameters=False)
        trainer.loss = trainer._build_loss()
        assert trainer.loss.loss.dc.ddp and trainer.loss.loss.dc.batch_dice

        start = {name: p.detach().clone() for name, p in network.named_parameters()}
        losses = [float(trainer.train_step(batch_for(trainer, 100 * rank + step))["loss"]) for step in range(STEPS)]
        torch.save({
            "start": start,
            "end": {name: p.detach().clone() for name, p in network.named_parameters()},
            "trainable": [name for name, p in network.named_parameters() if p.requires_grad],
            "frozen_with_grad": [name for name, p in network.named_parameters()
                                 if not p.requires_grad and p.grad is not None],
            "reducer_tensors": trainer.network._get_ddp_logging_data()["num_parameter_tensors"],
            "losses": losses,
        }, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_fusion_trainer_trains_under_ddp_with_identical_weights_on_all_ranks(planned_dataset, tmp_path):
    env = nnunet_env(planned_dataset, nnUNet_results=str(tmp_path / "results"))
    env = {k: v for k, v in env.items() if k.startswith("nnUNet_")}
    # Any error, "unused parameters" included, makes spawn raise with the rank's traceback.
    mp.spawn(train_in_ddp, args=(planned_dataset, env, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE,
             join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]

    trainable = set(ranks[0]["trainable"])
    frozen = [name for name in ranks[0]["start"] if name not in trainable]
    assert frozen and all(name.startswith("foundation.") for name in frozen)
    assert not any(name.startswith("foundation.") for name in trainable)
    for result in ranks:
        assert result["reducer_tensors"] == len(trainable)  # DDP's buckets hold the trainable tensors only
        assert result["frozen_with_grad"] == []
        assert all(np.isfinite(result["losses"]))
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank saw its own data

    first, second = ranks
    for name in first["start"]:
        torch.testing.assert_close(first["start"][name], second["start"][name], rtol=0, atol=0)  # rank 0's start
        torch.testing.assert_close(first["end"][name], second["end"][name])  # gradients were averaged
        if name in trainable:
            continue
        torch.testing.assert_close(first["end"][name], first["start"][name], rtol=0, atol=0)  # frozen: unchanged
    changed = [name for name in trainable if not torch.equal(first["end"][name], first["start"][name])]
    assert len(changed) == len(trainable)
