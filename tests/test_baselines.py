"""The paper's baselines (UNet, SwinUNet, TransUNet) as nnU-Net trainers: networks built from real plans, their
sizes, pretrained weights in the official layouts with their errors, and nnU-Net's CLI end to end."""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_medsam_fusion.networks.pretrained import PretrainedWeightsError, read_swin_checkpoint, read_transunet_npz
from nnunet_medsam_fusion.settings import SWINUNET_CHECKPOINT_ENV, TRANSUNET_CHECKPOINT_ENV
from nnunet_medsam_fusion.testing.baselines import REFERENCE_PARAMETERS, train_predict_and_score
from nnunet_medsam_fusion.testing.nnunet_env import DATASET, load_plans, make_trainer
from nnunet_medsam_fusion.trainers.baselines import (
    WarmupPolyLRScheduler,
    nnUNetTrainerSwinUNet,
    nnUNetTrainerTransUNet,
    nnUNetTrainerUNet,
    warmup_poly_lr,
)

TRAINERS = (nnUNetTrainerUNet, nnUNetTrainerSwinUNet, nnUNetTrainerTransUNet)


def build_network(trainer_class, root, patch_size, device=None):
    """The network nnUNetv2_train / nnUNetv2_predict would build, on plans whose 2d patch size is ``patch_size``."""
    plans = load_plans(root)
    plans["configurations"]["2d"]["patch_size"] = list(patch_size)
    manager = PlansManager(plans)
    with torch.device(device or "cpu"):
        return trainer_class.build_network_architecture(manager, manager.get_configuration("2d"), 1, 2, False)


@pytest.mark.parametrize("trainer_class,patch_size", [
    (nnUNetTrainerUNet, (96, 80)),
    (nnUNetTrainerSwinUNet, (96, 80)),  # padded to 96 x 96 inside; 3 x 3 windows at the deepest level
    (nnUNetTrainerSwinUNet, (160, 192)),  # non-square windows (5 x 6) at the deepest level
    (nnUNetTrainerTransUNet, (96, 80)),  # a 6 x 5 token grid
], ids=lambda v: v.__name__ if isinstance(v, type) else "x".join(map(str, v)))
def test_network_keeps_the_patch_size_and_every_parameter_learns(planned_dataset, trainer_class, patch_size):
    torch.manual_seed(0)
    network = build_network(trainer_class, planned_dataset, patch_size).eval()  # eval: no random drop paths
    image = torch.randn(1, 1, *patch_size)
    logits = network(image)
    assert logits.shape == (1, 2, *patch_size)
    target = torch.randint(0, 2, (1, *patch_size))
    F.cross_entropy(logits, target).backward()
    silent = [name for name, p in network.named_parameters() if p.requires_grad and (p.grad is None or
                                                                                    not p.grad.abs().sum() > 0)]
    assert not silent, f"parameters without gradient: {silent[:5]}"


@pytest.mark.parametrize("trainer_class", TRAINERS, ids=lambda c: c.__name__)
def test_parameter_count_is_the_published_one(planned_dataset, trainer_class):
    network = build_network(trainer_class, planned_dataset, (224, 224), device="meta")
    count = sum(p.numel() for p in network.parameters())
    assert count == pytest.approx(REFERENCE_PARAMETERS[trainer_class], rel=0.1)


@pytest.mark.parametrize("trainer_class", TRAINERS, ids=lambda c: c.__name__)
def test_trainer_is_nnunet_without_deep_supervision(planned_dataset, results, trainer_class):
    trainer = make_trainer(trainer_class, planned_dataset)
    trainer.initialize()
    assert not trainer.enable_deep_supervision
    assert not isinstance(trainer.loss, DeepSupervisionWrapper)  # nnU-Net's Dice + CE on one output
    trainer.set_deep_supervision_enabled(True)  # nnU-Net calls it after validation; must not break anything
    patch = trainer.configuration_manager.patch_size
    with torch.no_grad():
        output = trainer.network.eval()(torch.randn(1, 1, *patch))
    assert isinstance(output, torch.Tensor) and output.shape == (1, 2, *patch)
    log = Path(trainer.log_file).read_text()
    assert "trainable parameters" in log
    if trainer_class is not nnUNetTrainerUNet:
        assert "from scratch" in log and trainer_class.checkpoint_env in log
        assert isinstance(trainer.optimizer, torch.optim.AdamW)
    else:
        assert isinstance(trainer.optimizer, torch.optim.SGD)


