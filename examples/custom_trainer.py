"""Your own trainers next to ours: subclasses that nnU-Net finds by class name through ``nnUNet_extTrainer``.

Copy this file into a folder of your own (say ~/nnunet_trainers/), edit the classes, then

    export nnUNet_extTrainer=~/nnunet_trainers     # your folder ...
    eval "$(nnmsf env)"                            # ... with the package's trainer folder appended
    nnUNetv2_train 120 2d 0 -tr nnUNetTrainerMedSAM2Fusion_stride16_300epochs

nnU-Net imports every .py file of each listed folder under its bare file name, so give the file a name no
other module uses, keep imports at the top cheap, and put scripts' work under ``if __name__ == "__main__"``.

Rules nnU-Net imposes on a trainer (2.8.1):
- keep the exact ``__init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda"))``
  signature (nnU-Net records the arguments for its checkpoints); change settings after ``super().__init__``
  or as class attributes;
- everything that shapes the network must follow from the class and the plans: prediction rebuilds the network
  from the class name alone, so keep this file in ``nnUNet_extTrainer`` when you predict, too.

Run this file to check that nnU-Net finds your classes, and optionally to train one:

    python custom_trainer.py                      # prints the nnUNet_extTrainer value and checks each class
    python custom_trainer.py --train 120 --trainer nnUNetTrainerMedSAM2Fusion_stride16_300epochs --fold 0
"""

from __future__ import annotations

import torch

from nnunet_medsam_fusion.trainers import nnUNetTrainerMedSAM2Fusion, nnUNetTrainerMedSAM2FusionTiny_NoMirroring


class nnUNetTrainerMedSAM2Fusion_stride16_300epochs(nnUNetTrainerMedSAM2Fusion):
    """Other fused levels and another schedule: only the stride-16 MedSAM2 features, 300 epochs."""

    feature_levels = (2,)  # the package's default fuses levels (1, 2): strides 8 and 16

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 300
        self.initial_lr = 5e-3


class nnUNetTrainerMedSAM2FusionTiny_NoMirroring_smoke(nnUNetTrainerMedSAM2FusionTiny_NoMirroring):
    """A check of your setup in about a minute on a CPU: a tiny, RANDOM-weight MedSAM2 encoder without mirroring
    (the package's ``_NoMirroring`` variant, for TopCoW multiclass), one epoch of three iterations. Its features
    mean nothing; it only proves that training, saving and prediction work."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1


MY_TRAINERS = [nnUNetTrainerMedSAM2Fusion_stride16_300epochs, nnUNetTrainerMedSAM2FusionTiny_NoMirroring_smoke]


def main() -> int:
    import argparse
    import os
    import shutil
    import subprocess
    from pathlib import Path

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_medsam_fusion.settings import EXT_TRAINER_ENV, ext_trainer_value, temporary_environ

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", metavar="DATASET", help="train --trainer on this dataset id with nnUNetv2_train")
    parser.add_argument("--trainer", default=MY_TRAINERS[0].__name__, help="class to train")
    parser.add_argument("--fold", default="0")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    # This file's folder first, then the folders you already listed, then the package's (as nnmsf env does).
    here = str(Path(__file__).resolve().parent)
    yours = [folder for folder in os.environ.get(EXT_TRAINER_ENV, "").split(os.pathsep) if folder and folder != here]
    value = ext_trainer_value(current=os.pathsep.join([here, *yours]))
    print(f"export {EXT_TRAINER_ENV}={value}")
    with temporary_environ(**{EXT_TRAINER_ENV: value}):
        for trainer in MY_TRAINERS:
            found = recursive_find_trainer_class_by_name(trainer.__name__)
            print(f"nnU-Net finds {found.__name__}: fuses levels {found.feature_levels}")
        if args.train is None:
            return 0
        command = [shutil.which("nnUNetv2_train") or "nnUNetv2_train", args.train, "2d", args.fold,
                   "-tr", args.trainer, "-device", args.device]
        print("+", " ".join(command), flush=True)
        return subprocess.run(command).returncode  # the child inherits nnUNet_extTrainer set above


if __name__ == "__main__":
    raise SystemExit(main())
