"""How many images one frozen-encoder call takes: the package's activation estimate per image and the micro-batch
it gives under the memory budget (docs/benchmarks.md, "Speed-ups in the package", the micro-batch row).

For each encoder the fusion trainers build (``build_foundation_encoder``, RANDOM weights: the estimate depends only
on the sizes), prints ``FoundationEncoder.bytes_per_image`` (an estimate, not a measurement) and
``micro_batch_size`` under the encoder's ``memory_budget``, in float32 and bf16, as a Markdown table. Takes about
half a minute (building the encoders).

    python benchmarks/encoder_micro_batch.py [--encoders medsam/vit_b medical_sam2/hiera_t ...] [--sizes 512 1024]
"""

from __future__ import annotations

import argparse

from nnunet_medsam_fusion.text import markdown_table

ENCODERS = ("medsam/vit_b", "medical_sam2/hiera_t", "medical_sam2/hiera_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), help="family/size pairs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="encoder inputs")
    args = parser.parse_args()

    import torch

    from nnunet_medsam_fusion.foundation import FoundationSpec, build_foundation_encoder

    rows = []
    for name in args.encoders:
        family, size = name.split("/")
        for input_size in args.sizes:
            encoder = build_foundation_encoder(FoundationSpec(family, size, input_size))
            for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                rows.append([f"`{name}`", str(input_size), label, f"{encoder.bytes_per_image(dtype) / 1e9:.2f}",
                             f"{encoder.memory_budget / 2**30:g}", str(encoder.micro_batch_size(dtype))])
    print(markdown_table(["encoder", "input", "precision", "estimated GB per image", "budget GiB",
                                  "images per call"], rows, right={1, 3, 4, 5}))


if __name__ == "__main__":
    main()
