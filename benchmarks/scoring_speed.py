"""Time scoring one 560 x 560 x 150 multi-class Circle-of-Willis-like case under both metric conventions.

``python benchmarks/scoring_speed.py [--repeats 3]`` writes a synthetic reference and prediction (13 TopCoW
labels, tube-shaped vessels, 0.3 x 0.3 x 0.6 mm) as NIfTI into a temporary folder and prints a markdown table:
the ``ours`` path of ``nnmsf evaluate`` (folders.score_file, every label) and the TopCoW path
(folders.score_file under ``topcow``, every task-1 metric), reading the files included.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_medsam_fusion.text import markdown_table

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nnunet_medsam_fusion.evaluation.conventions import get_convention  # noqa: E402
from nnunet_medsam_fusion.evaluation.folders import score_file  # noqa: E402
from nnunet_medsam_fusion.evaluation.kernels.label_metrics import LABEL_NAMES  # noqa: E402

SHAPE = (150, 560, 560)  # (z, y, x)
SPACING = (0.6, 0.3, 0.3)
# (label, start (z, y, x), end, radius in voxels): a rough Circle of Willis, left at larger x (LPS+)
SEGMENTS = [
    (1, (10, 300, 280), (70, 300, 280), 6),  # BA
    (2, (70, 300, 280), (75, 300, 180), 4), (2, (75, 300, 180), (90, 380, 120), 4),  # R-PCA
    (3, (70, 300, 280), (75, 300, 380), 4), (3, (75, 300, 380), (90, 380, 440), 4),  # L-PCA
    (4, (10, 200, 200), (80, 200, 200), 6),  # R-ICA
    (6, (10, 200, 360), (80, 200, 360), 6),  # L-ICA
    (5, (80, 200, 200), (95, 190, 80), 5),  # R-MCA
    (7, (80, 200, 360), (95, 190, 480), 5),  # L-MCA
    (8, (78, 205, 200), (74, 295, 185), 2),  # R-Pcom
    (9, (78, 205, 360), (74, 295, 375), 2),  # L-Pcom
    (11, (80, 195, 200), (85, 130, 270), 4), (11, (85, 130, 270), (140, 60, 272), 4),  # R-ACA
    (12, (80, 195, 360), (85, 130, 290), 4), (12, (85, 130, 290), (140, 60, 288), 4),  # L-ACA
    (10, (85, 130, 272), (85, 130, 288), 2),  # Acom
    (15, (85, 128, 280), (140, 40, 280), 2),  # 3rd-A2
]


def draw_tubes(shape, segments) -> np.ndarray:
    """Label map of straight tubes, each drawn only inside its bounding box."""
    volume = np.zeros(shape, dtype=np.uint8)
    for label, start, end, radius in segments:
        a, b = np.array(start, float), np.array(end, float)
        low = np.maximum(np.floor(np.minimum(a, b) - radius - 1), 0).astype(int)
        high = np.minimum(np.ceil(np.maximum(a, b) + radius + 2), shape).astype(int)
        grid = np.stack(np.meshgrid(*[np.arange(lo, hi) for lo, hi in zip(low, high, strict=True)],
                                    indexing="ij"), axis=-1).astype(float)
        direction = b - a
        t = np.clip(((grid - a) @ direction) / max(direction @ direction, 1e-9), 0, 1)
        distance = np.linalg.norm(grid - (a + t[..., None] * direction), axis=-1)
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
        volume[box][distance <= radius] = label
    return volume


def make_case() -> tuple[np.ndarray, np.ndarray]:
    """Reference and a plausible prediction: shifted vessels, a thinned Pcom, a lost Acom, false islands."""
    ref = draw_tubes(SHAPE, SEGMENTS)
    moved = [(label, tuple(s + (1 if label in (2, 5, 11) else 0) for s in start), end,
              radius - (1 if label == 8 else 0)) for label, start, end, radius in SEGMENTS if label != 10]
    pred = draw_tubes(SHAPE, moved)
    rng = np.random.default_rng(0)
    for _ in range(20):  # small false islands of random labels
        z, y, x = rng.integers((5, 20, 20), (SHAPE[0] - 5, SHAPE[1] - 20, SHAPE[2] - 20))
        pred[z - 1:z + 2, y - 2:y + 2, x - 2:x + 2] = rng.choice(list(LABEL_NAMES))
    return pred, ref


def write(path: Path, array: np.ndarray) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(reversed(SPACING)))
    sitk.WriteImage(image, str(path))


def timed(functions: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per run of each function, the runs interleaved so that load from other processes hits both."""
    seconds: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            seconds[name].append(time.perf_counter() - start)
    return seconds



def timing_table(runs: dict[str, list[float]]) -> str:
    """Median, min and max seconds of each timed convention, as a Markdown table."""
    rows = [[name, *(f"{f(seconds):.2f}" for f in (statistics.median, min, max))] for name, seconds in runs.items()]
    return markdown_table(["convention", "median s", "min s", "max s"], rows, right={1, 2, 3})

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per convention (default 3)")
    args = parser.parse_args(argv)
    pred, ref = make_case()
    dataset = {"labels": {"background": 0, **{name: value for value, name in LABEL_NAMES.items()}}}
    ours = get_convention("ours").context(dataset, Path("dataset.json"), {})
    topcow = get_convention("topcow").context(None, None, {})
    with tempfile.TemporaryDirectory() as folder:
        pred_path, ref_path = Path(folder) / "pred.nii.gz", Path(folder) / "ref.nii.gz"
        write(pred_path, pred)
        write(ref_path, ref)
        runs = timed({"ours (folders.score_file, 13 labels)": lambda: score_file("ours", "case", pred_path,
                                                                                  ref_path, ours),
                      "topcow (folders.score_file)": lambda: score_file("topcow", "case", pred_path, ref_path,
                                                                        topcow)},
                     args.repeats)
    print(f"case {SHAPE[2]} x {SHAPE[1]} x {SHAPE[0]} (x, y, z), {np.count_nonzero(ref)} reference and "
          f"{np.count_nonzero(pred)} predicted foreground voxels; {platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} CPU core(s) available; {args.repeats} run(s) each\n")
    print(timing_table(runs))
    ours, topcow = (statistics.median(s) for s in runs.values())
    print(f"\ntopcow / ours = {topcow / ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
