"""Exact reuse of frozen-encoder features across the folds of an ensemble prediction.

``nnUNetv2_predict -f 0 1 2 3 4`` builds one network and, for every case, loads each fold's parameters in turn
and runs the whole sliding window (every tile, every mirror) again (nnunetv2 2.8.1,
``nnUNetPredictor.predict_logits_from_preprocessed_data``). The frozen encoder's weights are the same in every
fold, so its features of a tile are too: they are computed for the first fold and looked up for the others.

Exactness: an entry is keyed by a digest (BLAKE2b-128) of the tile's channel 0 bytes, shape and dtype, the
encoder precision and a digest of the frozen weights taken when parameters are loaded; different weights (folds
trained from different encoders) change the key and clear the cache, so it falls back to computing.

Memory and eviction: at most ``budget_bytes`` of features, held on the CPU. The access pattern is a cyclic scan
(fold-outer loop, the same tiles in the same order per fold), for which least-recently-used eviction gives no hit
at all once a case's features exceed the budget. So entries are admitted while there is room and otherwise
refused: the first tiles of a case stay cached and hit in every later fold. Every parameter load starts a new
*generation*; when a generation's first lookups miss (a new case begins) the entries no lookup of this generation
used are dropped, so the previous case's features make room for the new case's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_BUDGET_BYTES = 2 * 2**30


def tensor_bytes(tensor: Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype, any device), for hashing."""
    return tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def weights_digest(named_tensors: Iterable[tuple[str, Tensor]]) -> bytes:
    """BLAKE2b digest of names, dtypes, shapes and bytes of tensors, in name order."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor_bytes(tensor))
    return digest.digest()


@dataclass
class _Entry:
    features: list[Tensor]
    nbytes: int
    generation: int


class FeatureCache:
    """Bounded, exact cache of frozen-encoder features keyed by input tile and frozen-weight digest."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.entries: dict[bytes, _Entry] = {}
        self.used_bytes = 0
        self.weights: bytes | None = None  # digest of the loaded frozen weights; None: unknown, cache unused
        self.generation = 0
        self.generation_hits = 0
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.entries.clear()
        self.used_bytes = 0

    def weights_loaded(self, digest: bytes | None) -> None:
        """Parameters were loaded: a new generation; other frozen weights (or unknown ones) clear the cache."""
        if digest is None or digest != self.weights:
            self.clear()
        self.weights = digest
        self.generation += 1
        self.generation_hits = 0

    def key(self, x: Tensor, precision: str) -> bytes:
        """Digest of what decides the features of ``x``: its channel 0, shape, dtype, precision and weights."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(self.weights or b"")
        digest.update(f"{tuple(x.shape)}|{x.dtype}|{precision}|".encode())
        digest.update(tensor_bytes(x[:, :1]))
        return digest.digest()

    def lookup(self, key: bytes, device: torch.device) -> list[Tensor] | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        entry.generation = self.generation
        self.hits += 1
        self.generation_hits += 1
        return [feature.to(device) for feature in entry.features]

    def store(self, key: bytes, features: list[Tensor]) -> None:
        if self.generation_hits == 0:  # a new case: what this generation has not used is the previous case's
            for stale in [k for k, e in self.entries.items() if e.generation < self.generation]:
                self.used_bytes -= self.entries.pop(stale).nbytes
        nbytes = sum(f.numel() * f.element_size() for f in features)
        if self.used_bytes + nbytes > self.budget_bytes:
            return  # refused, not evicted: keeps the cached prefix of the cyclic scan
        self.entries[key] = _Entry([f.detach().to("cpu") for f in features], nbytes, self.generation)
        self.used_bytes += nbytes
