"""The fusion trainers under DDP (``nnUNetv2_train ... -num_gpus N``), on CPU with a 2-process gloo group.

Each process builds the trainer under an initialised process group (``is_ddp`` is then True, as in a real DDP
run) and runs the trainer's own ``initialize`` and ``on_train_start``. nnU-Net assumes CUDA there in two places
only: ``__init__`` sets ``self.device = cuda:local_rank``, and ``initialize`` wraps the network with
``DistributedDataParallel(network, device_ids=[local_rank])``, which a CPU module refuses. The test sets the
device back to the CPU and lets nnU-Net's wrapper call drop ``device_ids``; everything else (batch-size split,
SyncBatchNorm conversion, optimiser, loss with ``ddp=True``, data loaders, plans written by rank 0) is nnU-Net's.
Two steps of the trainer's own ``train_step`` then run on different data per rank.
"""

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from batchgenerators.utilities.file_and_folder_operations import load_json
from torch.nn.parallel import DistributedDataParallel

from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY
from nnunet_medsam_fusion.testing.nnunet_env import load_dataset_json, load_plans, nnunet_env, training_batch
from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2FusionTiny
from nnunet_medsam_fusion.trainers.foundation_fusion import unwrap

WORLD_SIZE = 2
STEPS = 2
CPU = torch.device("cpu")


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
        import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as nnunet_trainer_module

        nnunet_trainer_module.DDP = lambda module, device_ids=None, **kwargs: DistributedDataParallel(module, **kwargs)
        trainer.on_train_start()  # runs the trainer's initialize, then nnU-Net's start-of-training steps
        network = unwrap(trainer.network)
        assert isinstance(trainer.network, DistributedDataParallel)
        assert trainer.loss.loss.dc.ddp and trainer.loss.loss.dc.batch_dice

        start = {name: p.detach().clone() for name, p in network.named_parameters()}
        losses = [float(trainer.train_step(training_batch(trainer, 100 * rank + step, batch_size=2))["loss"])
                  for step in range(STEPS)]
        torch.save({
            "start": start,
            "end": {name: p.detach().clone() for name, p in network.named_parameters()},
            "trainable": [name for name, p in network.named_parameters() if p.requires_grad],
            "frozen_with_grad": [name for name, p in network.named_parameters()
                                 if not p.requires_grad and p.grad is not None],
            "reducer_tensors": trainer.network._get_ddp_logging_data()["num_parameter_tensors"],
            "losses": losses,
            "batch_size": trainer.batch_size,
        }, os.path.join(out, f"rank{rank}.pt"))
        trainer.on_train_end()
    finally:
        dist.destroy_process_group()


def test_fusion_trainer_trains_under_ddp_with_identical_weights_on_all_ranks(planned_dataset, tmp_path):
    env = nnunet_env(planned_dataset, nnUNet_results=str(tmp_path / "results"))
    env = {k: v for k, v in env.items() if k.startswith("nnUNet_")} | {"nnUNet_n_proc_DA": "0"}
    # Any error, "unused parameters" included, makes spawn raise with the rank's traceback.
    mp.spawn(train_in_ddp, args=(planned_dataset, env, str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE,
             join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    plans_batch = load_plans(planned_dataset)["configurations"]["2d"]["batch_size"]
    assert sum(result["batch_size"] for result in ranks) == plans_batch  # nnU-Net split the batch over ranks
    model_folder = next((tmp_path / "results").glob("*/nnUNetTrainerMedSAM2FusionTiny__nnUNetPlans__2d"))
    recorded = load_json(str(model_folder / "plans.json"))["configurations"]["2d"]
    assert recorded[FOUNDATION_KEY]["family"] == "medical_sam2"

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
