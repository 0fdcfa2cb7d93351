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

from nnunet_medsam_fusion.settings import nnunet_folder


def check_request(dataset_id: int, name: str) -> None:
    """A dataset id nnU-Net accepts (1..999) and a name usable in ``DatasetNNN_Name``."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id {dataset_id} is outside 1..999, the range nnU-Net accepts; "
                         "pick one in range (e.g. --dataset-id 501)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name {name!r} is invalid: use letters, digits, '_' or '-' (e.g. --name MyTOF)")


def target_folder(raw: Path, dataset_id: int, name: str, overwrite: bool) -> Path:
    """``raw/DatasetNNN_name``, refusing an id nnU-Net already knows under another name and, without
    ``overwrite``, an existing non-empty folder.

    nnU-Net looks an id up in all three of its folders (``More than one dataset name found for dataset id``
    otherwise), so when ``raw`` is ``$nnUNet_raw`` the id is checked in ``$nnUNet_preprocessed`` and
    ``$nnUNet_results`` too.
    """
    folder = raw / f"Dataset{dataset_id:03d}_{name}"
    places = nnunet_folders_beside(raw)
    for variable, place in places.items():
        same_id = sorted(p for p in place.glob(f"Dataset{dataset_id:03d}_*") if p.name != folder.name)
        if same_id:
            raise FileExistsError(
                f"{same_id[0]} ({variable}) already uses dataset id {dataset_id} and nnU-Net needs unique ids "
                f"across nnUNet_raw, nnUNet_preprocessed and nnUNet_results: choose another --dataset-id (e.g. "
                f"--dataset-id {free_dataset_id(dataset_id, list(places.values()))}) or remove that folder")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        raise FileExistsError(f"{folder} already exists; pass --overwrite to replace it, or choose another "
                              "--dataset-id")
    return folder


def nnunet_folders_beside(raw: Path) -> dict[str, Path]:
    """The folders a new data set's id must be unique in: ``raw`` and, when ``raw`` is ``$nnUNet_raw``, the
    other two nnU-Net folders that are set."""
    places = {"nnUNet_raw": raw}
    if _same_folder(raw, nnunet_folder("nnUNet_raw")):
        for variable in ("nnUNet_preprocessed", "nnUNet_results"):
            if (place := nnunet_folder(variable)) is not None and place.is_dir():
                places[variable] = place
    return places


def free_dataset_id(start: int, places: list[Path]) -> int:
    """The first dataset id after ``start`` (wrapping within 1..999) that none of ``places`` uses."""
    used = {int(p.name[7:10]) for place in places for p in place.glob("Dataset[0-9][0-9][0-9]_*")}
    for candidate in [*range(start + 1, 1000), *range(1, start)]:
        if candidate not in used:
            return candidate
    raise FileExistsError("every dataset id 1..999 is in use")


def stale_folders(folder: Path) -> list[Path]:
    """Preprocessed data and trained models under the name of the raw data set ``folder`` (in
    ``$nnUNet_preprocessed`` / ``$nnUNet_results``): made from its old contents once it is replaced."""
    places = nnunet_folders_beside(folder.parent)
    return [place / folder.name for variable, place in places.items()
            if variable != "nnUNet_raw" and (place / folder.name).exists()]


def _same_folder(a: Path, b: Path | None) -> bool:
    try:
        return b is not None and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


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
