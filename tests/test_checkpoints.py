"""Reading, recognising, validating and loading foundation checkpoints; every bad file gets a clear error."""

import hashlib
import os
import re
from pathlib import Path

import pytest
import torch

from nnunet_medsam_fusion.foundation import (
    CheckpointError,
    CheckpointNotFoundError,
    FoundationSpec,
    build_foundation_encoder,
    describe_checkpoint,
    detect_medsam2_spec,
    load_foundation_weights,
)
from nnunet_medsam_fusion.foundation.checkpoints import checkpoint_kind, file_sha256, read_state_dict
from nnunet_medsam_fusion.foundation.medsam import resize_pos_embed
from nnunet_medsam_fusion.networks.pretrained import read_swin_checkpoint, read_transunet_npz
from nnunet_medsam_fusion.settings import (
    CHECKPOINT_FILES,
    MEDSAM2_CHECKPOINT_ENV,
    MEDSAM_CHECKPOINT_ENV,
    SWINUNET_CHECKPOINT_ENV,
    TRANSUNET_CHECKPOINT_ENV,
    CheckpointFileError,
    checkpoint_path,
)
from nnunet_medsam_fusion.testing.tiny_checkpoints import (
    write_tiny_medsam2_checkpoint,
    write_tiny_medsam_checkpoint,
)

# Frozen image-encoder parameter counts of the real architectures (random init).
REAL_PARAMETER_COUNTS = {"vit_b": 89_670_912, "hiera_t": 27_219_136, "hiera_s": 34_316_992}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One tiny checkpoint per official layout."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {
        "medsam": folder / "medsam_vit_b.pth",
        "medical_sam2": folder / "MedSAM2_pretrain.pth",
        "bowang_medsam2": folder / "MedSAM2_latest.pt",
    }
    write_tiny_medsam_checkpoint(paths["medsam"])
    write_tiny_medsam2_checkpoint(paths["medical_sam2"], family="medical_sam2")
    write_tiny_medsam2_checkpoint(paths["bowang_medsam2"], family="bowang_medsam2")
    return paths


def edited_copy(source, target, edit):
    """Save a copy of a checkpoint with ``edit`` applied to its (unwrapped) state dict."""
    loaded = torch.load(source, weights_only=True)
    state_dict = loaded["model"] if "model" in loaded else loaded
    edit(state_dict)
    torch.save(loaded, target)
    return target


def parameters_of(encoder):
    return {k: v.clone() for k, v in encoder.state_dict().items()}


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist.*nnUNet_MedSAM2_checkpoint"):
        read_state_dict(tmp_path / "nope.pth")
    with pytest.raises(CheckpointNotFoundError, match="is a directory"):
        read_state_dict(tmp_path)


# ------------------------------------------------------------- one refusal for every bad path of every variable
CHECKPOINT_VARIABLES = [MEDSAM_CHECKPOINT_ENV, MEDSAM2_CHECKPOINT_ENV, SWINUNET_CHECKPOINT_ENV,
                        TRANSUNET_CHECKPOINT_ENV]
BAD_PATHS = {  # kind -> what the refusal says
    "missing": "does not exist",
    "directory": "is a directory",
    "unreadable": "cannot be read",
    "empty": "is empty",
    "text": "is a text file beginning 'version https://git-lfs",
}


def bad_path(tmp_path, kind, monkeypatch) -> Path:
    """A path of the given kind. 'unreadable': mode 000, and, since root reads such files anyway, opening it
    raises PermissionError as it would for any other user."""
    path = tmp_path / "weights.pth"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 375042383\n")
    elif kind == "unreadable":
        path.write_bytes(b"PK\x03\x04\x00\x00" * 10)
        path.chmod(0)
        real_open = Path.open

        def refuse(self, *args, **kwargs):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    return path


@pytest.mark.parametrize("kind", BAD_PATHS)
@pytest.mark.parametrize("variable", CHECKPOINT_VARIABLES)
def test_every_checkpoint_variable_refuses_a_bad_path_the_same_way(tmp_path, monkeypatch, variable, kind):
    path = bad_path(tmp_path, kind, monkeypatch)
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(CheckpointFileError) as refusal:
        checkpoint_path(variable)
    message = str(refusal.value)
    assert message.startswith(f"{variable}={path} {BAD_PATHS[kind]}")
    assert f"Set {variable} to the weights file itself ({CHECKPOINT_FILES[variable]})" in message


