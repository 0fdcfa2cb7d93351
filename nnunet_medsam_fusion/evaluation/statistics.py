"""Comparing trainers' ``ours`` scores: across-case and across-fold mean ± std, paired Wilcoxon tests.

A p-value is only worth printing when the test could have found something, so every paired test says why its
p-value is not meaningful when that is so (``PairedTest.caveats``): tables mark it, the CSV carries it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import wilcoxon

from nnunet_medsam_fusion.evaluation.conventions.ours import METRICS, mean_std, metric_unit
from nnunet_medsam_fusion.evaluation.runs import TrainerRun

ALPHA = 0.05  # the level a reader compares p with
NO_DIFFERENCE = "all differences zero"
TOO_FEW_PAIRS = "too few pairs"
TIES = "ties"
SCIPY_WARNING = "scipy warning"
# caveat -> (marker next to the p-value, the note that explains it under the tables)
P_CAVEATS = {
    NO_DIFFERENCE: ("§", "every paired difference is zero: there is nothing to test; p = 1 is shown by "
                         "convention"),
    TOO_FEW_PAIRS: ("†", f"too few pairs with a non-zero difference: with n such pairs the smallest two-sided "
                         f"p the signed-rank test can give is 2/2^n, above {ALPHA} for n < 6, so this p cannot "
                         "show a difference"),
    TIES: ("‡", "tied or zero differences: the exact signed-rank distribution does not apply; scipy drops the "
                "zero differences and falls back to a permutation test (few pairs) or the normal approximation "
                "with tie correction (more pairs)"),
    SCIPY_WARNING: ("*", "scipy warned while computing this p-value (the warning is in the summary CSV's "
                         "p_caveat column)"),
}


@dataclass(frozen=True)
class PairedTest:
    """A two-sided Wilcoxon signed-rank test on paired cases and why its p-value may not be meaningful."""

    p_value: float
    n_pairs: int
    caveats: tuple[str, ...] = ()

    @property
    def marker(self) -> str:
        return "".join(P_CAVEATS[caveat.split(":")[0]][0] for caveat in self.caveats)


def paired_wilcoxon(values: Mapping, reference_values: Mapping) -> PairedTest:
    """The test over keys defined (not NaN) in both mappings; nan p-value without any pair."""
    keys = [k for k in values if k in reference_values
            and not np.isnan(values[k]) and not np.isnan(reference_values[k])]
    if not keys:
        return PairedTest(float("nan"), 0)
    differences = np.array([values[k] for k in keys], dtype=np.float64) - np.array(
        [reference_values[k] for k in keys], dtype=np.float64)
    nonzero = np.abs(differences[differences != 0])
    if nonzero.size == 0:
        return PairedTest(1.0, len(keys), (NO_DIFFERENCE,))
    caveats = []
    if 2.0 ** (1 - nonzero.size) > ALPHA:
        caveats.append(TOO_FEW_PAIRS)
    if nonzero.size < differences.size or np.unique(nonzero).size < nonzero.size:
        caveats.append(TIES)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p_value = float(wilcoxon(differences).pvalue)
    caveats += [f"{SCIPY_WARNING}: {warning.message}" for warning in caught]
    return PairedTest(p_value, len(keys), tuple(caveats))


def _metric_values(run: TrainerRun, label: str, metric: str) -> dict[tuple, float]:
    rows = [row for row in run.rows if row["label"] == label]
    return {(row["fold"], row["case"], row.get("slice")): row[metric] for row in rows}


def trainer_statistics(runs: Mapping[str, TrainerRun], labels: Sequence[str],
                       reference: str | None) -> list[dict]:
    """Per trainer, label and metric: across-case and across-fold mean ± std and the paired test."""
    stats = []
    unit = next((result.distance_unit for run in runs.values() for result in run.evaluations.values()), "mm")
    for trainer, run in runs.items():
        if not run.evaluations:
            continue
        for label in labels:
            for metric in METRICS:
                values = _metric_values(run, label, metric)
                fold_means = [mean_std(v for (f, _, _), v in values.items() if f == fold)["mean"]
                              for fold in run.evaluations]
                folds = mean_std(fold_means)
                test = PairedTest(float("nan"), 0)
                if reference is not None and trainer != reference:
                    test = paired_wilcoxon(values, _metric_values(runs[reference], label, metric))
                stats.append({"trainer": trainer, "paper_row": run.row_label, "label": label, "metric": metric,
                              "unit": metric_unit(metric, unit), **mean_std(values.values()),
                              "fold_mean": folds["mean"], "fold_std": folds["std"], "n_folds": folds["n"],
                              "p_value": test.p_value, "p_marker": test.marker,
                              "p_caveat": "; ".join(test.caveats), "n_pairs": test.n_pairs,
                              "reference": reference or ""})
    return stats
