"""ImageNet weights for the baselines, in the files their reference code bases start from.

* Swin-Unet: ``swin_tiny_patch4_window7_224.pth`` of Microsoft's Swin Transformer release, ``{"model": sd}``
  with the official key names. As the reference's ``SwinUnet.load_from`` does, it initialises the encoder and,
  mirrored, the decoder's Swin blocks (official ``layers.k.blocks`` -> ``layers_up.(3-k).blocks``); the
  patch expandings, skip linears, ``norm_up`` and the output conv start from scratch.
* TransUNet: ``R50+ViT-B_16.npz`` of Google's ViT release (ImageNet-21k), read as the reference's
  ``VisionTransformer.load_from`` reads it: ResNet, patch embedding, position embedding (class token dropped,
  grid interpolated to the patch size) and the 12 ViT blocks; the decoder starts from scratch.

Every key and shape is checked against the reference layout before anything is copied, so a wrong or
truncated file fails with an error naming what was found and which variable to set, instead of loading a part
silently. Files are read without running code: ``torch.load(weights_only=True)``, ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nnunet_medsam_fusion.settings import (
    SWINUNET_CHECKPOINT_ENV,
    TRANSUNET_CHECKPOINT_ENV,
    CheckpointFileError,
    check_checkpoint_file,
)
from nnunet_medsam_fusion.state_dicts import short_list, state_dict_problems

SWIN_FILE = "swin_tiny_patch4_window7_224.pth (Swin-T, ImageNet-1k, github.com/microsoft/Swin-Transformer)"
TRANSUNET_FILE = ("R50+ViT-B_16.npz (ViT-B/16 hybrid, ImageNet-21k, storage.googleapis.com/vit_models/"
                  "imagenet21k/R50+ViT-B_16.npz, the file TransUNet's README names)")
# Entries of the official files that the segmentation networks do not use: classifier heads, and Swin's
# buffers that follow from the window size (recomputed by the network).
SWIN_UNUSED = re.compile(r"^head\.|\.relative_position_index$|\.attn_mask$")
NPZ_UNUSED = re.compile(r"^(head|pre_logits)/|^cls$")


class PretrainedWeightsError(ValueError):
    """A pretrained file that does not hold the weights a baseline needs."""


class PretrainedFileError(PretrainedWeightsError, CheckpointFileError):
    """The path names no usable file: the same refusal as for every checkpoint variable."""


# ---------------------------------------------------------------------------------------------------- Swin-Unet
def read_swin_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The official Swin-T state dict from ``path``, every key and shape checked (unused entries dropped)."""
    path = check_checkpoint_file(path, SWINUNET_CHECKPOINT_ENV, PretrainedFileError)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise PretrainedWeightsError(
            f"Refused to read {path} ({SWINUNET_CHECKPOINT_ENV}): it stores pickled Python objects beyond tensors "
            f"({str(error).splitlines()[-1][:200]}), and loading them could run code. Use {SWIN_FILE} as "
            "published.") from error
    except Exception as error:  # truncated downloads, other formats
        raise PretrainedWeightsError(
            f"Could not read {path} ({SWINUNET_CHECKPOINT_ENV}) as a PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error)[:300]}). The file may be truncated; download {SWIN_FILE} again.") from error
    state = loaded.get("model") if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        found = f"a dict with keys {short_list(sorted(map(str, loaded)))}" if isinstance(loaded, dict) else \
            f"a {type(loaded).__name__}"
        raise PretrainedWeightsError(
            f"{path} ({SWINUNET_CHECKPOINT_ENV}) holds {found}; the official Swin release stores "
            f'{{"model": state_dict}}. Set {SWINUNET_CHECKPOINT_ENV} to {SWIN_FILE}.')
    state = {key: value for key, value in state.items() if not SWIN_UNUSED.search(key)}
    _check_layout(state, swin_reference_shapes(), path, SWINUNET_CHECKPOINT_ENV, SWIN_FILE, _describe_swin)
    return state


def swin_reference_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official Swin-T checkpoint (without head and buffers), from our encoder at 224 x 224."""
    from nnunet_medsam_fusion.networks.swin_unet import SwinUNet

    with torch.device("meta"):
        reference = SwinUNet(3, 2, (224, 224))
    return {swin_official_key(key): tuple(value.shape) for key, value in reference.state_dict().items()
            if key.startswith(("patch_embed.", "layers.", "norm."))}


def swin_official_key(key: str) -> str:
    """Our (timm) encoder key -> the official one: timm's stage i starts with the merging of official layer i-1."""
    return re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key)


