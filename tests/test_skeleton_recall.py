"""Skeleton Recall: the tube target against scikit-image, its place in nnU-Net's pipelines, the loss against its
formula, the trainers' wiring, and every Skeleton Recall trainer through nnU-Net's CLI."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from scipy import ndimage
from skimage.morphology import dilation, skeletonize

from nnunet_medsam_fusion.evaluation.commands import evaluate_folders
from nnunet_medsam_fusion.losses import (
    DiceFocalLoss,
    FocalLoss,
    LossWithSkeletonRecall,
    SkeletonTubeTransform,
    SoftSkeletonRecallLoss,
)
from nnunet_medsam_fusion.losses.skeleton_target import label_channel, split_target, with_skeleton_tube
from nnunet_medsam_fusion.testing.nnunet_env import (
    DATASET,
    DATASET_ID,
    load_dataset_json,
    load_plans,
    make_trainer,
    nnunet_env,
    run_cli,
)
from nnunet_medsam_fusion.trainers import (
    nnUNetTrainerFocalDice_SkelRecall,
    nnUNetTrainerMedSAMFusionTiny_SkelRecall,
    nnUNetTrainerSkelRecall,
)


def vessel_like_label(shape, seed, classes=1) -> np.ndarray:
    """Thin, branching, irregular foreground: a band of smoothed noise around zero (classes split by the sign of a
    second noise field)."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    label = (np.abs(field) < 0.25 * field.std()).astype(np.int16)
    if classes == 2:
        label[(label == 1) & (ndimage.gaussian_filter(rng.standard_normal(shape), 4.0) > 0)] = 2
    return label


def reference_tube(label: np.ndarray, classes) -> np.ndarray:
    """The paper's recipe done independently: skeletonise, dilate twice with scikit-image's default footprint
    (the face-connected cross), keep it inside the class."""
    tube = np.zeros_like(label)
    for c in classes:
        mask = label == c
        tube[dilation(dilation(skeletonize(mask))) & mask] = c
    return tube


def nnunet_dice_ce(ignore_label=None) -> DC_and_CE_loss:
    return DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          ignore_label=ignore_label, dice_class=MemoryEfficientSoftDiceLoss)


def reference_recall_loss(logits: torch.Tensor, tube: torch.Tensor, batch_dice: bool, smooth=1e-5) -> float:
    """1 - mean over foreground classes of (sum p_c [tube == c] + smooth) / (sum [tube == c] + smooth), in numpy."""
    p = torch.softmax(logits.double(), 1).numpy()
    t = tube[:, 0].numpy()
    recalls = []
    for c in range(1, p.shape[1]):
        groups = [slice(None)] if batch_dice else [slice(b, b + 1) for b in range(p.shape[0])]
        for g in groups:
            on_tube = t[g] == c
            recalls.append((p[g][:, c][on_tube].sum() + smooth) / (on_tube.sum() + smooth))
    return 1 - float(np.mean(recalls))


@pytest.mark.parametrize("shape,seed", [((48, 56), 0), ((20, 24, 22), 1)])
def test_tube_equals_scikit_image_reference(shape, seed):
    label = vessel_like_label(shape, seed)
    out = SkeletonTubeTransform(classes=[1])(segmentation=torch.from_numpy(label)[None])["segmentation"]
    assert out.shape == (2, *shape) and out.dtype == torch.int16
    np.testing.assert_array_equal(out[0].numpy(), label)
    expected = reference_tube(label, [1])
    assert 20 < (expected > 0).sum() < (label > 0).sum()  # a real skeleton, thinner than the vessels
    np.testing.assert_array_equal(out[1].numpy(), expected)


def test_multi_class_gets_one_tube_per_class_inside_that_class():
    label = vessel_like_label((64, 64), 2, classes=2)
    tube = SkeletonTubeTransform(classes=[1, 2])(segmentation=torch.from_numpy(label)[None])["segmentation"][1]
    np.testing.assert_array_equal(tube.numpy(), reference_tube(label, [1, 2]))
    for c in (1, 2):
        assert (tube == c).sum() > 10
        assert np.all(label[tube.numpy() == c] == c)


