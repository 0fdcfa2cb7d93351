"""A trained fusion model in Python: rebuild it from its model folder, run it on one slice, and look inside.

    python python_api.py MODEL_FOLDER --image scans/case_0000.nii.gz [--slice 40] [--out features.png]

MODEL_FOLDER is what nnUNetv2_train wrote, e.g.
$nnUNet_results/Dataset120_CAS2023/nnUNetTrainerMedSAM2Fusion__nnUNetPlans__2d. The script prints which
encoder stages the foundation features are fused into and saves a picture of the slice, the predicted vessel
probability and, for each fused level, what the frozen encoder's features look like (mean activation and
first principal component). The network is nnU-Net's own object: everything below works on any
``nn.Module`` nnU-Net builds.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="trained model folder (holds plans.json and fold_N/)")
    parser.add_argument("--image", type=Path, required=True, help="one scan (CASE_0000.nii.gz)")
    parser.add_argument("--slice", type=int, default=None, help="axial slice index (default: the middle one)")
    parser.add_argument("--fold", default="0", help="which fold's checkpoint to load (default 0)")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=Path("foundation_features.png"))
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from nnunet_medsam_fusion.fusion.network import FoundationFusionUNet
    from nnunet_medsam_fusion.settings import EXT_TRAINER_ENV, ext_trainer_value, temporary_environ
    from nnunet_medsam_fusion.trainers.foundation_fusion import unwrap

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    # 1. nnU-Net rebuilds the network from the trainer class named in the checkpoint + the folder's plans.json,
    #    then loads the weights (the frozen encoder's included). Our trainers must be findable by name.
    predictor = nnUNetPredictor(device=device, perform_everything_on_device=device.type == "cuda", verbose=False)
    with temporary_environ(**{EXT_TRAINER_ENV: ext_trainer_value()}):
        fold = args.fold if args.fold == "all" else int(args.fold)
        predictor.initialize_from_trained_model_folder(str(args.model), use_folds=(fold,),
                                                       checkpoint_name=args.checkpoint)
    network = unwrap(predictor.network).to(device).eval()
    if not isinstance(network, FoundationFusionUNet):
        raise SystemExit(f"{args.model} holds a {type(network).__name__} ({predictor.trainer_name}), not a "
                         "foundation-fusion network; give the folder of a *Fusion* trainer")

    # 2. Which foundation levels go into which nnU-Net encoder stages.
    patch = predictor.configuration_manager.patch_size
    print(f"trainer {predictor.trainer_name}; foundation encoder {network.foundation.spec}")
    for level, stage in zip(network.feature_levels, network.fusion_stages, strict=True):
        stride = network.foundation.feature_strides[level]
        channels = network.encoder.output_channels[stage]
        print(f"  foundation level {level} (stride {stride}, {network.foundation.feature_channels[level]} channels)"
              f" -> encoder stage {stage} ({channels} channels)")

    # 3. Preprocess the scan exactly as nnU-Net does (resampling, normalisation), take one axial slice and fit
    #    it to the training patch size (centre crop or zero pad): the network sees patch-sized inputs.
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    data, _, _ = preprocessor.run_case([str(args.image)], None, predictor.plans_manager,
                                       predictor.configuration_manager, predictor.dataset_json)
    index = data.shape[1] // 2 if args.slice is None else args.slice
    if not 0 <= index < data.shape[1]:
        raise SystemExit(f"--slice {index} is outside 0..{data.shape[1] - 1}")
    slice_ = data[:, index]
    fitted = np.zeros((slice_.shape[0], *patch), dtype=np.float32)
    sides = list(zip(slice_.shape[1:], patch, strict=True))
    src = tuple(slice(max(0, (s - p) // 2), max(0, (s - p) // 2) + min(s, p)) for s, p in sides)
    dst = tuple(slice(max(0, (p - s) // 2), max(0, (p - s) // 2) + min(s, p)) for s, p in sides)
    fitted[(slice(None), *dst)] = slice_[(slice(None), *src)]
    x = torch.from_numpy(fitted)[None].to(device)

    # 4. The forward pass, and the frozen encoder's features on their own.
    with torch.no_grad():
        logits = network(x)
        logits = logits[0] if isinstance(logits, (list, tuple)) else logits
        probability = torch.softmax(logits.float(), dim=1)[0, 1:].sum(0).cpu().numpy()
        features = network.foundation(x)

    columns = 2 + 2 * len(network.feature_levels)
    figure, axes = plt.subplots(1, columns, figsize=(3 * columns, 3.2))
    axes[0].imshow(fitted[0], cmap="gray")
    axes[0].set_title(f"slice {index} (normalised)")
    axes[1].imshow(probability, cmap="magma", vmin=0, vmax=1)
    axes[1].set_title("vessel probability")
    for k, level in enumerate(network.feature_levels):
        feature = features[level][0].float().cpu()  # (C, h, w)
        flat = feature.flatten(1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        first_pc = torch.linalg.svd(centred.T, full_matrices=False)[0][:, 0].reshape(feature.shape[1:])
        axes[2 + 2 * k].imshow(feature.abs().mean(0), cmap="viridis")
        axes[2 + 2 * k].set_title(f"level {level}: mean |feature|")
        axes[3 + 2 * k].imshow(first_pc, cmap="coolwarm")
        axes[3 + 2 * k].set_title(f"level {level}: 1st PC")
        print(f"  level {level} features: {tuple(feature.shape)} for a {tuple(x.shape[2:])} input")
    for axis in axes:
        axis.axis("off")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100, bbox_inches="tight", pad_inches=0.15)  # tight_layout alone cuts the titles
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
