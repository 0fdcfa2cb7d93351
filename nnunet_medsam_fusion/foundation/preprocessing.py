"""The fixed intensity window that maps nnU-Net's normalised intensities to the encoders' [0, 1] input.

The foundation models were trained on whole images scaled to [0, 1] after clipping at the 0.5 and 99.5
percentiles (MedSAM's MR rule; CT uses a window). Min-max scaling each nnU-Net patch instead would give every
sliding-window tile and every training crop its own mapping. Here one window per dataset, in nnU-Net's normalised
units, is computed once at the first training of a model folder, recorded in the plans' ``FoundationSpec`` and
used for every tile and case, in training and prediction alike:

- ``CTNormalization``: nnU-Net clips raw intensities at the fingerprint's foreground percentiles 0.5 / 99.5 and
  subtracts the foreground mean and divides by the foreground std, so its output lies exactly in
  ``[(p00_5 - mean) / std, (p99_5 - mean) / std]``: that is the window, read from the plans alone.
- every other scheme (``ZScoreNormalization``, nnU-Net's MR default, z-scores each image with its own mean and
  std): the fingerprint holds only statistics of the raw *foreground* (label > 0) voxels across the data set,
  from which no bound in per-image z-units follows. The window is then the 0.5 / 99.5 percentiles of channel 0 of
  the normalised training cases (all cases, so every fold gets the same window), from a fixed, bounded sample.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from nnunet_medsam_fusion.settings import nnunet_folder

from .spec import FoundationSpec

PERCENTILES = (0.5, 99.5)  # MedSAM's MR clipping percentiles (bowang-lab/MedSAM pre_CT_MR.py)
MAX_CASES = 20  # evenly spaced over the sorted case identifiers
MAX_SLICES_PER_CASE = 16  # evenly spaced along the first axis
MAX_VOXELS_PER_SLICE = 65_536  # every k-th voxel of a slice
CT_EPS = 1e-8  # nnU-Net's CTNormalization divides by max(std, 1e-8)


def ct_window(intensity_properties: dict) -> tuple[float, float]:
    """The exact range of nnU-Net's CTNormalization output for one channel's fingerprint properties."""
    std = max(float(intensity_properties["std"]), CT_EPS)
    mean = float(intensity_properties["mean"])
    return ((float(intensity_properties["percentile_00_5"]) - mean) / std,
            (float(intensity_properties["percentile_99_5"]) - mean) / std)


def sample_normalised_intensities(data_folder: str | Path) -> np.ndarray:
    """A deterministic, bounded sample of channel 0 of nnU-Net's preprocessed cases in ``data_folder``."""
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    folder = str(data_folder)
    dataset_class = infer_dataset_class(folder)
    identifiers = sorted(dataset_class.get_identifiers(folder))
    if not identifiers:
        raise FileNotFoundError(f"No preprocessed cases in {folder}; run nnUNetv2_plan_and_preprocess first.")
    chosen = [identifiers[i] for i in np.unique(np.linspace(0, len(identifiers) - 1, MAX_CASES).round().astype(int))]
    dataset = dataset_class(folder, chosen)
    samples = []
    for identifier in chosen:
        data = dataset.load_case(identifier)[0]
        depth = data.shape[1]
        for z in np.unique(np.linspace(0, depth - 1, MAX_SLICES_PER_CASE).round().astype(int)):
            plane = np.asarray(data[0, int(z)], dtype=np.float32).ravel()
            step = -(-plane.size // MAX_VOXELS_PER_SLICE)
            samples.append(plane[::step])
    return np.concatenate(samples)


def intensity_window(plans: dict, configuration: str, preprocessed_dataset_folder: str | Path | None = None
                     ) -> tuple[float, float]:
    """The (low, high) window of channel 0 in nnU-Net-normalised units for ``configuration`` of ``plans``.

    ``preprocessed_dataset_folder`` (nnUNet_preprocessed/DatasetXXX_Name by default) is read only for schemes
    other than CTNormalization. The configuration is resolved as nnU-Net resolves it (``inherits_from``:
    ``3d_cascade_fullres`` takes its normalisation and data from ``3d_fullres``).
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    entry = PlansManager(plans).get_configuration(configuration)
    scheme = entry.normalization_schemes[0]
    if scheme == "CTNormalization":
        low, high = ct_window(plans["foreground_intensity_properties_per_channel"]["0"])
    else:
        if preprocessed_dataset_folder is None:
            root = nnunet_folder("nnUNet_preprocessed")
            if root is None:
                raise ValueError("nnUNet_preprocessed is not set, so the foundation encoder's intensity window "
                                 "cannot be computed from the preprocessed data; export it and run again.")
            preprocessed_dataset_folder = root / plans["dataset_name"]
        data_folder = Path(preprocessed_dataset_folder) / entry.data_identifier
        low, high = (float(v) for v in np.percentile(sample_normalised_intensities(data_folder), PERCENTILES))
    if not high > low:  # constant data: any window keeps it constant; one unit wide avoids dividing by zero
        high = low + 1.0
    return low, high


def with_plans_window(spec: FoundationSpec, plans: dict, configuration: str,
                      preprocessed_dataset_folder: str | Path | None = None) -> FoundationSpec:
    """``spec`` with the dataset's fixed intensity window (for a new model folder)."""
    window = intensity_window(plans, configuration, preprocessed_dataset_folder)
    return dataclasses.replace(spec, intensity_window=window)
