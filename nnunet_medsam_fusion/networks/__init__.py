"""The paper's baseline architectures (its Table 1), rebuilt for nnU-Net's 2D plans.

* :mod:`.unet` - the classic U-Net of Ronneberger et al. 2015 as it is used as a baseline today;
* :mod:`.swin_unet` - Swin-Unet of Cao et al. 2022 (Swin-T encoder from timm, patch-expanding decoder);
* :mod:`.transunet` - TransUNet of Chen et al. 2021 (R50-ViT-B/16 from timm, cascaded up-sampler);
* :mod:`.pretrained` - loading the ImageNet checkpoints the reference code bases start from.

The transformer modules import ``timm`` (the ``[baselines]`` extra), so nothing here is imported eagerly: the
trainers import a network only when they build one. docs/baselines.md describes the architectures.
"""