def test_ignore_label_gets_no_tube_and_does_not_change_the_loss():
    labels = LabelManager({"background": 0, "vessel": 1, "ignore": 2}, regions_class_order=None)
    label = vessel_like_label((48, 48), 3)
    label[:, :16][label[:, :16] == 0] = 2  # an ignored stripe, as partial annotations have
    transform = SkeletonTubeTransform(labels.foreground_labels)
    target = transform(segmentation=torch.from_numpy(label)[None])["segmentation"][None]
    assert not (target[0, 1][torch.from_numpy(label) == 2]).any()

    loss = LossWithSkeletonRecall(nnunet_dice_ce(ignore_label=2), SoftSkeletonRecallLoss(), weight=1.0)
    logits = torch.randn(1, 2, 48, 48)
    changed = logits.clone()
    changed[:, :, torch.from_numpy(label) == 2] = 10 * torch.randn(2, int((label == 2).sum()))
    torch.testing.assert_close(loss(changed, target.float()), loss(logits, target.float()))


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize("spatial", [(9, 7), (5, 6, 4)])
def test_recall_loss_matches_its_formula(batch_dice, spatial):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, *spatial)
    tube = torch.randint(0, 3, (2, 1, *spatial))
    tube[1][tube[1] == 2] = 0  # class 2 absent from sample 1: recall 1 there (nothing to miss)
    value = SoftSkeletonRecallLoss(batch_dice=batch_dice)(logits, tube)
    assert value.item() == pytest.approx(reference_recall_loss(logits, tube, batch_dice), abs=1e-6)


def test_compound_loss_is_base_plus_weighted_recall_and_needs_the_tube_channel():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 16, 16)
    label = (torch.rand(2, 1, 16, 16) > 0.7).float()
    tube = label * (torch.rand(2, 1, 16, 16) > 0.5)
    base, recall = nnunet_dice_ce(), SoftSkeletonRecallLoss()
    loss = LossWithSkeletonRecall(base, recall, weight=0.7)
    expected = base(logits, label) + 0.7 * recall(logits, tube)
    torch.testing.assert_close(loss(logits, torch.cat((label, tube), 1)), expected)
    with pytest.raises(ValueError, match="SkeletonTubeTransform"):
        loss(logits, label)


@pytest.mark.parametrize("fill", [None, 0, 1])
def test_gradients_are_finite_and_push_probability_onto_the_tube(fill):
    torch.manual_seed(2)
    logits = torch.randn(2, 2, 12, 12, requires_grad=True)
    tube = torch.randint(0, 2, (2, 1, 12, 12)) if fill is None else torch.full((2, 1, 12, 12), fill)
    label = tube.clone()
    loss = LossWithSkeletonRecall(DiceFocalLoss(nnunet_dice_ce().dc, FocalLoss()), SoftSkeletonRecallLoss())
    loss(logits, torch.cat((label, tube), 1).float()).backward()
    assert torch.isfinite(logits.grad).all()
    logits.grad = None
    SoftSkeletonRecallLoss()(logits, tube).backward()
    on_tube = tube[:, 0] == 1
    assert (logits.grad[:, 1][on_tube] < 0).all() and (logits.grad[:, 1][~on_tube] == 0).all()


def test_tube_follows_a_flip_and_nnunets_augmentation():
    label = torch.from_numpy(vessel_like_label((48, 48), 4))[None]
    np.random.seed(0)
    flip = ComposeTransforms([MirrorTransform(allowed_axes=(0,)), SkeletonTubeTransform([1])])
    flipped = [flip(segmentation=label.clone())["segmentation"] for _ in range(4)]
    assert any(torch.equal(out[0], label[0].flip(0)) for out in flipped)  # the flip happened at least once
    for out in flipped:
        np.testing.assert_array_equal(out[1].numpy(), reference_tube(out[0].numpy(), [1]))

    pipeline = with_skeleton_tube(nnUNetTrainer.get_training_transforms(
        (48, 48), (-np.pi, np.pi), None, (0, 1), False), [1])
    assert isinstance(pipeline.transforms[-1], SkeletonTubeTransform)
    torch.manual_seed(0)
    for _ in range(6):
        out = pipeline(image=label.float(), segmentation=label.clone())["segmentation"]
        np.testing.assert_array_equal(out[1].numpy(), reference_tube(out[0].numpy(), [1]))


def test_tube_is_downsampled_with_the_label_to_every_deep_supervision_scale():
    scales = [[1.0, 1.0], [0.5, 0.5], [0.25, 0.25]]
    pipeline = with_skeleton_tube(nnUNetTrainer.get_validation_transforms(scales), [1])
    label = torch.from_numpy(vessel_like_label((48, 48), 5))[None]
    out = pickle.loads(pickle.dumps(pipeline))(segmentation=label)["segmentation"]  # as DA worker processes get it
    assert [tuple(t.shape) for t in out] == [(2, 48, 48), (2, 24, 24), (2, 12, 12)]
    full_tube = torch.from_numpy(reference_tube(label[0].numpy(), [1]))[None, None].float()
    for scaled in out:
        expected = F.interpolate(full_tube, scaled.shape[1:], mode="nearest-exact")[0, 0]
        np.testing.assert_array_equal(scaled[1].numpy(), expected.numpy())
        assert not (scaled[1].bool() & (scaled[0] == 0)).any()  # still inside the label at every scale
    assert [tuple(t.shape) for t in label_channel([o[None] for o in out])] == [(1, 1, 48, 48), (1, 1, 24, 24),
                                                                               (1, 1, 12, 12)]
    with pytest.raises(ValueError, match="before DownsampleSegForDSTransform"):
        SkeletonTubeTransform([1])(segmentation=out)


