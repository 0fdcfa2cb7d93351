"""``nnmsf convert``: public TOF-MRA releases -> nnU-Net v2 raw data sets (one module per release).

``dataset_writer`` holds the rules every release shares (geometry checks, label mapping, all-or-nothing
writing); ``cas2023``, ``topcow``, ``costa`` and ``pairs`` only know where each release keeps its files.
"""

from nnunet_medsam_fusion.data.convert.cas2023 import convert_cas2023
from nnunet_medsam_fusion.data.convert.costa import convert_costa
from nnunet_medsam_fusion.data.convert.dataset_writer import ConversionSummary
from nnunet_medsam_fusion.data.convert.pairs import convert_pairs
from nnunet_medsam_fusion.data.convert.topcow import convert_topcow, read_label_mapping, restore_topcow_labels

__all__ = ["ConversionSummary", "convert_cas2023", "convert_costa", "convert_pairs", "convert_topcow",
           "read_label_mapping", "restore_topcow_labels"]
