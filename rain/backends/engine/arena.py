"""The key/value arena: keys and values of computed trie positions, one slot per token, on the model's device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from rain.backends.engine.hf import ModelShape
from rain.backends.engine.trie import NO_SLOT, _TrieNode

MIN_ARENA_SLOTS = 256            # first arena allocation, in tokens


@dataclass(frozen=True)
class PrefixKV:
    """Keys and values of a constant token prefix (the judge's instruction and few-shot examples).

    Computed once per model and judge prompt (`TrieEngine.export_prefix`) and copied into each new engine
    (`TrieEngine.adopt_prefix`), so runs share the work without sharing mutable state (issue #3: "computed once
    per model and judge format").
    """

    tokens: tuple[int, ...]
    values: torch.Tensor            # [2, layers, kv_heads, len(tokens), head_dim], never written after creation


class _KVArena:
    """Keys and values of computed tokens, one slot per token: data [2 (k, v), layers, kv_heads, slots, head_dim].

    Grows by doubling up to `max_slots`; slots are handed out lowest first, so a path computed in order tends
    to sit in one contiguous run, which is then gathered as one slice copy.
    """

    def __init__(self, shape: ModelShape, max_slots: int):
        self.shape = shape
        self.max_slots = max_slots
        self.data = torch.empty((2, shape.layers, shape.kv_heads, 0, shape.head_dim), dtype=shape.dtype,
                                device=shape.device)
        self.in_use = np.zeros(0, dtype=bool)
        self.owners: list[_TrieNode | None] = []
        self.used = 0
        self.frees = 0                  # slots ever freed: a copy of slot contents is stale once this moves

    @property
    def capacity(self) -> int:
        return self.data.shape[3]

    @property
    def free_slots(self) -> int:
        return self.max_slots - self.used

    def allocate(self, nodes: Sequence[_TrieNode]) -> np.ndarray:
        """Give each node a slot (the caller made sure `len(nodes) <= free_slots`)."""
        count = len(nodes)
        if self.used + count > self.capacity:
            self._grow(min(self.max_slots, max(2 * self.capacity, self.used + count, MIN_ARENA_SLOTS)))
        slots = np.flatnonzero(~self.in_use)[:count]
        self.in_use[slots] = True
        for node, slot in zip(nodes, slots.tolist()):
            node.slot = slot
            self.owners[slot] = node
        self.used += count
        return slots

    def free(self, node: _TrieNode) -> None:
        self.in_use[node.slot] = False
        self.owners[node.slot] = None
        node.slot = NO_SLOT
        self.used -= 1
        self.frees += 1

    def gather(self, slots: np.ndarray, out: torch.Tensor) -> None:
        """Copy the keys/values of sorted `slots` into `out` [2, layers, kv_heads, len(slots), head_dim]."""
        if len(slots) == 0:
            return
        first, last = int(slots[0]), int(slots[-1])
        if last - first + 1 == len(slots):
            out.copy_(self.data.narrow(3, first, len(slots)))
        else:
            torch.index_select(self.data, 3, torch.from_numpy(slots).to(self.shape.device), out=out)

    def write(self, slots: np.ndarray, values: torch.Tensor) -> None:
        """Store `values` [2, layers, kv_heads, len(slots), head_dim] into sorted `slots`."""
        first, last = int(slots[0]), int(slots[-1])
        if last - first + 1 == len(slots):
            self.data.narrow(3, first, len(slots)).copy_(values)
        else:
            self.data.index_copy_(3, torch.from_numpy(slots).to(self.shape.device), values)

    def _grow(self, capacity: int) -> None:
        data = torch.empty((*self.data.shape[:3], capacity, self.data.shape[4]), dtype=self.data.dtype,
                           device=self.data.device)
        data[:, :, :, : self.capacity].copy_(self.data)
        self.data = data
        self.in_use = np.concatenate([self.in_use, np.zeros(capacity - len(self.in_use), dtype=bool)])
        self.owners.extend([None] * (capacity - len(self.owners)))