def load_swin_weights(network: nn.Module, state: dict[str, Tensor]) -> list[str]:
    """Copy a checked official Swin-T state into a SwinUNet: encoder, and the mirrored decoder blocks.

    Window-dependent tables are resized where the patch size shrinks a window (timm's
    ``resize_rel_pos_bias_table``); the patch embedding is adapted to the input channels when they are not 3
    (timm's ``adapt_input_conv``). Returns the network keys that were loaded.
    """
    from timm.layers import resize_rel_pos_bias_table
    from timm.models import adapt_input_conv

    targets = network.state_dict()
    loaded = {}
    for key in targets:
        if key.startswith(("patch_embed.", "layers.", "norm.")):
            source = swin_official_key(key)
        elif match := re.match(r"^layers_up\.(\d+)\.blocks\.(.*)$", key):
            source = f"layers.{len(network.layers) - 1 - int(match.group(1))}.blocks.{match.group(2)}"
        else:
            continue  # decoder parts the reference also starts from scratch
        value = state[source]
        if key.endswith("relative_position_bias_table") and value.shape != targets[key].shape:
            window = network.get_submodule(key[: -len(".relative_position_bias_table")]).window_size
            value = resize_rel_pos_bias_table(value, new_window_size=window, new_bias_shape=targets[key].shape)
        if key == "patch_embed.proj.weight" and value.shape[1] != targets[key].shape[1]:
            value = adapt_input_conv(targets[key].shape[1], value)
        loaded[key] = value
    _load(network, loaded)
    return sorted(loaded)


def _describe_swin(state: dict) -> str:
    blocks = {}
    for key in state:
        if match := re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.", key):
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    width = tuple(state["patch_embed.proj.weight"].shape)[0] if "patch_embed.proj.weight" in state else "?"
    depths = [len(blocks[level]) for level in sorted(blocks)]
    names = {(96, (2, 2, 6, 2)): "Swin-T", (96, (2, 2, 18, 2)): "Swin-S", (128, (2, 2, 18, 2)): "Swin-B",
             (192, (2, 2, 18, 2)): "Swin-L"}
    return f"a Swin state dict with embedding {width} and depths {depths} ({names.get((width, tuple(depths)), '?')})"


