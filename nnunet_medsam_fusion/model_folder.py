"""Where nnU-Net keeps a trained model, and what a fusion model folder records in its ``plans.json``.

Training writes the frozen encoder's :class:`~nnunet_medsam_fusion.foundation.FoundationSpec` under
``configurations[configuration][FOUNDATION_KEY]`` and the pretrained file's ``{"file", "sha256"}`` (None: random
weights) under ``WEIGHTS_KEY``; the trainers write it, evaluation reads it.
"""

from __future__ import annotations

from pathlib import Path

FOUNDATION_KEY = "foundation"
WEIGHTS_KEY = "foundation_weights"


def model_folder(results_dir: str | Path | None, dataset_name: str, trainer: str, plans: str,
                 configuration: str) -> Path | None:
    """``results/DatasetXXX_Name/{trainer}__{plans}__{configuration}`` as nnU-Net names it (it may not exist);
    None without a results folder."""
    if results_dir is None:
        return None
    return Path(results_dir) / dataset_name / f"{trainer}__{plans}__{configuration}"
