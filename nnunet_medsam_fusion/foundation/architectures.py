"""Hyper-parameters of the known foundation encoders: families, sizes, native input sizes.

Kept free of segment_anything / sam2 imports so specs and checkpoint checks work with either extra installed.
"""

from __future__ import annotations

from dataclasses import dataclass

MEDSAM = "medsam"
MEDICAL_SAM2 = "medical_sam2"
BOWANG_MEDSAM2 = "bowang_medsam2"

# Native encoder input side per (family, size): the size the published weights were trained at.
# "tiny" sizes are random test/CPU-demo encoders of the same classes.
NATIVE_INPUT_SIZE: dict[tuple[str, str], int] = {
    (MEDSAM, "vit_b"): 1024,
    (MEDSAM, "tiny"): 64,
    (MEDICAL_SAM2, "hiera_t"): 1024,
    (MEDICAL_SAM2, "hiera_s"): 1024,
    (MEDICAL_SAM2, "tiny"): 64,
    (BOWANG_MEDSAM2, "hiera_t"): 512,
    (BOWANG_MEDSAM2, "hiera_s"): 512,
    (BOWANG_MEDSAM2, "tiny"): 64,
}

# The input side must be a multiple of this: ViT patch size 16; Hiera's total stride 32.
INPUT_MULTIPLE: dict[str, int] = {MEDSAM: 16, MEDICAL_SAM2: 32, BOWANG_MEDSAM2: 32}

FAMILIES: tuple[str, ...] = (MEDSAM, MEDICAL_SAM2, BOWANG_MEDSAM2)


def sizes_of(family: str) -> tuple[str, ...]:
    """Sizes known for a family, in table order."""
    return tuple(size for fam, size in NATIVE_INPUT_SIZE if fam == family)


def native_input_size(family: str, size: str) -> int:
    """Input side the family's published weights were trained at (ValueError for an unknown pair)."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown foundation family {family!r}; choose one of {', '.join(FAMILIES)}.")
    if (family, size) not in NATIVE_INPUT_SIZE:
        raise ValueError(
            f"Unknown size {size!r} for foundation family {family!r}; "
            f"choose one of {', '.join(sizes_of(family))}."
        )
    return NATIVE_INPUT_SIZE[(family, size)]


VIT_PATCH_SIZE = 16
# SAM2's ImageEncoder(scalp=1) drops the stride-32 level; backbone_fpn is ordered high resolution first.
SAM2_FEATURE_STRIDES = (4, 8, 16)


@dataclass(frozen=True)
class ViTSize:
    """Hyper-parameters of one SAM ViT image encoder (those of segment_anything's build_sam_vit_*)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int
    out_chans: int


VIT_SIZES: dict[str, ViTSize] = {
    "vit_b": ViTSize(
        embed_dim=768,
        depth=12,
        num_heads=12,
        global_attn_indexes=(2, 5, 8, 11),
        window_size=14,
        out_chans=256,
    ),
    # Test/CPU-demo size: native input 64 gives a 4x4 token grid, 2x2 windows and one global block.
    "tiny": ViTSize(
        embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=2, out_chans=32
    ),
}

# SAM ViT embed widths, to name a checkpoint in error messages.
SAM_VIT_NAMES: dict[int, str] = {768: "ViT-B", 1024: "ViT-L", 1280: "ViT-H", 32: "tiny"}


@dataclass(frozen=True)
class HieraSize:
    """Hyper-parameters of one SAM2 image encoder (trunk + neck)."""

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...]
    window_pos_embed_bkg_spatial_size: tuple[int, int]
    d_model: int

    @property
    def depth(self) -> int:
        return sum(self.stages)

    @property
    def backbone_channel_list(self) -> list[int]:
        """Trunk output widths, lowest resolution first (the widths double at each of the 3 stage shifts)."""
        return [self.embed_dim * 2**i for i in reversed(range(len(self.stages)))]


HIERA_SIZES: dict[str, HieraSize] = {
    "hiera_t": HieraSize(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 7, 2),
        global_att_blocks=(5, 7, 9),
        window_spec=(8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size=(7, 7),
        d_model=256,
    ),
    "hiera_s": HieraSize(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 11, 2),
        global_att_blocks=(7, 10, 13),
        window_spec=(8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size=(7, 7),
        d_model=256,
    ),
    # Test/CPU-demo size: native input 64 gives trunk grids 16, 8, 4, 2.
    "tiny": HieraSize(
        embed_dim=8,
        num_heads=1,
        stages=(1, 1, 2, 1),
        global_att_blocks=(3,),
        window_spec=(4, 4, 2, 2),
        window_pos_embed_bkg_spatial_size=(4, 4),
        d_model=32,
    ),
}

# Public SAM2 trunk sizes by (embed_dim, number of blocks), to name a checkpoint in error messages.
HIERA_NAMES: dict[tuple[int, int], str] = {
    (96, 12): "hiera_t",
    (96, 16): "hiera_s",
    (112, 24): "hiera_b+",
    (144, 48): "hiera_l",
    (8, 5): "tiny",
}
