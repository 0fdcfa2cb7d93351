import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.utilities.helpers import softmax_helper_dim1

from nnunet_medsam_fusion.losses import DiceFocalLoss, FocalLoss


def nnunet_dice(batch_dice: bool) -> MemoryEfficientSoftDiceLoss:
    """nnU-Net's Dice as its trainer configures it (single process)."""
    return MemoryEfficientSoftDiceLoss(apply_nonlin=softmax_helper_dim1, batch_dice=batch_dice, do_bg=False,
                                       smooth=1e-5, ddp=False)


def reference_focal(logits: np.ndarray, target: np.ndarray, gamma: float, alpha=None, ignore=None) -> float:
    """FL = -alpha_t (1 - p_t)^gamma log p_t, written voxel by voxel in numpy."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    losses = []
    for b, *idx in np.ndindex(target.shape[0], *target.shape[1:]):
        t = target[(b, *idx)]
        if ignore is not None and t == ignore:
            continue
        pt = p[(b, t, *idx)]
        a = 1.0 if alpha is None else alpha[t]
        losses.append(-a * (1 - pt) ** gamma * np.log(pt))
    return float(np.mean(losses))


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 2, 6, 6), (2, 2, 3, 4, 5)])
def test_gamma_zero_without_alpha_is_cross_entropy(shape):
    torch.manual_seed(0)
    logits = torch.randn(shape)
    target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]))
    focal = FocalLoss(gamma=0.0)(logits, target)
    torch.testing.assert_close(focal, F.cross_entropy(logits, target[:, 0]))


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (1.0, (0.25, 0.75)), (3.5, (1.0, 2.0))])
def test_matches_direct_formula(gamma, alpha):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 2, 4, 5)).astype(np.float32) * 3
    target = rng.integers(0, 2, size=(2, 4, 5))
    got = FocalLoss(gamma, alpha)(torch.from_numpy(logits), torch.from_numpy(target)[:, None])
    assert got.item() == pytest.approx(reference_focal(logits, target, gamma, alpha), rel=1e-5)


def test_ignore_label_voxels_contribute_nothing():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(1, 2, 6, 6)).astype(np.float32)
    target = rng.integers(0, 3, size=(1, 6, 6))  # 2 is the ignore label
    got = FocalLoss(2.0, ignore_index=2)(torch.from_numpy(logits), torch.from_numpy(target)[:, None])
    assert got.item() == pytest.approx(reference_focal(logits, target, 2.0, ignore=2), rel=1e-5)
    all_ignored = FocalLoss(2.0, ignore_index=2)(torch.from_numpy(logits), torch.full((1, 1, 6, 6), 2))
    assert all_ignored.item() == 0.0


def test_focusing_downweights_easy_voxels():
    logits = torch.tensor([[[[4.0, 0.2]], [[-4.0, 0.0]]]])  # voxel 0 easy background, voxel 1 hard
    target = torch.zeros(1, 1, 1, 2, dtype=torch.long)
    ce = F.cross_entropy(logits, target[:, 0], reduction="none")[0, 0]
    fl = torch.stack([FocalLoss(2.0)(logits[..., i:i + 1], target[..., i:i + 1]) for i in range(2)])
    assert (fl / ce)[0] < 1e-6 < (fl / ce)[1]


@pytest.mark.parametrize("fill", [0, 1])
def test_gradients_finite_on_single_class_batches(fill):
    logits = (torch.randn(2, 2, 8, 8) * 20).requires_grad_()
    target = torch.full((2, 1, 8, 8), fill)
    dice = nnunet_dice(batch_dice=True)
    loss = DiceFocalLoss(dice, FocalLoss(2.0))(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_dice_focal_is_weighted_sum_and_masks_ignore_label():
    torch.manual_seed(3)
    logits = torch.randn(2, 2, 8, 8)
    target = torch.randint(0, 3, (2, 1, 8, 8))
    dice = nnunet_dice(batch_dice=False)
    focal = FocalLoss(2.0, ignore_index=2)
    combined = DiceFocalLoss(dice, focal, weight_dice=0.5, weight_focal=2.0, ignore_label=2)(logits, target)
    mask = target != 2
    expected = 0.5 * dice(logits, torch.where(mask, target, 0), loss_mask=mask) + 2.0 * focal(logits, target)
    torch.testing.assert_close(combined, expected)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=(1.0, -0.5))
    with pytest.raises(ValueError, match="one weight per class"):
        FocalLoss(alpha=(1.0, 1.0, 1.0))(torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
