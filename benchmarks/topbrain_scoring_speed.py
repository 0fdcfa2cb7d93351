"""Time TopBrain 2025 scoring against TopCoW scoring on one synthetic 560 x 560 x 150 MR case with 42 labels.

``python benchmarks/topbrain_scoring_speed.py [--repeats 3]`` draws a reference and a prediction (the 42 TopBrain MR
labels as tubes, 0.3 x 0.3 x 0.6 mm) and times scoring them in memory: ``conventions/topbrain.score_case`` (track
mr) against ``conventions/topcow.score_topcow_case`` on the same voxels with the labels folded onto TopCoW's classes
(TopBrain labels 1-12 and 15 mean what TopCoW's do; every other label folds onto the vessel it branches from),
and prints a markdown table and the ratio topbrain / topcow.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import numpy as np
from scoring_speed import REPO, SEGMENTS, SHAPE, SPACING, draw_tubes, timed, timing_table  # noqa: F401 (REPO: sys.path set-up)

from nnunet_medsam_fusion.data.convert.topbrain import LABELS
from nnunet_medsam_fusion.evaluation.conventions.topbrain import score_case
from nnunet_medsam_fusion.evaluation.conventions.topcow import score_topcow_case

# TopBrain MR label -> the TopCoW class of the vessel it is part of or branches from (ours, for the fold only)
FOLD = {**{v: v for v in (*range(1, 13), 15)}, 13: 11, 14: 12, 16: 15, 17: 5, 18: 5, 19: 7, 20: 7, 21: 2, 22: 3,
        **dict.fromkeys(range(23, 31), 1), 31: 4, 32: 6, 33: 4, 34: 6, **dict.fromkeys((35, 37, 39, 41), 4),
        **dict.fromkeys((36, 38, 40, 42), 6)}


def branch_segments(seed: int = 0) -> list[tuple[int, tuple, tuple, int]]:
    """The Circle-of-Willis tubes of scoring_speed.py plus one tube for each other TopBrain MR label, starting on
    the vessel it folds onto and running 40-120 voxels in a random direction."""
    rng = np.random.default_rng(seed)
    ends = {label: end for label, _, end, _ in SEGMENTS}
    segments = list(SEGMENTS)
    for label in sorted(set(LABELS["mr"]) - set(ends)):
        start = np.array(ends[FOLD[label]], dtype=float)
        direction = rng.normal(size=3) * np.array([0.3, 1.0, 1.0])
        end = start + direction / np.linalg.norm(direction) * rng.uniform(40, 120)
        end = np.clip(end, 8, np.array(SHAPE) - 9).round().astype(int)
        segments.append((label, tuple(int(s) for s in start), tuple(int(e) for e in end), int(rng.integers(2, 4))))
    return segments


def make_case() -> tuple[np.ndarray, np.ndarray]:
    """Reference and a plausible prediction: shifted vessels, thinned side branches, a lost Acom, false islands."""
    segments = branch_segments()
    ref = draw_tubes(SHAPE, segments)
    moved = [(label, tuple(s + (1 if label % 3 == 0 else 0) for s in start), end,
              max(1, radius - (1 if label in (8, 9, 25, 26) else 0))) for label, start, end, radius in segments
             if label != 10]
    pred = draw_tubes(SHAPE, moved)
    rng = np.random.default_rng(0)
    for _ in range(40):  # small false islands of random labels
        z, y, x = rng.integers((5, 20, 20), (SHAPE[0] - 5, SHAPE[1] - 20, SHAPE[2] - 20))
        pred[z - 1:z + 2, y - 2:y + 2, x - 2:x + 2] = rng.choice(sorted(LABELS["mr"]))
    return pred, ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per convention (default 3)")
    args = parser.parse_args(argv)
    pred, ref = make_case()
    fold = np.zeros(256, dtype=np.uint8)
    for label, target in FOLD.items():
        fold[label] = target
    pred_cow, ref_cow = fold[pred], fold[ref]
    runs = timed({"topbrain (conventions/topbrain.score_case, mr, 42 labels)":
                  lambda: score_case(pred, ref, SPACING, "mr"),
                  "topcow (conventions/topcow.score_topcow_case, same voxels, 13 labels)":
                  lambda: score_topcow_case(pred_cow, ref_cow, SPACING)}, args.repeats)
    present = len(set(np.unique(ref)) - {0})
    print(f"case {SHAPE[2]} x {SHAPE[1]} x {SHAPE[0]} (x, y, z), {present} labels in the reference, "
          f"{np.count_nonzero(ref)} reference and {np.count_nonzero(pred)} predicted foreground voxels; "
          f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPU core(s) available, load average "
          f"{os.getloadavg()[0]:.1f}; {args.repeats} run(s) each\n")
    print(timing_table(runs))
    topbrain, topcow = (statistics.median(s) for s in runs.values())
    print(f"\ntopbrain / topcow = {topbrain / topcow:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
