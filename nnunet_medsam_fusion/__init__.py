"""nnU-Net v2 plugin: MedSAM/MedSAM2 feature fusion for TOF-MRA brain vessel segmentation."""

__version__ = "0.1.0"