def test_unreadable_file_is_refused_by_its_mode_for_users_other_than_root(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root reads files of mode 000; the mocked open() of the test above covers it")
    path = tmp_path / "weights.pth"
    path.write_bytes(b"PK\x03\x04\x00\x00")
    path.chmod(0)
    monkeypatch.setenv(MEDSAM_CHECKPOINT_ENV, str(path))
    with pytest.raises(CheckpointFileError, match="cannot be read"):
        checkpoint_path(MEDSAM_CHECKPOINT_ENV)


def test_weights_files_pass_the_path_check(files, tmp_path, monkeypatch):
    torch.save(torch.load(files["medsam"], weights_only=True), tmp_path / "legacy.pth",
               _use_new_zipfile_serialization=False)
    import numpy as np

    np.savez(tmp_path / "weights.npz", a=np.zeros(3))
    for path in [*files.values(), tmp_path / "legacy.pth", tmp_path / "weights.npz"]:
        monkeypatch.setenv(MEDSAM_CHECKPOINT_ENV, str(path))
        assert checkpoint_path(MEDSAM_CHECKPOINT_ENV) == str(path)
    monkeypatch.setenv(MEDSAM_CHECKPOINT_ENV, "")
    assert checkpoint_path(MEDSAM_CHECKPOINT_ENV) is None


@pytest.mark.parametrize("kind", BAD_PATHS)
@pytest.mark.parametrize("variable, reader", [
    (MEDSAM2_CHECKPOINT_ENV, detect_medsam2_spec),
    (MEDSAM_CHECKPOINT_ENV, lambda path: load_foundation_weights(
        build_foundation_encoder(FoundationSpec("medsam", "tiny", 64)), path)),
    (SWINUNET_CHECKPOINT_ENV, read_swin_checkpoint),
    (TRANSUNET_CHECKPOINT_ENV, read_transunet_npz),
])
def test_every_reader_gives_the_same_refusal(tmp_path, monkeypatch, variable, reader, kind):
    """Readers called with a path (the Python API) refuse it as the variables do, naming the variable."""
    path = bad_path(tmp_path, kind, monkeypatch)
    with pytest.raises(CheckpointFileError, match=f"^{re.escape(variable)}=.* {BAD_PATHS[kind]}"):
        reader(path)


def minimal_plans() -> dict:
    """Just what the trainers read before they check their checkpoint variable (no nnU-Net planning needed)."""
    architecture = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {}, "_kw_requires_import": []}
    return {"dataset_name": "Dataset999_NotPlanned", "plans_name": "nnUNetPlans",
            "configurations": {"2d": {"patch_size": [64, 64], "architecture": architecture}}}


