"""Writing a data set into nnU-Net's raw folder safely: valid id and name, no clash, all or nothing.

``nnmsf synth`` and ``nnmsf convert`` both write ``nnUNet_raw/DatasetNNN_Name``: into a hidden sibling folder
first, renamed into place only once complete, so an interrupted or refused run never leaves half a data set and
an existing one is replaced only by a complete new one.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path


def check_request(dataset_id: int, name: str) -> None:
    """A dataset id nnU-Net accepts (1..999) and a name usable in ``DatasetNNN_Name``."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id {dataset_id} is outside 1..999, the range nnU-Net accepts; "
                         "pick one in range (e.g. --dataset-id 501)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name {name!r} is invalid: use letters, digits, '_' or '-' (e.g. --name MyTOF)")


def target_folder(raw: Path, dataset_id: int, name: str, overwrite: bool) -> Path:
    """``raw/DatasetNNN_name``, refusing an id nnU-Net already knows under another name and, without
    ``overwrite``, an existing non-empty folder."""
    folder = raw / f"Dataset{dataset_id:03d}_{name}"
    same_id = sorted(p for p in raw.glob(f"Dataset{dataset_id:03d}_*") if p.name != folder.name)
    if same_id:
        raise FileExistsError(f"{same_id[0]} already uses dataset id {dataset_id} and nnU-Net needs unique ids: "
                              "choose another --dataset-id or remove that folder")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise FileExistsError(f"{folder} already exists; pass --overwrite to replace it, or choose another "
                              "--dataset-id")
    return folder


def replace_folder(staging: Path, folder: Path) -> None:
    """Renames ``staging`` to ``folder``, retiring an existing ``folder`` only once the new one is complete."""
    if folder.exists():
        retired = folder.parent / f".{folder.name}.replaced-{uuid.uuid4().hex[:8]}"
        folder.rename(retired)
        staging.rename(folder)
        if retired.is_dir():
            shutil.rmtree(retired)
        else:
            retired.unlink()
    else:
        staging.rename(folder)
