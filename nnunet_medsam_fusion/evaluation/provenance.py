"""Which foundation encoder weights a trained model used, read from its model folder's record.

Training records the encoder in the plans nnU-Net copies into the model folder: ``plans.json`` ->
``configurations[configuration]`` holds ``foundation`` (the FoundationSpec: family, size, ...) and
``foundation_weights`` (``{"file", "sha256"}`` of the pretrained file; null: random weights). A configuration
without ``foundation`` is a model without a foundation encoder. Comparison rows are marked from this record,
so a random or tiny encoder can never pass for the paper's pretrained one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nnunet_medsam_fusion.model_folder import FOUNDATION_KEY, WEIGHTS_KEY
from nnunet_medsam_fusion.trainer_table import TINY, method_name

TINY_SIZE = "tiny"  # FoundationSpec.size of the Tiny trainers' encoders
PRETRAINED, RANDOM, NOT_VERIFIED = "pretrained", "random", "not verified"


@dataclass(frozen=True)
class EncoderWeights:
    """A model's foundation encoder: 'pretrained', 'random', or 'not verified' (no model folder to read)."""

    status: str
    tiny: bool
    source: str
    file: str | None = None
    sha256: str | None = None

    @property
    def mark(self) -> str:
        """What a table row must say next to the paper's row ('' for a pretrained full-size encoder)."""
        size = "tiny " if self.tiny else ""
        if self.status == RANDOM:
            return f"random {size}encoder"
        if self.status == NOT_VERIFIED:
            return f"{size}encoder not verified"
        return "tiny encoder" if self.tiny else ""

    def describe(self) -> str:
        text = {PRETRAINED: "pretrained", RANDOM: "RANDOM weights", NOT_VERIFIED: "NOT VERIFIED"}[self.status]
        text += " (tiny encoder)" if self.tiny else ""
        if self.file:
            text += f", file {self.file}"
        if self.sha256:
            text += f", sha256 {self.sha256}"
        return f"{text}; source: {self.source}"


def encoder_weights(model_dir: Path | None, configuration: str, trainer: str) -> EncoderWeights | None:
    """The foundation encoder weights recorded in ``model_dir/plans.json``; None for a model without one.

    Without a model folder nothing can be read: a trainer named like a fusion trainer is 'not verified'
    (pass the results folder that holds it), any other is taken to have no foundation encoder.
    """
    plans_file = model_dir / "plans.json" if model_dir is not None else None
    if plans_file is None or not plans_file.is_file():
        if "Fusion" not in method_name(trainer):
            return None
        where = model_dir or "(no nnU-Net results folder given)"
        return EncoderWeights(NOT_VERIFIED, TINY in trainer,
                              f"no plans.json in model folder {where}: pass --results with the folder that "
                              "holds the trained model")
    config = json.loads(plans_file.read_text()).get("configurations", {}).get(configuration, {})
    spec = config.get(FOUNDATION_KEY)
    if spec is None:
        return None
    if WEIGHTS_KEY not in config:
        raise ValueError(f"{plans_file}: configuration '{configuration}' records a foundation encoder but no "
                         f"'{WEIGHTS_KEY}' entry, which training always writes; the model folder is damaged or "
                         "from an unreleased version: train the model again")
    tiny = spec.get("size") == TINY_SIZE
    recorded = config[WEIGHTS_KEY]
    if recorded is None:
        return EncoderWeights(RANDOM, tiny, f"{plans_file} ({WEIGHTS_KEY}: null)")
    return EncoderWeights(PRETRAINED, tiny, str(plans_file), recorded.get("file"), recorded.get("sha256"))
