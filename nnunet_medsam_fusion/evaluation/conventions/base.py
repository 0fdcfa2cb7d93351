"""What a metric convention is: the rules that turn one prediction/reference pair into named numbers.

Every convention (``ours``, ``topcow``, ...) is one module here with one ``Convention`` subclass, registered by
name in ``conventions/__init__.py``. The layers above (folder evaluation, comparison, writing, the CLI) only
call this interface, so a new convention is one module plus one registry line:

* ``context(dataset, dataset_json, options) -> context``: what scoring needs besides the arrays, from the data
  set's dataset.json (``None`` when there is none) and the command's options (``per_slice``, ``roi_dir``, a
  track, ...); refuses, naming the option, what the convention cannot use; carries ``labels_source``.
  ``check_cases(context, cases)`` refuses early what cannot be scored, ``for_case(context, case)`` narrows the
  context to one case (e.g. its ROI file).
* ``score_case(pred, ref, spacing, context) -> list[dict]``: integer label maps in (z, y, x) order with the
  spacing in the same order; the case's rows of named values (one row per case, or per case and label for
  ``ours``). A value may be nested where the convention's own JSON keeps it (TopCoW's detection dicts).
* ``complete(rows, cases, context)``: the rows and notes once every case is scored; ``labels(rows, context)``.
* ``columns(rows) -> list[str]`` and ``flat_row(row) -> dict``: the CSV columns and one row's flat CSV form
  (the writer adds a ``convention`` column in front).
* ``aggregate(rows, labels) -> dict``: the convention's aggregates over cases (not necessarily a mean per column:
  TopCoW's balanced accuracies, TopBrain's detection F1 averaged over labels).
* ``case_table(rows)``, ``summary_table(aggregates)``, ``summary_rows(aggregates)``, ``comparison_table(...)``:
  how its numbers are shown (markdown, summary CSV); ``text`` names the rules in every output.

``ours`` (the package's own convention) has its native file layout and the paper's tables, written by the
layers above; every other convention is written in the common layout of ``writing.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class Convention(ABC):
    """One set of metric rules; stateless, so one instance serves every case (also in worker processes)."""

    name: str = ""
    text: str = ""  # one line naming the rules, written into every output
    title: str = ""  # heading of its comparison table
    summary_columns: tuple[str, ...] = ()

    @abstractmethod
    def context(self, dataset: Mapping | None, dataset_json: Path | None, options: Mapping[str, Any]) -> Any:
        """Scoring context from dataset.json and the command's options (refuses options it cannot use)."""

    def for_case(self, context: Any, case: str) -> Any:
        """The context of one case (default: the same for every case)."""
        return context

    @abstractmethod
    def score_case(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], context: Any) -> list[dict]:
        """The rows of one case: named values, without the case name (the caller adds it)."""

    def check_cases(self, context: Any, cases: Sequence[str]) -> None:
        """Refuse, before any scoring, cases the context cannot serve (e.g. a missing ROI file)."""
        return None

    def unpredicted_note(self, unpredicted: Sequence[str], total: int, listed: bool, names: str) -> str:
        """The note on listed or reference cases without a prediction (not scored)."""
        return f"{len(unpredicted)} case(s) have no prediction and were not scored: {names}"

    def complete(self, rows: list[dict], cases: Sequence[str], context: Any) -> tuple[list[dict], list[str]]:
        """Rows and notes once every case is scored (default: the rows as they are, no note)."""
        return rows, []

    def labels(self, rows: Sequence[Mapping], context: Any) -> dict[str, tuple[int, ...]]:
        """The labels scored, name -> label values (default: none reported)."""
        return {}

    def labels_source(self, context: Any) -> str:
        """Where the labels came from (contexts carry it as ``labels_source``)."""
        return context.labels_source

    @abstractmethod
    def aggregate(self, rows: Sequence[Mapping], labels: Mapping[str, tuple[int, ...]]) -> dict:
        """The convention's aggregates over the scored rows (``labels``: what ``labels()`` reported)."""

    def flat_row(self, row: Mapping) -> dict:
        return dict(row)

    def columns(self, rows: Sequence[Mapping]) -> list[str]:
        """CSV columns of the flat rows in first-seen order (a value missing in a row leaves its cell empty)."""
        columns: list[str] = []
        for row in rows:
            columns += [key for key in self.flat_row(row) if key not in columns]
        return columns

    def case_table(self, rows: Sequence[Mapping]) -> str:
        raise NotImplementedError(f"convention {self.name} has no case table")

    def summary_table(self, aggregates: Mapping) -> str:
        raise NotImplementedError(f"convention {self.name} has no summary table")

    def summary_rows(self, aggregates: Mapping) -> list[dict]:
        raise NotImplementedError(f"convention {self.name} has no summary rows")

    def comparison_table(self, trainers: Sequence[tuple[str, str, Mapping | None]]) -> str:
        """One row per (trainer, row label, aggregates or None when nothing was scored)."""
        raise NotImplementedError(f"convention {self.name} has no comparison table")

    def comparison_note(self, distance_unit: str) -> str:
        """How to read the comparison table's cells."""
        return ""
