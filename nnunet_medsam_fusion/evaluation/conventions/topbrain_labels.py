"""TopBrain 2025 side-road labels and valid-neighbour tables, as data (the label maps, which the converter
writes too, are ``data/convert/topbrain.LABELS``).

Transcribed from github CoWBenchmark/TopBrain_Eval_Metrics at commit ba4252ab0dbe9d59a9ae45058ae040b016aae0ad
(package ``topbrain25_eval``): side-road labels ``constants.py:78-100``,
valid neighbours ``metrics/valid_neighbors_ct_all.json`` and ``metrics/valid_neighbors_mr_all.json`` (label ->
labels it may touch; symmetric, every label 1..40 / 1..42 has an entry).
"""

from __future__ import annotations

# constants.py:82-100: the "side road" vessels whose detection is scored (in this order)
_SIDE_ROAD_COMMON = (8, 9, 10, 15, 16, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34)
SIDE_ROAD_LABELS: dict[str, tuple[int, ...]] = {
    "ct": (*_SIDE_ROAD_COMMON, 37, 38, 39),
    "mr": (*_SIDE_ROAD_COMMON, 41, 42),
}

# metrics/valid_neighbors_ct_all.json
VALID_NEIGHBOURS_CT: dict[int, tuple[int, ...]] = {
    1: (2, 3, 23, 24, 25, 26, 27, 28, 29, 30), 2: (1, 4, 8, 11, 21, 25, 31, 38), 3: (1, 6, 9, 12, 22, 26, 32, 39),
    4: (2, 5, 8, 11, 31), 5: (4, 17, 38), 6: (3, 7, 9, 12, 32), 7: (6, 19, 39), 8: (2, 4, 25, 31),
    9: (3, 6, 26, 32), 10: (11, 12, 15), 11: (2, 4, 10, 12, 13, 14, 15, 16), 12: (3, 6, 10, 11, 13, 14, 15, 16),
    13: (11, 12, 14, 15, 16), 14: (11, 12, 13, 15, 16), 15: (10, 11, 12, 13, 14, 16), 16: (11, 12, 13, 14, 15),
    17: (5, 18), 18: (17,), 19: (7, 20), 20: (19,), 21: (2, 36, 37, 38), 22: (3, 36, 37, 39), 23: (1, 24, 27, 29),
    24: (1, 23, 28, 30), 25: (1, 2, 8, 38), 26: (1, 3, 9, 39), 27: (1, 23, 29), 28: (1, 24, 30),
    29: (1, 23, 27, 30), 30: (1, 24, 28, 29), 31: (2, 4, 8), 32: (3, 6, 9), 33: (), 34: (), 35: (36, 37, 38, 39),
    36: (21, 22, 35), 37: (21, 22, 35, 38, 39), 38: (2, 5, 21, 25, 35, 37), 39: (3, 7, 22, 26, 35, 37), 40: (),
}

# metrics/valid_neighbors_mr_all.json
VALID_NEIGHBOURS_MR: dict[int, tuple[int, ...]] = {
    1: (2, 3, 23, 24, 25, 26, 27, 28, 29, 30), 2: (1, 4, 8, 11, 21, 25, 31), 3: (1, 6, 9, 12, 22, 26, 32),
    4: (2, 5, 8, 11, 31, 33), 5: (4, 17), 6: (3, 7, 9, 12, 32, 34), 7: (6, 19), 8: (2, 4, 25, 31),
    9: (3, 6, 26, 32), 10: (11, 12, 15), 11: (2, 4, 10, 12, 13, 14, 15, 16), 12: (3, 6, 10, 11, 13, 14, 15, 16),
    13: (11, 12, 14, 15, 16), 14: (11, 12, 13, 15, 16), 15: (10, 11, 12, 13, 14, 16), 16: (11, 12, 13, 14, 15),
    17: (5, 18), 18: (17,), 19: (7, 20), 20: (19,), 21: (2,), 22: (3,), 23: (1, 24, 27, 29), 24: (1, 23, 28, 30),
    25: (1, 2, 8), 26: (1, 3, 9), 27: (1, 23, 29), 28: (1, 24, 30), 29: (1, 23, 27, 30), 30: (1, 24, 28, 29),
    31: (2, 4, 8), 32: (3, 6, 9), 33: (4,), 34: (6,), 35: (37, 39, 41), 36: (38, 40, 42), 37: (35, 39),
    38: (36, 40), 39: (35, 37, 41), 40: (36, 38, 42), 41: (35, 39), 42: (36, 40),
}

VALID_NEIGHBOURS: dict[str, dict[int, tuple[int, ...]]] = {"ct": VALID_NEIGHBOURS_CT, "mr": VALID_NEIGHBOURS_MR}
