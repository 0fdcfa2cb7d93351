"""What Skeleton Recall's tube target costs: nnU-Net's loader and training step with and without it, and the
skeletonisation alone (docs/skeleton_recall.md, "Cost per training step"; docs/benchmarks.md, "Table 1 baselines and
Skeleton Recall").

First table: nnU-Net's Dice + CE trainer (``nnUNetTrainerPluginBase``, the base of the package's trainers) and
``nnUNetTrainerSkelRecall``, built as ``nnUNetv2_train`` builds them on the synthetic set of ``nnmsf demo`` (64²
patch, batch 10; planned here by ``nnUNetv2_plan_and_preprocess`` unless ``--root`` holds it). Each trainer's own
nnU-Net training loader (its transforms; the tube for Skeleton Recall) runs in this process, and the two trainers
alternate batch by batch: load one batch, one ``train_step`` on it. Median process CPU time with one torch thread
(so that other jobs on the machine barely change it). Second table: ``skeleton_tube`` alone (skeletonise, dilate,
keep inside the class) on one class of about 8% foreground (smoothed noise above its 92nd percentile), median CPU
time per patch. About a minute on two CPU cores with the defaults, plus about a minute to plan the data set.

    python benchmarks/skeleton_recall_cost.py [--steps 20] [--warmup 2] [--root DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common

from nnunet_medsam_fusion.text import markdown_table


def interleaved(trainers: dict, warmup: int, steps: int) -> dict[str, dict[str, list[float]]]:
    """CPU seconds per batch of each trainer's loader and per ``train_step``, the trainers alternating."""
    from nnunet_medsam_fusion.benchmarking.timing import training_loader

    loaders = {name: training_loader(trainer) for name, trainer in trainers.items()}
    times = {name: {"load": [], "step": []} for name in trainers}
    for index in range(warmup + steps):
        for name, trainer in trainers.items():
            start = time.process_time()
            batch = next(loaders[name])
            loaded = time.process_time()
            trainer.train_step(batch)
            if index >= warmup:
                times[name]["load"].append(loaded - start)
                times[name]["step"].append(time.process_time() - loaded)
    return times


def tube_times(shapes: list[tuple[int, ...]], repeats: int, fraction: float = 0.08) -> list[list[str]]:
    """Median CPU ms of ``skeleton_tube`` on a one-class mask of about ``fraction`` foreground, per shape."""
    import numpy as np
    from scipy import ndimage

    from nnunet_medsam_fusion.losses.skeleton_target import skeleton_tube

    rows = []
    for shape in shapes:
        noise = ndimage.gaussian_filter(np.random.default_rng(0).standard_normal(shape), sigma=2)
        label = (noise > np.quantile(noise, 1 - fraction)).astype(np.uint8)
        seconds = []
        for _ in range(repeats):
            start = time.process_time()
            skeleton_tube(label, [1])
            seconds.append(time.process_time() - start)
        rows.append(["×".join(map(str, shape)), f"{100 * label.mean():.1f}%",
                     f"{1000 * statistics.median(seconds):.1f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed batches per trainer (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches per trainer first (default 2)")
    parser.add_argument("--tube-repeats", type=int, default=5, help="skeleton_tube calls per shape (default 5)")
    parser.add_argument("--tube-shapes", nargs="+", default=["64x64", "512x512", "128x128x128"],
                        help="shapes for the skeletonisation alone (default: 64x64 512x512 128x128x128)")
    _common.add_data_arguments(parser, default_set="demo")
    args = parser.parse_args()

    import torch

    from nnunet_medsam_fusion.trainers.base import nnUNetTrainerPluginBase

    torch.set_num_threads(1)
    synthetic = _common.synthetic_sets()[args.data_set]
    with _common.planned_root(args.root, synthetic) as root, _common.nnunet_folders(root):
        torch.manual_seed(0)
        trainers = {name: _common.build_trainer(cls, root, synthetic.dataset)
                    for name, cls in (("nnU-Net Dice + CE (`nnUNetTrainerPluginBase`)", nnUNetTrainerPluginBase),
                                      ("`nnUNetTrainerSkelRecall`", "nnUNetTrainerSkelRecall"))}
        times = interleaved(trainers, args.warmup, args.steps)
        manager = next(iter(trainers.values())).configuration_manager

    rows = []
    for name, measured in times.items():
        load, step = (1000 * statistics.median(measured[key]) for key in ("load", "step"))
        rows.append([name, f"{load:.1f}", f"{step:.1f}", f"{load + step:.1f}"])
    print(f"{synthetic.dataset}, patch {'x'.join(map(str, manager.patch_size))}, batch {manager.batch_size}, "
          f"median of {args.steps} interleaved batches after {args.warmup}, process CPU time, 1 torch thread")
    print(markdown_table(["trainer", "load (CPU ms / batch)", "train step (CPU ms)", "load + step"], rows,
                                 right={1, 2, 3}))
    print()
    shapes = [tuple(int(side) for side in shape.split("x")) for shape in args.tube_shapes]
    print(markdown_table(["patch", "foreground", "skeleton_tube (CPU ms)"],
                                 tube_times(shapes, args.tube_repeats), right={1, 2}))


if __name__ == "__main__":
    main()
