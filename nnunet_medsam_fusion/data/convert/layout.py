"""Finding a release's files on disk: the folder the user points at, or the one folder a zip unpacked inside it."""

from __future__ import annotations

from pathlib import Path

from nnunet_medsam_fusion.data.convert.dataset_writer import FILE_ENDINGS


def find_release_root(src: Path, required: tuple[str, ...], layout: str) -> Path:
    """``src`` if it holds the ``required`` sub-folders, else its single child that does, else an error."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder; point the command at the unpacked {layout} release")

    def holds(folder: Path) -> bool:
        return all((folder / sub).is_dir() for sub in required)

    if holds(src):
        return src
    children = [child for child in sorted(src.iterdir()) if child.is_dir() and holds(child)]
    if len(children) == 1:
        return children[0]
    found = sorted(child.name for child in src.iterdir() if child.is_dir())
    raise FileNotFoundError(f"{src} does not look like {layout}: expected the sub-folders {', '.join(required)}, "
                            f"found {found[:10]}. Point the command at the folder that holds them")


def image_files(folder: Path, pattern: str = "*") -> list[Path]:
    """Files in ``folder`` matching ``pattern`` whose ending nnU-Net reads, sorted; hidden files skipped."""
    return sorted(p for p in folder.glob(pattern)
                  if p.is_file() and not p.name.startswith(".") and p.name.endswith(FILE_ENDINGS))
