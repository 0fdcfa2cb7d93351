"""Bad input to the trainers and the fused network: a clear error, or (where the rule makes it valid) it works.

The failure modes and the tests that check them are listed in docs/failure_modes.md.
"""

import dataclasses
import os

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion import trainers
from nnunet_medsam_fusion.foundation import CheckpointError
from nnunet_medsam_fusion.foundation.checkpoints import read_state_dict
from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY
from nnunet_medsam_fusion.testing.nnunet_env import load_dataset_json, load_plans, make_trainer
from nnunet_medsam_fusion.trainer_table import DEMO, EPOCHS, SWIN_DEMO
from nnunet_medsam_fusion.trainers import (
    nnUNetTrainerFocalDice,
    nnUNetTrainerMedSAM2FusionTiny,
    nnUNetTrainerMedSAMFusionTiny,
)
from nnunet_medsam_fusion.trainers.base import (
    AUGMENTATION_MAX_BLUR_SIGMA,
    PARTIAL_SUFFIX,
    check_patch_trains,
    latest_checkpoint_interval,
    nnUNetTrainerPluginBase,
)

CPU = torch.device("cpu")
TINY_FUSION_TRAINERS = [nnUNetTrainerMedSAMFusionTiny, nnUNetTrainerMedSAM2FusionTiny]


def initialized(trainer_class, root):
    trainer = make_trainer(trainer_class, root)
    trainer.initialize()
    return trainer