@pytest.mark.parametrize("trainer, variable", [
    ("nnUNetTrainerMedSAMFusion", MEDSAM_CHECKPOINT_ENV),
    ("nnUNetTrainerMedSAMFusionTiny_demo", MEDSAM_CHECKPOINT_ENV),
    ("nnUNetTrainerMedSAM2Fusion", MEDSAM2_CHECKPOINT_ENV),
    ("nnUNetTrainerMedSAM2FusionTiny_demo", MEDSAM2_CHECKPOINT_ENV),
    ("nnUNetTrainerSwinUNet", SWINUNET_CHECKPOINT_ENV),
    ("nnUNetTrainerTransUNet", TRANSUNET_CHECKPOINT_ENV),
])
@pytest.mark.parametrize("kind", ["missing", "directory", "text"])
def test_trainers_refuse_a_bad_checkpoint_path_before_writing_anything(tmp_path, monkeypatch, trainer, variable,
                                                                       kind):
    """README's example path with no file there, a folder, a text file: the clear refusal, not a traceback
    from deep inside (IsADirectoryError from file_sha256 for the MedSAM trainers before)."""
    from nnunet_medsam_fusion import trainers

    path = tmp_path / "weights" / "medsam_vit_b.pth"
    path.parent.mkdir()
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("<!DOCTYPE html><html>Access denied</html>")
    for folder in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(folder, str(tmp_path / folder))
    monkeypatch.setenv(variable, str(path))
    with pytest.raises(CheckpointFileError, match=f"^{re.escape(variable)}={re.escape(str(path))} "):
        getattr(trainers, trainer)(minimal_plans(), "2d", 0, {}, torch.device("cpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]  # nothing written


def test_truncated_file(files, tmp_path):
    data = files["medsam"].read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.*download it again"):
        read_state_dict(truncated)


@pytest.mark.parametrize(
    "payload, message",
    [
        ([1, 2, 3], "holds a list"),
        ({"epoch": 3, "lr": 0.1}, r"holds a dict with keys epoch, lr, not a state dict"),
        (torch.zeros(3), "holds a Tensor"),
    ],
)
def test_not_a_state_dict(tmp_path, payload, message):
    path = tmp_path / "odd.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(path)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a whole module: needs full unpickling
    with pytest.raises(CheckpointError, match="could run code"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "wrap", [lambda sd: {"state_dict": sd}, lambda sd: {"module." + k: v for k, v in sd.items()}]
)
def test_wrapped_state_dicts_are_unwrapped(files, tmp_path, wrap):
    state_dict = torch.load(files["medsam"], weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(state_dict), path)
    assert read_state_dict(path).keys() == state_dict.keys()
    load_foundation_weights(build_foundation_encoder(FoundationSpec("medsam", "tiny", 64)), path)


def test_legacy_torch_save_format_loads(files, tmp_path):
    """Files from torch.save(..., _use_new_zipfile_serialization=False) cannot be memory-mapped; they still load."""
    state_dict = torch.load(files["medsam"], weights_only=True)
    path = tmp_path / "legacy.pth"
    torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    loaded = read_state_dict(path)
    assert all(torch.equal(loaded[key], value) for key, value in state_dict.items())


def test_file_digest_is_sha256_of_the_bytes(files):
    assert file_sha256(files["medsam"]) == hashlib.sha256(open(files["medsam"], "rb").read()).hexdigest()


@pytest.mark.parametrize(
    "family, text",
    [
        ("medsam", "SAM/MedSAM ViT checkpoint (embed_dim 32, 2 blocks: tiny)"),
        ("medical_sam2", "SAM2.0 (Medical SAM 2 style) Hiera checkpoint (embed_dim 8, 5 trunk blocks: tiny)"),
        ("bowang_medsam2", "SAM2.1 (bowang-lab MedSAM2 style) Hiera checkpoint"),
    ],
)
def test_describe_checkpoint(files, family, text):
    assert text in describe_checkpoint(files[family])


def test_checkpoint_kind_of_foreign_layouts():
    assert checkpoint_kind({"vision_encoder.patch_embed.projection.weight": torch.zeros(1)}) == "hf_sam"
    assert checkpoint_kind({"encoder.weight": torch.zeros(1)}) == "unknown"


@pytest.mark.parametrize("family", ["medical_sam2", "bowang_medsam2"])
def test_detect_tiny_families(files, family):
    assert detect_medsam2_spec(files[family]) == FoundationSpec(family, "tiny", 64)
    assert detect_medsam2_spec(files[family], input_size=128) == FoundationSpec(family, "tiny", 128)


def synthetic_sam2_state_dict(embed_dim: int, depth: int, sam21: bool) -> dict:
    """Only the keys detection reads: trunk width, block indices, SAM2.1 markers, plus decoder noise."""
    state_dict = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(embed_dim, 3, 7, 7)}
    state_dict.update({f"image_encoder.trunk.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(depth)})
    state_dict["sam_mask_decoder.iou_token.weight"] = torch.zeros(1, 4)
    if sam21:
        state_dict["no_obj_embed_spatial"] = torch.zeros(1, 64)
    return state_dict


@pytest.mark.parametrize(
    "embed_dim, depth, sam21, expected",
    [
        (96, 12, False, FoundationSpec("medical_sam2", "hiera_t", 1024)),
        (96, 16, False, FoundationSpec("medical_sam2", "hiera_s", 1024)),
        (96, 12, True, FoundationSpec("bowang_medsam2", "hiera_t", 512)),
    ],
)
def test_detect_real_sizes(tmp_path, embed_dim, depth, sam21, expected):
    path = tmp_path / "sam2.pt"
    torch.save({"model": synthetic_sam2_state_dict(embed_dim, depth, sam21)}, path)
    assert detect_medsam2_spec(path) == expected


def test_detect_rejects_unsupported_trunk(tmp_path):
    path = tmp_path / "sam2_hiera_b+.pt"
    torch.save({"model": synthetic_sam2_state_dict(112, 24, False)}, path)
    with pytest.raises(CheckpointError, match=r"hiera_b\+.*supported MedSAM2 trunks are hiera_t"):
        detect_medsam2_spec(path)


def test_detect_rejects_vit_checkpoint(files):
    with pytest.raises(CheckpointError, match="not a MedSAM2.*Set nnUNet_MedSAM_checkpoint"):
        detect_medsam2_spec(files["medsam"])


def test_detect_rejects_unknown_layout(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"backbone.conv.weight": torch.zeros(2)}, path)
    with pytest.raises(
        CheckpointError, match=r"unrecognised state dict \(first keys: backbone.conv.weight\)"
    ):
        detect_medsam2_spec(path)


@pytest.mark.parametrize(
    "family, wrong_file, message",
    [
        (
            "medsam",
            "medical_sam2",
            "Hiera checkpoint.*but the encoder is medsam.*SAM2 file belongs in nnUNet_MedSAM2",
        ),
        ("medical_sam2", "medsam", "ViT checkpoint.*but the encoder is medical_sam2.*ViT file belongs in"),
        (
            "medical_sam2",
            "bowang_medsam2",
            "family 'bowang_medsam2', but the encoder was built for 'medical_sam2'",
        ),
        (
            "bowang_medsam2",
            "medical_sam2",
            "family 'medical_sam2', but the encoder was built for 'bowang_medsam2'",
        ),
    ],
)
def test_wrong_family_is_refused(files, family, wrong_file, message):
    encoder = build_foundation_encoder(FoundationSpec(family, "tiny", 64))
    with pytest.raises(CheckpointError, match=message):
        load_foundation_weights(encoder, files[wrong_file])


@pytest.mark.parametrize(
    "family, edit, message",
    [
        (
            "medsam",
            lambda sd: sd.pop("image_encoder.neck.0.weight"),
            r"1 missing image_encoder\.\* keys \(neck.0",
        ),
        (
            "medsam",
            lambda sd: sd.update({"image_encoder.extra.bias": torch.zeros(1)}),
            r"1 unexpected.*extra.bias",
        ),
        (
            "medsam",
            lambda sd: sd.update({"image_encoder.patch_embed.proj.weight": torch.zeros(1280, 3, 16, 16)}),
            r"patch_embed.proj.weight: file \(1280, 3, 16, 16\) vs expected \(32, 3, 16, 16\).*ViT-H",
        ),
        (
            "medsam",
            lambda sd: sd.update({"image_encoder.pos_embed": torch.zeros(1, 8, 8, 32)}),
            r"pos_embed: file \(1, 8, 8, 32\) vs expected \(1, 4, 4, 32\)",
        ),
        (
            "medical_sam2",
            lambda sd: sd.update({"image_encoder.neck.convs.0.conv.weight": torch.zeros(32, 64, 3, 3)}),
            r"neck.convs.0.conv.weight: file \(32, 64, 3, 3\) vs expected \(32, 64, 1, 1\)",
        ),
        (
            "bowang_medsam2",
            lambda sd: [sd.pop(k) for k in [k for k in sd if k.startswith("image_encoder.trunk.blocks.")]],
            r"missing image_encoder\.\* keys \(.*, \.\.\. and \d+ more\)",
        ),
    ],
    ids=["missing", "unexpected", "vit_h_width", "pos_embed_grid", "neck_kernel", "many_missing"],
)
def test_mismatches_are_named_and_nothing_is_loaded(files, tmp_path, family, edit, message):
    path = edited_copy(files[family], tmp_path / "edited.pth", edit)
    encoder = build_foundation_encoder(FoundationSpec(family, "tiny", 64))
    before = parameters_of(encoder)
    with pytest.raises(CheckpointError, match=message):
        load_foundation_weights(encoder, path)
    after = parameters_of(encoder)
    assert all(torch.equal(before[k], after[k]) for k in before)  # no partial load


@pytest.mark.parametrize(
    "spec",
    [
        FoundationSpec("medsam", "vit_b", 1024),
        FoundationSpec("medical_sam2", "hiera_t", 1024),
        FoundationSpec("medical_sam2", "hiera_s", 1024),
    ],
    ids=lambda s: s.size,
)
def test_real_architectures_round_trip(tmp_path, spec):
    """The real-size encoders: parameter counts, a checkpoint written from them loads back exactly, and a
    ViT-B built at 512 from that 1024 checkpoint yields the cropped (B, 256, 27, 32) for a 100x120 patch (shape run
    on the meta device)."""
    source = build_foundation_encoder(spec)
    assert sum(p.numel() for p in source.parameters()) == REAL_PARAMETER_COUNTS[spec.size]
    assert not any(p.requires_grad for p in source.parameters())
    state_dict = {"image_encoder." + k: v for k, v in source.image_encoder.state_dict().items()}
    path = tmp_path / "real.pth"
    torch.save(state_dict if spec.family == "medsam" else {"model": state_dict}, path)
    if spec.is_sam2:
        assert detect_medsam2_spec(path) == spec
    target_spec = FoundationSpec("medsam", "vit_b", 512, (-2.0, 4.0)) if spec.family == "medsam" else spec
    target = build_foundation_encoder(target_spec)
    load_foundation_weights(target, path)
    loaded = target.image_encoder.state_dict()
    for key, value in source.image_encoder.state_dict().items():
        expected = resize_pos_embed(value, 32) if key == "pos_embed" and spec.family == "medsam" else value
        assert torch.equal(loaded[key], expected), key
    if spec.family == "medsam":
        features = target.to("meta")(torch.zeros(2, 1, 100, 120, device="meta"))
        # longest side 120 -> 512 (32 tokens); 100 -> 426.7, padded to 432 (27 tokens): features cropped back
        assert [tuple(f.shape) for f in features] == [(2, 256, 27, 32)]
