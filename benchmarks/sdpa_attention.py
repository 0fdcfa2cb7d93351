"""MedSAM's ViT-B forward with segment_anything's explicit attention against the package's ``SDPAAttention``
(docs/benchmarks.md, "Figures on a quiet machine", the "explicit attention s | SDPA s" table).

For each input size the encoder is built as the fusion trainers build it, ``build_foundation_encoder(
FoundationSpec("medsam", "vit_b", size))`` (RANDOM weights: times do not depend on them), and an explicit copy
holds the same weights with every block's attention set back to segment_anything's ``Attention`` (``SDPAAttention``
subclasses it with the same parameters). Each image encoder runs on one random image, float32, ``no_grad``,
alternating explicit and SDPA: one untimed warm-up each, then the best of ``--repeats``. Prints a Markdown table and
the largest |SDPA - explicit| over the output. Wall clock by default, ``--clock cpu`` for process CPU time. About two
minutes on two CPU cores with the defaults (most of it at 1024); ``--sizes 512 --repeats 1`` takes about fifteen
seconds.

    python benchmarks/sdpa_attention.py [--sizes 512 1024] [--repeats 2] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

from nnunet_medsam_fusion.text import markdown_table  # noqa: F401  (puts the repository root on sys.path)


def encoders(size: int) -> tuple:
    """(explicit, SDPA) ViT-B image encoders at input ``size`` with the same random weights."""
    from segment_anything.modeling.image_encoder import Attention

    from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder

    sdpa = build_foundation_encoder(FoundationSpec("medsam", "vit_b", size)).image_encoder.eval()
    explicit = copy.deepcopy(sdpa)
    for block in explicit.blocks:
        block.attn.__class__ = Attention  # segment_anything's own forward, same parameters
    return explicit, sdpa


def seconds(call: Callable[[], object], clock: str) -> float:
    now = time.process_time if clock == "cpu" else time.perf_counter
    start = now()
    call()
    return now() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="encoder inputs (default 512 1024)")
    parser.add_argument("--repeats", type=int, default=2, help="timed forwards per variant; the best counts")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()

    import torch

    torch.manual_seed(0)
    rows, differences = [], []
    for size in args.sizes:
        explicit, sdpa = encoders(size)
        image = torch.randn(1, 3, size, size)
        with torch.no_grad():
            difference = (sdpa(image) - explicit(image)).abs().max().item()  # also the warm-up of both
            times = {"explicit": [], "sdpa": []}
            for _ in range(args.repeats):  # alternating, so a load change hits both
                for name, encoder in (("explicit", explicit), ("sdpa", sdpa)):
                    times[name].append(seconds(lambda e=encoder, x=image: e(x), args.clock))
        explicit_s, sdpa_s = min(times["explicit"]), min(times["sdpa"])
        gain = explicit_s / sdpa_s
        rows.append([str(size), f"{explicit_s:.2f}", f"{sdpa_s:.2f}",
                     f"{gain:.2f}x" if gain >= 1 else f"none ({gain:.2f}x)"])
        differences.append(f"{size}: {difference:.1e}")
    clock = "wall" if args.clock == "wall" else "process CPU"
    print(f"MedSAM ViT-B (RANDOM weights), batch 1, float32, best of {args.repeats} after a warm-up, {clock} clock, "
          f"{torch.get_num_threads()} torch threads")
    print(markdown_table(["input", "explicit attention s", "SDPA s", "SDPA gain"], rows, right={0, 1, 2, 3}))
    print(f"largest |SDPA - explicit| over the output: {', '.join(differences)}")


if __name__ == "__main__":
    main()
