"""Training-step time of the Table 1 baselines against nnU-Net's own trainer, timed round-robin in one process
(docs/baselines.md, "step ms (quiet rounds)" table; docs/benchmarks.md, "Table 1 baselines and Skeleton Recall").

Each trainer is built as ``nnUNetv2_train`` builds it on the test suite's synthetic set (64² patch, batch 5; planned
here by ``nnUNetv2_plan_and_preprocess`` unless ``--root`` holds it), from random initialisation. Every round runs
one ``train_step`` of every trainer, in turn, on a fixed batch of the shape nnU-Net's loader gives
(``training_batch`` of ``nnunet_medsam_fusion/testing/nnunet_env.py``), so a load change on the machine hits all
trainers alike. Prints a Markdown table: the range of the timed rounds per trainer and the range of its per-round
ratio to the first trainer. Wall clock by default (the docs' figures), ``--clock cpu`` for process CPU time. About a
minute on two CPU cores with the defaults, plus about a minute to plan the data set.

    python benchmarks/baseline_steps.py [--rounds 3] [--warmup 1] [--clock wall|cpu] [--root DIR]
"""

from __future__ import annotations

import argparse
import time

import _common

from nnunet_medsam_fusion.text import markdown_table

TRAINERS = ("nnUNetTrainer", "nnUNetTrainerUNet", "nnUNetTrainerSwinUNet", "nnUNetTrainerTransUNet")


def round_robin(trainers: dict, batches: dict, warmup: int, rounds: int, clock: str) -> dict[str, list[float]]:
    """Seconds of one ``train_step`` per trainer and timed round (each round: every trainer once, in turn)."""
    import torch

    from nnunet_medsam_fusion.benchmarking.timing import timed

    cpu = torch.device("cpu")
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for index in range(warmup + rounds):
        for name, trainer in trainers.items():
            if clock == "cpu":
                start = time.process_time()
                trainer.train_step(batches[name])
                seconds = time.process_time() - start
            else:
                seconds = timed(lambda t=trainer, n=name: t.train_step(batches[n]), 0, 1, cpu)[0]
            if index >= warmup:
                times[name].append(seconds)
    return times


def span(values: list[float], digits: int) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if f"{low:.{digits}f}" == f"{high:.{digits}f}" else f"{low:.{digits}f}–{high:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), help="the first is the ratios' baseline")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--batch-size", type=int, default=None, help="override the plans' batch size")
    _common.add_data_arguments(parser, default_set="test")
    args = parser.parse_args()

    import torch

    from nnunet_medsam_fusion.testing.nnunet_env import training_batch

    synthetic = _common.synthetic_sets()[args.data_set]
    with _common.planned_root(args.root, synthetic) as root, _common.nnunet_folders(root):
        torch.manual_seed(0)
        trainers = {name: _common.build_trainer(name, root, synthetic.dataset, args.batch_size)
                    for name in args.trainers}
        batches = {name: training_batch(trainer) for name, trainer in trainers.items()}
        times = round_robin(trainers, batches, args.warmup, args.rounds, args.clock)
        batch_size = trainers[args.trainers[0]].configuration_manager.batch_size
        patch = trainers[args.trainers[0]].configuration_manager.patch_size

    baseline = times[args.trainers[0]]
    rows = [[name, span([1000 * t for t in values], 0),
             span([t / b for t, b in zip(values, baseline, strict=True)], 2)] for name, values in times.items()]
    clock = "wall" if args.clock == "wall" else "process CPU"
    print(f"{synthetic.dataset}, patch {'x'.join(map(str, patch))}, batch {batch_size}, {args.rounds} timed rounds "
          f"after {args.warmup} untimed, {clock} clock, {torch.get_num_threads()} torch threads")
    print(markdown_table(["trainer", f"step ms ({args.rounds} rounds)", f"x {args.trainers[0]}"], rows,
                                 right={1, 2}))


if __name__ == "__main__":
    main()