# ---------------------------------------------------------------------------------------------------- TransUNet
def read_transunet_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of Google's ``R50+ViT-B_16.npz`` from ``path``, every key and shape checked."""
    path = check_checkpoint_file(path, TRANSUNET_CHECKPOINT_ENV, PretrainedFileError)
    if not zipfile.is_zipfile(path):  # np.load would take anything else for a pickle
        raise PretrainedWeightsError(
            f"Could not read {path} ({TRANSUNET_CHECKPOINT_ENV}) as a NumPy .npz archive: it is not a zip file. The "
            f"file may be truncated; download {TRANSUNET_FILE} again.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as error:  # object arrays need pickle
        raise PretrainedWeightsError(
            f"Refused to read {path} ({TRANSUNET_CHECKPOINT_ENV}): it holds pickled Python objects ({error}), and "
            f"loading them could run code. Use {TRANSUNET_FILE} as published.") from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise PretrainedWeightsError(
            f"Could not read {path} ({TRANSUNET_CHECKPOINT_ENV}) as a NumPy .npz archive ({type(error).__name__}: "
            f"{str(error)[:300]}). The file may be truncated; download {TRANSUNET_FILE} again.") from error
    if not arrays:
        raise PretrainedWeightsError(f"{path} ({TRANSUNET_CHECKPOINT_ENV}) holds no arrays. Use {TRANSUNET_FILE}.")
    arrays = {key: value for key, value in arrays.items() if not NPZ_UNUSED.search(key)}
    expected = transunet_reference_shapes()
    posemb = arrays.get(POSEMB)
    if posemb is not None and posemb.ndim == 3 and posemb.shape[0] == 1 and posemb.shape[2] == 768:
        expected[POSEMB] = posemb.shape  # any token count: checked as a square grid (+ class token) below
        tokens = posemb.shape[1] - 1
        if round(tokens**0.5) ** 2 != tokens:
            raise PretrainedWeightsError(
                f"{path} ({TRANSUNET_CHECKPOINT_ENV}): the position embedding has {posemb.shape[1]} tokens, not a "
                f"class token plus a square grid. Use {TRANSUNET_FILE}.")
    _check_layout(arrays, expected, path, TRANSUNET_CHECKPOINT_ENV, TRANSUNET_FILE, _describe_npz)
    return arrays


POSEMB = "Transformer/posembed_input/pos_embedding"
ATTENTION = "MultiHeadDotProductAttention_1"


def transunet_reference_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``R50+ViT-B_16.npz`` without its classifier (position embedding: the 224 x 224 one).

    GroupNorm scales and biases are (C,) here; files that store them as (1, 1, 1, C) are accepted too.
    """
    from nnunet_medsam_fusion.networks.transunet import HIDDEN, MLP_DIM, RESNET_LAYERS, VIT_DEPTH, VIT_HEADS

    head = HIDDEN // VIT_HEADS
    shapes: dict[str, tuple[int, ...]] = {
        "conv_root/kernel": (7, 7, 3, 64), "gn_root/scale": (64,), "gn_root/bias": (64,),
        "embedding/kernel": (1, 1, 1024, HIDDEN), "embedding/bias": (HIDDEN,), POSEMB: (1, 197, HIDDEN),
        "Transformer/encoder_norm/scale": (HIDDEN,), "Transformer/encoder_norm/bias": (HIDDEN,),
    }
    cin = 64
    for stage, units in enumerate(RESNET_LAYERS):
        mid, cout = 64 * 2**stage, 256 * 2**stage
        for unit in range(1, units + 1):
            prefix = f"block{stage + 1}/unit{unit}/"
            cin_unit = cin if unit == 1 else cout
            for index, (kernel, channels_in, channels_out) in enumerate(
                    [(1, cin_unit, mid), (3, mid, mid), (1, mid, cout)], start=1):
                shapes[f"{prefix}conv{index}/kernel"] = (kernel, kernel, channels_in, channels_out)
                shapes[f"{prefix}gn{index}/scale"] = shapes[f"{prefix}gn{index}/bias"] = (channels_out,)
            if unit == 1:
                shapes[f"{prefix}conv_proj/kernel"] = (1, 1, cin, cout)
                shapes[f"{prefix}gn_proj/scale"] = shapes[f"{prefix}gn_proj/bias"] = (cout,)
        cin = cout
    for block in range(VIT_DEPTH):
        prefix = f"Transformer/encoderblock_{block}/"
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            shapes[f"{prefix}{norm}/scale"] = shapes[f"{prefix}{norm}/bias"] = (HIDDEN,)
        for name in ("query", "key", "value"):
            shapes[f"{prefix}{ATTENTION}/{name}/kernel"] = (HIDDEN, VIT_HEADS, head)
            shapes[f"{prefix}{ATTENTION}/{name}/bias"] = (VIT_HEADS, head)
        shapes[f"{prefix}{ATTENTION}/out/kernel"] = (VIT_HEADS, head, HIDDEN)
        shapes[f"{prefix}{ATTENTION}/out/bias"] = (HIDDEN,)
        shapes[f"{prefix}MlpBlock_3/Dense_0/kernel"] = (HIDDEN, MLP_DIM)
        shapes[f"{prefix}MlpBlock_3/Dense_0/bias"] = (MLP_DIM,)
        shapes[f"{prefix}MlpBlock_3/Dense_1/kernel"] = (MLP_DIM, HIDDEN)
        shapes[f"{prefix}MlpBlock_3/Dense_1/bias"] = (HIDDEN,)
    return shapes


def load_transunet_weights(network: nn.Module, arrays: dict[str, np.ndarray]) -> list[str]:
    """Copy checked ``R50+ViT-B_16.npz`` arrays into a TransUNet's ResNet and ViT; returns the keys loaded.

    Conv kernels go from HWIO to OIHW, dense kernels are transposed, query/key/value are fused into timm's
    ``qkv``; the position embedding loses its class token and is interpolated (bilinear, timm's
    ``resample_abs_pos_embed``; TransUNet uses scipy's order-1 zoom) to the patch size's token grid.
    """
    from timm.layers import resample_abs_pos_embed
    from timm.models import adapt_input_conv

    def tensor(key: str) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(arrays[key])).float()

    def conv(key: str) -> Tensor:
        return tensor(key).permute(3, 2, 0, 1)

    def vector(key: str) -> Tensor:
        return tensor(key).reshape(-1)

    loaded: dict[str, Tensor] = {}

    def norm(target: str, source: str) -> None:
        loaded[f"{target}.weight"], loaded[f"{target}.bias"] = vector(f"{source}/scale"), vector(f"{source}/bias")

    stem = conv("conv_root/kernel")
    channels = network.resnet.stem.conv.in_channels
    loaded["resnet.stem.conv.weight"] = stem if channels == 3 else adapt_input_conv(channels, stem)
    norm("resnet.stem.norm", "gn_root")
    for s, stage in enumerate(network.resnet.stages):
        for u, _ in enumerate(stage.blocks):
            target, source = f"resnet.stages.{s}.blocks.{u}", f"block{s + 1}/unit{u + 1}"
            for r in (1, 2, 3):
                loaded[f"{target}.conv{r}.weight"] = conv(f"{source}/conv{r}/kernel")
                norm(f"{target}.norm{r}", f"{source}/gn{r}")
            if u == 0:
                loaded[f"{target}.downsample.conv.weight"] = conv(f"{source}/conv_proj/kernel")
                norm(f"{target}.downsample.norm", f"{source}/gn_proj")
    loaded["vit.patch_embed.proj.weight"] = conv("embedding/kernel")
    loaded["vit.patch_embed.proj.bias"] = vector("embedding/bias")
    grid = tensor(POSEMB)[:, 1:]  # drop the class token, as TransUNet does
    old = round(grid.shape[1] ** 0.5)
    loaded["vit.pos_embed"] = resample_abs_pos_embed(grid, list(network.grid_size), [old, old], num_prefix_tokens=0,
                                                     interpolation="bilinear", antialias=False)
    for b in range(len(network.vit.blocks)):
        target, source = f"vit.blocks.{b}", f"Transformer/encoderblock_{b}"
        norm(f"{target}.norm1", f"{source}/LayerNorm_0")
        norm(f"{target}.norm2", f"{source}/LayerNorm_2")
        attention = f"{source}/{ATTENTION}"
        qkv = [tensor(f"{attention}/{name}/kernel").flatten(1).t() for name in ("query", "key", "value")]
        loaded[f"{target}.attn.qkv.weight"] = torch.cat(qkv)
        loaded[f"{target}.attn.qkv.bias"] = torch.cat([vector(f"{attention}/{n}/bias") for n in ("query", "key",
                                                                                                "value")])
        loaded[f"{target}.attn.proj.weight"] = tensor(f"{attention}/out/kernel").flatten(0, 1).t()
        loaded[f"{target}.attn.proj.bias"] = vector(f"{attention}/out/bias")
        for index, dense in ((1, "Dense_0"), (2, "Dense_1")):
            loaded[f"{target}.mlp.fc{index}.weight"] = tensor(f"{source}/MlpBlock_3/{dense}/kernel").t()
            loaded[f"{target}.mlp.fc{index}.bias"] = vector(f"{source}/MlpBlock_3/{dense}/bias")
    norm("vit.norm", "Transformer/encoder_norm")
    _load(network, loaded)
    return sorted(loaded)


def _describe_npz(arrays: dict) -> str:
    units = {}
    for key in arrays:
        if match := re.match(r"^block(\d+)/unit(\d+)/", key):
            units.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    blocks = {int(m.group(1)) for key in arrays if (m := re.match(r"^Transformer/encoderblock_(\d+)/", key))}
    width = tuple(arrays["embedding/kernel"].shape)[-1] if "embedding/kernel" in arrays else "?"
    resnet = f"ResNet units {[len(units[b]) for b in sorted(units)]}" if units else "no ResNet"
    return f"a ViT npz with width {width}, {len(blocks)} transformer blocks and {resnet}"


# ---------------------------------------------------------------------------------------------------- shared
def _check_layout(found: dict, expected: dict[str, tuple[int, ...]], path: Path, variable: str,
                  expected_file: str, describe) -> None:
    """Raise naming missing / unexpected keys and shape mismatches; norm vectors may be stored as (1,1,1,C)."""
    def fits(shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
        return shape == want or (len(want) == 1 and shape == (1, 1, 1, want[0]))

    problems = state_dict_problems({key: tuple(value.shape) for key, value in found.items()}, expected, fits)
    if problems:
        raise PretrainedWeightsError(
            f"{path} ({variable}) is not the expected weights file: {'; '.join(problems)}. It looks like "
            f"{describe(found)}. Set {variable} to {expected_file}, or unset it to train from scratch.")


def _load(network: nn.Module, loaded: dict[str, Tensor]) -> None:
    """Copy converted tensors in; every one must land on a parameter of the same shape (a bug otherwise)."""
    targets = network.state_dict()
    wrong = [f"{key}: {tuple(value.shape)} vs {tuple(targets[key].shape)}" if key in targets else key
             for key, value in loaded.items() if key not in targets or value.shape != targets[key].shape]
    if wrong:
        raise RuntimeError(f"Converted pretrained weights do not fit {type(network).__name__}: {short_list(wrong)}")
    with torch.no_grad():
        for key, value in loaded.items():
            targets[key].copy_(value)