@pytest.mark.parametrize("trainer_class", TRAINERS, ids=lambda c: c.__name__)
def test_3d_configuration_gets_a_clear_error(planned_dataset, results, trainer_class):
    with pytest.raises(ValueError, match=r"2D network.*nnUNetv2_train DATASET 2d FOLD"):
        make_trainer(trainer_class, planned_dataset, configuration="3d_fullres")


def test_warmup_then_poly_schedule():
    assert warmup_poly_lr(0, 3e-4, 1000, 50) == pytest.approx(3e-4 / 50)
    assert warmup_poly_lr(49, 3e-4, 1000, 50) == pytest.approx(3e-4)
    assert warmup_poly_lr(50, 3e-4, 1000, 50) == pytest.approx(3e-4)
    assert warmup_poly_lr(525, 3e-4, 1000, 50) == pytest.approx(3e-4 * 0.5**0.9)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], 1.0)
    scheduler = WarmupPolyLRScheduler(optimizer, 3e-4, 1000, 50)
    scheduler.step(700)  # what nnU-Net does at an epoch start, also right after --c
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * (1 - 650 / 950) ** 0.9)


# ------------------------------------------------------------------------- pretrained files, official layouts
def official_swin_tiny(generator) -> dict:
    """A random state dict with the keys and shapes of Microsoft's swin_tiny_patch4_window7_224.pth."""
    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    state = {"patch_embed.proj.weight": rand(96, 3, 4, 4), "patch_embed.proj.bias": rand(96),
             "patch_embed.norm.weight": rand(96), "patch_embed.norm.bias": rand(96)}
    for level, heads in enumerate((3, 6, 12, 24)):
        dim, resolution = 96 * 2**level, 56 // 2**level
        for block in range(2):
            p = f"layers.{level}.blocks.{block}."
            state.update({p + "norm1.weight": rand(dim), p + "norm1.bias": rand(dim),
                          p + "attn.relative_position_bias_table": rand(169, heads),
                          p + "attn.relative_position_index": torch.zeros(49, 49, dtype=torch.long),
                          p + "attn.qkv.weight": rand(3 * dim, dim), p + "attn.qkv.bias": rand(3 * dim),
                          p + "attn.proj.weight": rand(dim, dim), p + "attn.proj.bias": rand(dim),
                          p + "norm2.weight": rand(dim), p + "norm2.bias": rand(dim),
                          p + "mlp.fc1.weight": rand(4 * dim, dim), p + "mlp.fc1.bias": rand(4 * dim),
                          p + "mlp.fc2.weight": rand(dim, 4 * dim), p + "mlp.fc2.bias": rand(dim)})
            if block == 1 and resolution > 7:
                state[p + "attn_mask"] = torch.zeros((resolution // 7) ** 2, 49, 49)
        if level < 3:
            p = f"layers.{level}.downsample."
            state.update({p + "reduction.weight": rand(2 * dim, 4 * dim), p + "norm.weight": rand(4 * dim),
                          p + "norm.bias": rand(4 * dim)})
    state.update({"norm.weight": rand(768), "norm.bias": rand(768), "head.weight": rand(1000, 768),
                  "head.bias": rand(1000)})
    return state


def official_r50_vit_b16(rng, keep=None) -> dict:
    """Random arrays with the keys and shapes of Google's R50+ViT-B_16.npz (float16 to keep the file small)."""
    arrays = {"conv_root/kernel": (7, 7, 3, 64), "gn_root/scale": (64,), "gn_root/bias": (64,),
              "embedding/kernel": (1, 1, 1024, 768), "embedding/bias": (768,), "cls": (1, 1, 768),
              "Transformer/posembed_input/pos_embedding": (1, 197, 768), "head/kernel": (768, 21843),
              "head/bias": (21843,), "Transformer/encoder_norm/scale": (768,), "Transformer/encoder_norm/bias": (768,)}
    cin = 64
    for b, units in enumerate((3, 4, 9), start=1):
        mid, cout = 64 * 2 ** (b - 1), 256 * 2 ** (b - 1)
        for u in range(1, units + 1):
            p = f"block{b}/unit{u}/"
            arrays.update({p + "conv1/kernel": (1, 1, cin if u == 1 else cout, mid),
                           p + "conv2/kernel": (3, 3, mid, mid), p + "conv3/kernel": (1, 1, mid, cout)})
            for n, c in (("gn1", mid), ("gn2", mid), ("gn3", cout)):
                arrays.update({p + f"{n}/scale": (c,), p + f"{n}/bias": (c,)})
            if u == 1:
                arrays.update({p + "conv_proj/kernel": (1, 1, cin, cout), p + "gn_proj/scale": (cout,),
                               p + "gn_proj/bias": (cout,)})
        cin = cout
    for i in range(12):
        p = f"Transformer/encoderblock_{i}/"
        a = p + "MultiHeadDotProductAttention_1/"
        for n in ("query", "key", "value"):
            arrays.update({a + f"{n}/kernel": (768, 12, 64), a + f"{n}/bias": (12, 64)})
        arrays.update({a + "out/kernel": (12, 64, 768), a + "out/bias": (768,),
                       p + "LayerNorm_0/scale": (768,), p + "LayerNorm_0/bias": (768,),
                       p + "LayerNorm_2/scale": (768,), p + "LayerNorm_2/bias": (768,),
                       p + "MlpBlock_3/Dense_0/kernel": (768, 3072), p + "MlpBlock_3/Dense_0/bias": (3072,),
                       p + "MlpBlock_3/Dense_1/kernel": (3072, 768), p + "MlpBlock_3/Dense_1/bias": (768,)})
    keys = [k for k in arrays if keep is None or keep(k)]
    return {k: rng.standard_normal(arrays[k], dtype=np.float32).astype(np.float16) for k in keys}


@pytest.fixture(scope="module")
def swin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("swin") / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": official_swin_tiny(torch.Generator().manual_seed(0))}, path)
    return path


def test_swin_unet_starts_from_the_official_swin_t(planned_dataset, results, swin_file, monkeypatch):
    monkeypatch.setenv(SWINUNET_CHECKPOINT_ENV, str(swin_file))
    official = torch.load(swin_file, weights_only=True)["model"]
    trainer = make_trainer(nnUNetTrainerSwinUNet, planned_dataset)
    trainer.initialize()
    net = trainer.network
    assert torch.equal(net.patch_embed.proj.weight, official["patch_embed.proj.weight"])  # 1 channel -> RGB
    assert torch.equal(net.layers[0].blocks[1].attn.qkv.weight, official["layers.0.blocks.1.attn.qkv.weight"])
    # timm's stage k+1 starts with the merging of the official layer k
    assert torch.equal(net.layers[1].downsample.reduction.weight, official["layers.0.downsample.reduction.weight"])
    assert torch.equal(net.norm.weight, official["norm.weight"])
    # the decoder mirrors the encoder as in the reference: layers_up.k <- layers.(3-k)
    assert torch.equal(net.layers_up[1].blocks[0].mlp.fc2.weight, official["layers.2.blocks.0.mlp.fc2.weight"])
    assert torch.equal(net.layers_up[3].blocks[1].attn.relative_position_bias_table,
                       official["layers.0.blocks.1.attn.relative_position_bias_table"])
    # a 64x64 patch shrinks the deepest windows to the 2x2 map: the bias table is resized, not skipped
    assert net.layers[3].blocks[0].attn.relative_position_bias_table.shape == (9, 24)
    assert "loaded from" in Path(trainer.log_file).read_text()


def test_transunet_starts_from_the_official_r50_vit_b16(planned_dataset, results, tmp_path, monkeypatch):
    arrays = official_r50_vit_b16(np.random.default_rng(0))
    np.savez(tmp_path / "R50+ViT-B_16.npz", **arrays)
    monkeypatch.setenv(TRANSUNET_CHECKPOINT_ENV, str(tmp_path / "R50+ViT-B_16.npz"))
    trainer = make_trainer(nnUNetTrainerTransUNet, planned_dataset)
    trainer.initialize()
    net = trainer.network

    def t(key):
        return torch.from_numpy(arrays[key].astype(np.float32))

    assert torch.equal(net.resnet.stem.conv.weight, t("conv_root/kernel").permute(3, 2, 0, 1))
    assert torch.equal(net.resnet.stages[2].blocks[8].norm3.bias, t("block3/unit9/gn3/bias"))
    assert torch.equal(net.resnet.stages[1].blocks[0].downsample.conv.weight,
                       t("block2/unit1/conv_proj/kernel").permute(3, 2, 0, 1))
    a = "Transformer/encoderblock_11/MultiHeadDotProductAttention_1/"
    x = torch.randn(5, 768)  # timm's fused qkv must compute what the separate query/key/value kernels do
    q, k, v = F.linear(x, net.vit.blocks[11].attn.qkv.weight, net.vit.blocks[11].attn.qkv.bias).chunk(3, dim=1)
    assert torch.allclose(k, x @ t(a + "key/kernel").reshape(768, 768) + t(a + "key/bias").reshape(-1), atol=1e-3)
    out = F.linear(x, net.vit.blocks[11].attn.proj.weight)
    assert torch.allclose(out, x @ t(a + "out/kernel").reshape(768, 768), atol=1e-3)
    # position embedding: class token dropped, 14x14 grid interpolated to the 64x64 patch's 4x4 tokens
    grid = t("Transformer/posembed_input/pos_embedding")[0, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2)
    expected = F.interpolate(grid, size=(4, 4), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    assert torch.allclose(net.vit.pos_embed, expected, atol=1e-5)
    assert "loaded from" in Path(trainer.log_file).read_text()


def test_wrong_swin_files_get_errors_naming_the_variable(swin_file, tmp_path):
    official = torch.load(swin_file, weights_only=True)
    with pytest.raises(PretrainedWeightsError, match=f"does not exist.*{SWINUNET_CHECKPOINT_ENV}|"
                                                     f"{SWINUNET_CHECKPOINT_ENV}.*does not exist"):
        read_swin_checkpoint(tmp_path / "missing.pth")

    bigger = copy.deepcopy(official)  # Swin-S: 18 blocks in stage 3
    for block in range(2, 18):
        for key in [k for k in official["model"] if k.startswith("layers.2.blocks.1.")]:
            bigger["model"][key.replace("blocks.1.", f"blocks.{block}.")] = official["model"][key]
    torch.save(bigger, tmp_path / "swin_s.pth")
    with pytest.raises(PretrainedWeightsError, match=r"unexpected keys.*Swin-S.*" + SWINUNET_CHECKPOINT_ENV):
        read_swin_checkpoint(tmp_path / "swin_s.pth")

    torch.save(official["model"], tmp_path / "flat.pth")
    with pytest.raises(PretrainedWeightsError, match=r'\{"model": state_dict\}'):
        read_swin_checkpoint(tmp_path / "flat.pth")

    wrong = copy.deepcopy(official)
    wrong["model"]["norm.weight"] = torch.zeros(1024)
    del wrong["model"]["layers.3.blocks.1.mlp.fc1.bias"]
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(PretrainedWeightsError, match=r"1 missing keys \(layers.3.blocks.1.mlp.fc1.bias\).*"
                                                     r"norm.weight: file \(1024,\) vs expected \(768,\)"):
        read_swin_checkpoint(tmp_path / "wrong.pth")

    (tmp_path / "truncated.pth").write_bytes(swin_file.read_bytes()[:1000])
    with pytest.raises(PretrainedWeightsError, match="truncated"):
        read_swin_checkpoint(tmp_path / "truncated.pth")

    torch.save({"model": official["model"], "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    with pytest.raises(PretrainedWeightsError, match="Refused"):
        read_swin_checkpoint(tmp_path / "pickled.pth")


def test_wrong_transunet_files_get_errors_naming_the_variable(tmp_path, monkeypatch, planned_dataset, results):
    rng = np.random.default_rng(1)
    # R26 (units 2-2-2) with a ViT-L embedding and one transformer block: a small file of a wrong architecture
    arrays = official_r50_vit_b16(rng, keep=lambda k: not re.search(r"unit[3-9]|encoderblock_[1-9]|^head/", k))
    arrays["embedding/kernel"] = np.zeros((1, 1, 1024, 1024), np.float16)
    np.savez(tmp_path / "r26_vit_l.npz", **arrays)
    with pytest.raises(PretrainedWeightsError, match=r"missing keys.*shape mismatches.*embedding/kernel.*"
                                                     r"ResNet units \[2, 2, 2\].*" + TRANSUNET_CHECKPOINT_ENV):
        read_transunet_npz(tmp_path / "r26_vit_l.npz")

    np.savez(tmp_path / "objects.npz", cls=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PretrainedWeightsError, match="Refused"):
        read_transunet_npz(tmp_path / "objects.npz")

    (tmp_path / "not_npz.npz").write_bytes(b"\x00" * 100)
    with pytest.raises(PretrainedWeightsError, match="Could not read"):
        read_transunet_npz(tmp_path / "not_npz.npz")

    # the trainer checks the file before nnU-Net writes anything
    monkeypatch.setenv(TRANSUNET_CHECKPOINT_ENV, str(tmp_path / "r26_vit_l.npz"))
    with pytest.raises(PretrainedWeightsError, match=TRANSUNET_CHECKPOINT_ENV):
        make_trainer(nnUNetTrainerTransUNet, planned_dataset)
    assert not results.exists()


# ------------------------------------------------------------------------- nnU-Net's CLI, end to end
@pytest.mark.slow
def test_baseline_trains_continues_and_predicts_through_nnunet(planned_dataset, tmp_path):
    """One baseline through nnU-Net's commands, on a two-iteration schedule: Swin-Unet, whose AdamW state (shared
    with TransUNet) --c must restore, and whose predictions nnU-Net must write on the references' grid. The three
    networks run nnU-Net's own training loop; the tests above build each network as nnUNetv2_train does and check
    that every parameter learns; benchmarks/baseline_short_runs.py measures their Dice through these commands."""
    trainer = "nnUNetTrainerSwinUNet_smoke"
    train_predict_and_score(planned_dataset, tmp_path, trainer)
    model = tmp_path / "results" / DATASET / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    optimizer = torch.load(model / "checkpoint_final.pth", weights_only=False)["optimizer_state"]
    assert optimizer["state"] and all("exp_avg_sq" in state for state in optimizer["state"].values())  # AdamW's
    raw = planned_dataset / "raw" / DATASET
    for reference in (raw / "labelsTs").glob("*.nii.gz"):
        predicted = sitk.ReadImage(str(tmp_path / "pred" / reference.name))
        assert predicted.GetSize() == sitk.ReadImage(str(reference)).GetSize()
        assert set(np.unique(sitk.GetArrayFromImage(predicted))) <= {0, 1}
