"""Exact reuse of frozen-encoder features wherever the encoder would see the same input again.

``nnUNetv2_predict -f 0 1 2 3 4`` builds one network and, for every case, loads each fold's parameters in turn
and runs the whole sliding window (every tile, every mirror) again (nnunetv2 2.8.1,
``nnUNetPredictor.predict_logits_from_preprocessed_data``). The frozen encoder's weights are the same in every
fold, so its features of a tile are too: they are computed for the first fold and looked up for the others.

Exactness: an entry is keyed by a digest (BLAKE2b-128) of the tile's channel 0 bytes, shape and dtype and of what
else decides the features (compute dtype, device, levels). The frozen weights are checked before every lookup, by
a fingerprint of the weight tensors (identity, version counter, storage, device, dtype), which changes on every
route that can change them: ``load_state_dict`` through any module, in-place edits, ``.to()`` / device moves,
swapped tensors. When it changes, the weights are compared with a copy taken when the current entries were
stored: equal values (the next fold of an ensemble) keep the entries, anything else clears them.

Memory and eviction: at most ``budget_bytes`` of features, held on the CPU, plus the copy of the frozen weights.
The access pattern is a cyclic scan (fold-outer loop, the same tiles in the same order per fold), for which
least-recently-used eviction gives no hit at all once a case's features exceed the budget. So entries are
admitted while there is room and otherwise refused: the first tiles of a case stay cached and hit in every later
fold, and reuse holds for as much of a case as the budget holds. Every change of the weights' fingerprint starts
a new *generation*. A miss on a tile the cache has never seen (neither stored nor refused since the last case
began) means a new case: the entries and refused keys no lookup of this generation has used are the previous
case's, and are dropped to make room. A miss on a tile refused for lack of room is the current case's overflow and
drops nothing. Tiles that recur across cases (zero padding, background) stay, since the new case used them. Cases
are told apart only through the weights' reload, which nnU-Net's ensemble prediction does per case and fold; where
one network predicts case after case without a reload (nnU-Net's validation at the end of training), the first
cases' entries stay and later cases only reuse what fits beside them (results stay exact).

Entries hold copies: a tensor on the CPU sliced out of a micro-batch would otherwise keep the whole micro-batch
alive, and the budget would count a fraction of the memory held.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_BUDGET_BYTES = 2 * 2**30
MAX_REFUSED = 1 << 16  # keys remembered as refused (16-byte digests): bounds the bookkeeping, not the features


def tensor_bytes(tensor: Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype, any device), for hashing."""
    return tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def version(tensor: Tensor) -> int | object:
    """A tensor's version counter (bumped by every in-place change); inference tensors have none, so a fresh
    object stands in for it and their values are compared on every check."""
    try:
        return tensor._version
    except RuntimeError:
        return object()


def weights_fingerprint(tensors: list[Tensor]) -> tuple:
    """Cheap identity of a list of tensors' current values: changes whenever any of them may have changed."""
    return tuple((id(t), version(t), t.untyped_storage().data_ptr(), t.storage_offset(), str(t.device), t.dtype,
                  tuple(t.shape)) for t in tensors)


def same_values(a: list[Tensor], b: list[Tensor]) -> bool:
    """Bit-equal tensors (same shapes and dtypes), wherever each lives."""
    return len(a) == len(b) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y.to(x.device)) for x, y in zip(a, b, strict=True))


@dataclass
class _Entry:
    features: list[Tensor]
    nbytes: int
    generation: int


class FeatureCache:
    """Bounded, exact cache of one frozen encoder's features, keyed by input tile."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.entries: dict[bytes, _Entry] = {}
        self.used_bytes = 0
        self.fingerprint: tuple | None = None
        self.weights_copy: list[Tensor] | None = None  # the frozen weights the entries were computed with
        self.generation = 0
        self.refused: dict[bytes, int] = {}  # keys of the current case that did not fit -> generation last missed
        self.new_case_seen = False  # this generation has already dropped the previous case's entries
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self.entries.clear()
        self.refused.clear()
        self.used_bytes = 0
        self.weights_copy = None

    def check_weights(self, tensors: list[Tensor]) -> None:
        """Before a lookup: a changed fingerprint starts a new generation; changed values clear the entries."""
        fingerprint = weights_fingerprint(tensors)
        if fingerprint == self.fingerprint:
            return
        self.fingerprint = fingerprint
        self.generation += 1
        self.new_case_seen = False
        if self.weights_copy is None or not same_values(self.weights_copy, tensors):
            self.clear()
            self.weights_copy = [t.detach().clone() for t in tensors]

    def key(self, x: Tensor, context: str) -> bytes:
        """Digest of what decides the features of ``x``: its channel 0, shape and dtype, and ``context``."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{tuple(x.shape)}|{x.dtype}|{context}|".encode())
        digest.update(tensor_bytes(x[:, :1]))
        return digest.digest()

    def lookup(self, key: bytes, device: torch.device) -> list[Tensor] | None:
        entry = self.entries.get(key)
        if entry is None:
            self.misses += 1
            if key in self.refused:
                self.refused[key] = self.generation
            return None
        entry.generation = self.generation
        self.hits += 1
        return [feature.to(device) for feature in entry.features]

    def store(self, key: bytes, features: list[Tensor]) -> None:
        """Keep a copy of the features computed for a missed ``key``, if the budget has room."""
        if key not in self.refused and not self.new_case_seen:  # an unseen tile: a new case has begun
            self.new_case_seen = True
            self.refused = {k: g for k, g in self.refused.items() if g == self.generation}
            for stale in [k for k, e in self.entries.items() if e.generation < self.generation]:
                self.used_bytes -= self.entries.pop(stale).nbytes
        nbytes = sum(f.numel() * f.element_size() for f in features)
        if self.used_bytes + nbytes > self.budget_bytes:  # refused, not evicted: keeps the cyclic scan's prefix
            if len(self.refused) >= MAX_REFUSED:  # one long generation (no weight reload between cases)
                self.refused.clear()
            self.refused[key] = self.generation
            return
        self.entries[key] = _Entry([f.detach().to("cpu", copy=True) for f in features], nbytes, self.generation)
        self.used_bytes += nbytes
