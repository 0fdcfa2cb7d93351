"""Short-run Dice of the Table 1 baselines trained from scratch through nnU-Net's CLI (docs/baselines.md, the
"Short-run Dice" table).

Runs ``train_predict_and_score`` of ``nnunet_medsam_fusion/testing/baselines.py`` (the procedure of
``tests/test_baselines.py``'s slow CLI test, which runs a two-iteration SwinUNet) for each trainer: ``nnUNetv2_train
DATASET 2d 0 -tr TRAINER -device cpu`` on the test suite's synthetic set (planned here unless ``--root`` holds it;
SwinUNet is resumed once with ``--c``, as the test does), ``nnUNetv2_predict`` of the 2 test volumes and
``evaluate_folders``. Then prints a Markdown table: the pseudo Dice of every epoch from nnU-Net's training log, the
validation Dice nnU-Net wrote (``validation/summary.json``, foreground mean) and the test Dice. nnU-Net does not
seed its training, so each run differs a little. The ``_demo`` schedules: 6 epochs of 12 iterations, SwinUNet 18.

    python benchmarks/baseline_short_runs.py [--trainers nnUNetTrainerUNet_demo ...] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import _common

from nnunet_medsam_fusion.text import markdown_table

TRAINERS = ("nnUNetTrainerUNet_demo", "nnUNetTrainerSwinUNet_demo", "nnUNetTrainerTransUNet_demo")
NUMBER = re.compile(r"\d+\.\d+|\d+")


def pseudo_dice(fold: Path) -> list[float]:
    """The 'Pseudo dice' of every epoch in nnU-Net's training logs of ``fold`` (first foreground class)."""
    values = []
    for log in sorted(fold.glob("training_log_*.txt")):
        for line in log.read_text().splitlines():
            if "Pseudo dice" in line:
                inside = line.split("Pseudo dice", 1)[1]
                values.append(float(NUMBER.findall(inside.replace("float32", ""))[0]))
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS))
    parser.add_argument("--root", type=Path, default=None,
                        help="folder for the test set's raw/preprocessed data; reused when already planned")
    args = parser.parse_args()

    from nnunet_medsam_fusion.testing import baselines
    from nnunet_medsam_fusion.testing.nnunet_env import DATASET

    rows = []
    with _common.planned_root(args.root, _common.synthetic_sets()["test"]) as root:
        for trainer in args.trainers:
            with tempfile.TemporaryDirectory(prefix="nnmsf_short_run_") as work:
                work = Path(work)
                test_dice = baselines.train_predict_and_score(root, work, trainer)
                fold = work / "results" / DATASET / f"{trainer}__nnUNetPlans__2d" / "fold_0"
                validation = json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"]
                rows.append([trainer, ", ".join(f"{v:.2f}" for v in pseudo_dice(fold)),
                             f"{validation['Dice']:.3f}",
                             f"{test_dice:.3f}"])
    print(markdown_table(["trainer", "pseudo Dice per epoch (nnU-Net's log)", "validation Dice (2 cases)",
                                  "test Dice (2 volumes)"], rows, right={2, 3}))


if __name__ == "__main__":
    main()
