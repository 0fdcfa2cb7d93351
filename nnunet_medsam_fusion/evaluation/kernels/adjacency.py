"""Label adjacency checked against a table of allowed neighbours."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def invalid_neighbour_counts(touching: Mapping[int, Sequence[int]],
                             valid: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """For every label in ``touching``, how many of the labels it touches ``valid`` does not allow it.

    ``touching``: label -> the other labels among its voxels' neighbours (``LabelIndex.neighbours``);
    ``valid``: label -> the labels it may touch. A label missing from ``valid`` is an error (KeyError), as a
    label the table does not know cannot be judged.
    """
    return {label: len(set(found) - set(valid[label])) for label, found in touching.items()}
