"""Parameter counts of the Table 1 baselines (docs/baselines.md, trainer table; docs/benchmarks.md, "Table 1
baselines and Skeleton Recall").

Prints a Markdown table: trainer, patch, input channels, classes, parameters, and the published size the tests
compare with (``REFERENCE_PARAMETERS`` of ``nnunet_medsam_fusion/testing/baselines.py``). SwinUNet's and TransUNet's
counts depend on the patch (relative-position tables shrink with the windows of small levels; the position embedding
has one entry per 16×16 patch). Each network is built by the trainer's own ``network_class()`` on the meta device
(no memory, no data set). Takes a few seconds.

    python benchmarks/baseline_parameters.py
"""

from __future__ import annotations

import argparse

from nnunet_medsam_fusion.text import markdown_table  # noqa: F401  (puts the repository root on sys.path)

TRAINERS = ("nnUNetTrainerUNet", "nnUNetTrainerSwinUNet", "nnUNetTrainerTransUNet")


def count_parameters(trainer: str, patch: tuple[int, ...], classes: int, channels: int = 1) -> int:
    """Parameters of ``trainer``'s network for a 2D ``patch``, as ``build_network_architecture`` builds it."""
    import torch

    from nnunet_medsam_fusion.benchmarking.discovery import find_trainer_class

    with torch.device("meta"):
        network = find_trainer_class(trainer).network_class()(channels, classes, patch)
    return sum(p.numel() for p in network.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", nargs="+", default=["224x224", "96x80"],
                        help="2D patches as HxW (default: 224x224 96x80)")
    args = parser.parse_args()
    patches = [tuple(int(side) for side in patch.split("x")) for patch in args.patches]

    from nnunet_medsam_fusion.testing.baselines import REFERENCE_PARAMETERS

    published = {cls.__name__: value for cls, value in REFERENCE_PARAMETERS.items()}
    cases = [(name, patch, 2) for name in TRAINERS for patch in patches]
    cases.append(("nnUNetTrainerTransUNet", (224, 224), 9))  # the published TransUNet size (Synapse: 9 classes)
    rows = []
    for name, patch, classes in cases:
        count = count_parameters(name, patch, classes)
        rows.append([f"`{name}`", "×".join(map(str, patch)), "1", str(classes), f"{count:,}",
                     f"{published[name] / 1e6:.2f}M"])
    print(markdown_table(["trainer", "patch", "input channels", "classes", "parameters", "published"],
                                 rows, right={2, 3, 4, 5}))


if __name__ == "__main__":
    main()