@pytest.mark.parametrize("trainer_class,base_loss", [
    (nnUNetTrainerSkelRecall, DC_and_CE_loss),
    (nnUNetTrainerFocalDice_SkelRecall, DiceFocalLoss),
    (nnUNetTrainerMedSAMFusionTiny_SkelRecall, DiceFocalLoss),
])
def test_trainer_batches_losses_and_validation_steps(planned_dataset, results, monkeypatch, trainer_class, base_loss):
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    trainer = make_trainer(trainer_class, planned_dataset)
    trainer.initialize()
    reference = make_trainer(nnUNetTrainer, planned_dataset)
    reference.initialize()
    assert isinstance(trainer.loss, DeepSupervisionWrapper) and isinstance(trainer.loss.loss, LossWithSkeletonRecall)
    assert isinstance(trainer.loss.loss.base, base_loss) and trainer.loss.loss.weight == 1.0
    assert trainer.loss.weight_factors == reference.loss.weight_factors  # nnU-Net's deep-supervision weights

    train_loader, val_loader = trainer.get_dataloaders()
    batch = next(train_loader)
    patch = list(trainer.configuration_manager.patch_size)
    expected_shapes = [(trainer.batch_size, 2, *[round(p * s) for p, s in zip(patch, scale, strict=True)])
                       for scale in trainer._get_deep_supervision_scales()]
    assert [tuple(t.shape) for t in batch["target"]] == expected_shapes
    assert batch["target"][0][:, 1].any()  # the tube is there
    label, tube = split_target(batch["target"][0])
    assert not (tube.bool() & (label == 0)).any()

    with torch.no_grad():
        outputs = trainer.network(batch["data"])
        inner = trainer.loss.loss
        per_scale = [w * (inner.base(o, split_target(t)[0]) + inner.recall(o, split_target(t)[1]))
                     for w, o, t in zip(trainer.loss.weight_factors, outputs, batch["target"], strict=True) if w]
        torch.testing.assert_close(trainer.loss(outputs, batch["target"]), sum(per_scale))
    assert np.isfinite(trainer.train_step(batch)["loss"])

    trainer.network.eval()
    val_batch = next(val_loader)
    with torch.no_grad():
        expected_loss = trainer.loss(trainer.network(val_batch["data"]), val_batch["target"]).item()
    step = trainer.validation_step(val_batch)
    assert step["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert step["tp_hard"].shape == (1,)  # one foreground class: the tube was not read as labels
    assert isinstance(trainer.loss, DeepSupervisionWrapper)  # the step put the trainer's loss back


def test_region_based_data_sets_are_refused_with_the_reason(planned_dataset, results):
    dataset_json = load_dataset_json(planned_dataset)
    dataset_json["labels"] = {"background": 0, "vessel": [1, 2], "core": 2}
    dataset_json["regions_class_order"] = [1, 2]
    trainer = nnUNetTrainerSkelRecall(load_plans(planned_dataset), "2d", 0, dataset_json, torch.device("cpu"))
    with pytest.raises(ValueError, match="region-based"):
        trainer._build_loss()


@pytest.mark.slow
def test_skeleton_recall_trainer_trains_and_predicts_through_nnunet(planned_dataset, tmp_path):
    """1 epoch of 2 iterations, end to end, not learning (see the docs): the fused trainer with focal + Dice, the
    most composed loss; the in-process tests above build every combination, nnU-Net's own loss included."""
    trainer = "nnUNetTrainerMedSAM2FusionTiny_SkelRecall_smoke"
    env = nnunet_env(planned_dataset)
    run_cli(["nnUNetv2_train", str(DATASET_ID), "2d", "0", "-tr", trainer, "-device", "cpu"],
            dict(env, nnUNet_n_proc_DA="1"))  # a data-augmentation worker process: the transform is pickled
    model = planned_dataset / "results" / DATASET / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    assert "Skeleton Recall: loss + 1.0" in next(model.glob("training_log*")).read_text()
    out = tmp_path / "pred"
    run_cli(["nnUNetv2_predict", "-i", str(planned_dataset / "raw" / DATASET / "imagesTs"), "-o", str(out), "-d",
             str(DATASET_ID), "-c", "2d", "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    result = evaluate_folders(out, planned_dataset / "raw" / DATASET / "labelsTs",
                              planned_dataset / "raw" / DATASET / "dataset.json")
    assert result.summary["vessel"]["n_rows"] == 2  # both test cases predicted, with the reference's geometry