def batch_for(trainer, keys, bad_value=None, bad_case=None):
    """A training batch as nnU-Net's loader delivers it: CPU data, one target per deep-supervision scale."""
    generator = torch.Generator().manual_seed(0)
    patch = list(trainer.configuration_manager.patch_size)
    data = torch.randn(len(keys), 1, *patch, generator=generator)
    if bad_value is not None:
        data[bad_case, 0, patch[0] // 2, 3] = bad_value
    target = (torch.rand(len(keys), 1, *patch, generator=generator) < 0.1).float()
    scales = trainer._get_deep_supervision_scales()
    targets = [torch.nn.functional.interpolate(target, scale_factor=tuple(s), mode="nearest") for s in scales]
    return {"data": data, "target": targets, "keys": np.array(keys)}


def weights(trainer):
    return {k: v.clone() for k, v in trainer.network.state_dict().items()}


def test_every_trainer_of_the_package_gets_the_checks():
    ours = [getattr(trainers, name) for name in trainers.__all__]  # nnUNetTrainer_demo too: its schedule is ours
    assert ours and all(issubclass(trainer, nnUNetTrainerPluginBase) for trainer in ours)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_patch_axis_nnunets_augmentation_cannot_blur_is_refused(depth):
    """The rule is nnU-Net's own augmentation: its Gaussian blur at the largest sigma it draws fails on an axis of
    1-3 voxels, and the check refuses exactly those patches."""
    blur = GaussianBlurTransform(blur_sigma=(AUGMENTATION_MAX_BLUR_SIGMA, AUGMENTATION_MAX_BLUR_SIGMA),
                                 synchronize_channels=False, synchronize_axes=False, p_per_channel=1)
    image = torch.rand(1, depth, 48, 48)
    try:
        blur(image=image)
        blurred = True
    except RuntimeError:
        blurred = False
    assert blurred == (depth >= 4)
    if blurred:
        check_patch_trains("nnUNetTrainerFocalDice", "3d_fullres", (depth, 48, 48))
    else:
        with pytest.raises(ValueError, match=rf"axis of {depth} voxel.*train the 2d configuration"):
            check_patch_trains("nnUNetTrainerFocalDice", "3d_fullres", (depth, 48, 48))


@pytest.mark.parametrize("trainer_class", [nnUNetTrainerFocalDice, nnUNetTrainerMedSAMFusionTiny])
def test_a_patch_of_two_slices_is_refused_before_any_output(planned_dataset, results, trainer_class):
    plans = load_plans(planned_dataset)
    plans["configurations"]["3d_fullres"]["patch_size"] = [2, 48, 48]  # what nnU-Net plans for 2-slice volumes
    with pytest.raises(ValueError, match=r"\[2, 48, 48\].*nnUNetv2_train DATASET 2d FOLD"):
        trainer_class(plans, "3d_fullres", 0, load_dataset_json(planned_dataset), CPU)
    assert not results.exists()


def nnunet_latest_checkpoint_epochs(num_epochs: int, save_every: int) -> list[int]:
    """The epochs after which nnU-Net writes checkpoint_latest.pth (nnUNetTrainer.on_epoch_end's condition; the
    last epoch writes checkpoint_final.pth instead)."""
    return [epoch for epoch in range(num_epochs) if (epoch + 1) % save_every == 0 and epoch != num_epochs - 1]


@pytest.mark.parametrize("num_epochs", sorted({s.epochs for s in (*EPOCHS.values(), DEMO, SWIN_DEMO)} | {1000}))
def test_short_schedules_write_a_latest_checkpoint_often_enough(num_epochs):
    """--c resumes from checkpoint_latest.pth: an interrupt loses at most a 20th of the schedule (one epoch of a
    short one), where nnU-Net's 50-epoch interval wrote none in schedules of 50 epochs or less; 1000 epochs keep
    nnU-Net's interval."""
    interval = latest_checkpoint_interval(num_epochs, 50)
    saved = nnunet_latest_checkpoint_epochs(num_epochs, interval)
    gaps = np.diff([-1, *saved, num_epochs - 1])  # epochs trained again after an interrupt just before a save
    assert gaps.max() <= max(1, num_epochs // 20)
    if num_epochs == 1000:
        assert interval == 50


def test_truncated_fold_checkpoint_fails_in_nnunets_predictor_as_documented(tmp_path):
    """nnU-Net's own behaviour, not changed here: docs/failure_modes.md quotes its message and says what it means."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    (tmp_path / "fold_0").mkdir()
    (tmp_path / "dataset.json").write_text("{}")
    (tmp_path / "plans.json").write_text("{}")
    torch.save({"network_weights": {"weight": torch.zeros(100_000)}, "trainer_name": "nnUNetTrainer"},
               tmp_path / "whole.pth")
    whole = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "fold_0" / "checkpoint_final.pth").write_bytes(whole[:len(whole) // 2])
    with pytest.raises(RuntimeError, match="PytorchStreamReader failed reading zip archive: failed finding central"):
        nnUNetPredictor(device=CPU).initialize_from_trained_model_folder(str(tmp_path), use_folds=(0,))


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_batch_is_refused_naming_the_case_and_the_fix(planned_dataset, results, bad_value):
    trainer = initialized(nnUNetTrainerFocalDice, planned_dataset)
    before = weights(trainer)
    batch = batch_for(trainer, ["case_000", "case_007"], bad_value, bad_case=1)
    with pytest.raises(ValueError, match=r"\['case_007'\].*verify_dataset_integrity") as error:
        trainer.train_step(batch)
    assert "case_000" not in str(error.value)
    after = weights(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing trained on the bad batch


def test_finite_batch_trains(planned_dataset, results):
    trainer = initialized(nnUNetTrainerFocalDice, planned_dataset)
    before = weights(trainer)
    loss = trainer.train_step(batch_for(trainer, ["case_000", "case_007"]))["loss"]
    assert np.isfinite(loss)
    after = weights(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def failing_save(real_save):
    """torch.save that writes half a checkpoint, then fails as a full disk or a kill would."""

    def save(obj, filename, *args, **kwargs):
        real_save(obj, filename, *args, **kwargs)
        with open(filename, "r+b") as file:
            file.truncate(os.path.getsize(filename) // 2)
        raise OSError(28, "No space left on device")

    return save


@pytest.mark.parametrize("trainer_class,keeps_previous", [
    (nnUNetTrainerFocalDice, True),
    (nnUNetTrainer, False),  # nnU-Net's own save: the failure this guards against is real
])
def test_failed_checkpoint_write_keeps_the_previous_checkpoint(planned_dataset, results, monkeypatch,
                                                                trainer_class, keeps_previous):
    trainer = initialized(trainer_class, planned_dataset)
    path = os.path.join(trainer.output_folder, "checkpoint_latest.pth")
    trainer.save_checkpoint(path)
    previous = open(path, "rb").read()
    files = sorted(os.listdir(trainer.output_folder))

    trainer.current_epoch = 7
    monkeypatch.setattr(torch, "save", failing_save(torch.save))
    with pytest.raises(OSError, match="No space left"):
        trainer.save_checkpoint(path)
    monkeypatch.undo()

    assert (open(path, "rb").read() == previous) is keeps_previous
    if keeps_previous:
        assert sorted(os.listdir(trainer.output_folder)) == files  # no partial file left behind
        assert not any(name.endswith(PARTIAL_SUFFIX) for name in files)


def test_atomic_checkpoint_is_nnunets_and_loads(planned_dataset, results):
    trainer = initialized(nnUNetTrainerFocalDice, planned_dataset)
    trainer.current_epoch = 3
    path = os.path.join(trainer.output_folder, "checkpoint_best.pth")
    trainer.save_checkpoint(path)
    assert not os.path.exists(path + PARTIAL_SUFFIX)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["current_epoch"] == 4 and checkpoint["trainer_name"] == "nnUNetTrainerFocalDice"
    resumed = initialized(nnUNetTrainerFocalDice, planned_dataset)
    resumed.load_checkpoint(path)
    assert resumed.current_epoch == 4
    for key, value in trainer.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[key], value)


def fusion_network(trainer_class, root, num_input_channels=1, patch_size=None):
    """The network ``nnUNetv2_predict`` would build from plans (optionally re-planned for another patch size)."""
    plans = load_plans(root)
    configuration = plans["configurations"]["2d"]
    spec = dataclasses.replace(trainer_class.foundation_spec(None), intensity_window=(-2.0, 4.0))
    configuration[FOUNDATION_KEY] = spec.to_dict()
    if patch_size is not None:  # the topology nnU-Net's planner derives for this patch
        _, pools, kernels, planned, _ = get_pool_and_conv_props([1.0, 1.0], patch_size, 4, 999999)
        assert list(planned) == list(patch_size)
        arch = configuration["architecture"]["arch_kwargs"]
        n = len(pools)
        arch.update(n_stages=n, features_per_stage=[min(32 * 2 ** i, 512) for i in range(n)],
                    kernel_sizes=[list(k) for k in kernels], strides=[list(p) for p in pools],
                    n_conv_per_stage=[2] * n, n_conv_per_stage_decoder=[2] * (n - 1))
        configuration["patch_size"] = list(patch_size)
    manager = PlansManager(plans)
    torch.manual_seed(0)
    return trainer_class.build_network_architecture(manager, manager.get_configuration("2d"), num_input_channels, 2)


@pytest.mark.parametrize("trainer_class", TINY_FUSION_TRAINERS)
def test_two_channel_images_foundation_sees_channel_0_only(planned_dataset, trainer_class):
    network = fusion_network(trainer_class, planned_dataset, num_input_channels=2).eval()
    x = torch.randn(2, 2, 64, 64)
    other_channel_1 = x.clone()
    other_channel_1[:, 1] = torch.randn(2, 64, 64)
    other_channel_0 = x.clone()
    other_channel_0[:, 0] = torch.randn(2, 64, 64)
    with torch.no_grad():
        features = network.foundation(x)
        for a, b in zip(features, network.foundation(other_channel_1), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert any(not torch.allclose(a, b) for a, b in zip(features, network.foundation(other_channel_0),
                                                              strict=True))
        output = network(x)
        assert output[0].shape == (2, 2, 64, 64)
        assert not torch.allclose(output[0], network(other_channel_1)[0])  # nnU-Net's encoder sees channel 1


@pytest.mark.parametrize("patch_size", [(40, 56), (24, 24), (96, 80)])
@pytest.mark.parametrize("trainer_class", TINY_FUSION_TRAINERS)
def test_any_patch_size_fits_the_foundation_encoder(planned_dataset, trainer_class, patch_size):
    network = fusion_network(trainer_class, planned_dataset, patch_size=patch_size)
    output = network(torch.randn(2, 1, *patch_size))
    assert output[0].shape == (2, 2, *patch_size)
    output[0].mean().backward()
    assert all(p.grad is not None for p in network.fusions.parameters() if p.requires_grad)


class _RunsCodeWhenUnpickled:
    """A pickle payload that creates a folder when loaded with full unpickling."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_foreign_checkpoint_never_unpickles_code(tmp_path):
    path, marker = tmp_path / "medsam_vit_b.pth", tmp_path / "code_ran"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1), "x": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="Refused to read .*could run code"):
        read_state_dict(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: full unpickling runs it
    assert marker.is_dir()


def test_region_based_data_set_is_refused_by_focal_loss(planned_dataset, results):
    dataset_json = load_dataset_json(planned_dataset)
    dataset_json["labels"] = {"background": 0, "vessel": [1, 2], "core": 2}
    dataset_json["regions_class_order"] = [1, 2]
    trainer = nnUNetTrainerFocalDice(load_plans(planned_dataset), "2d", 0, dataset_json, CPU)
    assert trainer.label_manager.has_regions
    with pytest.raises(ValueError, match="region-based training.*nnUNetTrainer"):
        trainer._build_loss()
