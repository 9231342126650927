"""`CachedEngine`: the fallback for models the trie cannot serve (e.g. sliding-window layers beyond their window).

It keeps the model's own cache (a `DynamicCache`, sliding-window layers included) for every state it computed,
keyed in a token trie. A request continues from the longest computed prefix of its state and feeds only the
rest, so the model applies its own attention rules (windows, offsets) exactly as in `generate`. Cache layers
concatenate and rebind on update (transformers 5), so continuations share a prefix's tensors by reference.
Compared with the trie engine it loses batching (one forward per state) and pays a copy of the prefix's keys and
values per new token; compared with the authors' pattern (`ReferenceEngine`) it never re-reads a prefix it has
kept. The judge's constant prefix is kept pinned, so it is computed once per engine.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Sequence

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache

from rain.backends.engine.hf import _model_forward, _model_outputs_cache, full_forward_logits, probe_model
from rain.backends.engine.trie import TokenTrie, _TrieNode, check_state
from rain.core.lm import ComputeStats, TokenState

VERIFY_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}   # relative; half precision uses HALF_TOLERANCE
HALF_TOLERANCE = 5e-2


def _cache_bytes(cache: Cache) -> int:
    return sum(tensor.numel() * tensor.element_size() for layer in cache.layers if layer.is_initialized
               for tensor in (layer.keys, layer.values))


def _continuation(cache: Cache) -> Cache:
    """A cache that starts where `cache` ends and leaves it untouched (layers rebind, never write, on update)."""
    fresh = copy.copy(cache)
    fresh.layers = [copy.copy(layer) for layer in cache.layers]
    return fresh


class CachedEngine:
    """Reuse of the longest computed prefix per state, through the model's own cache (see the module docstring).

    `kv_cache_bytes` caps the kept caches plus stored logits (least recently used states are dropped first;
    the pinned judge prefix stays). A cache is kept per requested state; keys and values are not shared
    between kept states, so the cap is reached sooner than with the trie's arena.
    """

    name = "cached"
    note = ""                        # why this engine serves the model (rain.backends.engine.select)

    def __init__(self, model: PreTrainedModel, max_length: int | None = None, kv_cache_bytes: int = 1 << 30,
                 verify: bool = True):
        self.model = model
        self.shape = probe_model(model, max_length)
        self.device = self.shape.device
        self.vocab_size = self.shape.vocab_size
        self.max_length = self.shape.max_length
        self.kv_cache_bytes = kv_cache_bytes
        self.reset()
        if verify:
            self.verify()
            self.reset()

    def reset(self) -> None:
        self.stats = ComputeStats()
        self._trie = TokenTrie()                                    # every requested position
        self._caches: OrderedDict[_TrieNode, tuple[Cache, int]] = OrderedDict()   # kept cache, its bytes
        self._logits: OrderedDict[_TrieNode, torch.Tensor] = OrderedDict()
        self._pinned: _TrieNode | None = None                      # the judge's constant prefix
        self._bytes = 0

    # ---------------------------------------------------------------------------------------------- interface

    @torch.no_grad()
    def next_logits(self, states: Sequence[TokenState]) -> torch.Tensor:
        return torch.stack([self._logits_of(self._insert(state)) for state in states])

    @torch.no_grad()
    def judge_logits(self, states: Sequence[TokenState], shared_prefix: int) -> torch.Tensor:
        rows = []
        for state in states:
            end = self._insert(state)
            prefix_length = min(shared_prefix, end.depth + 1)
            self.stats.judge_prefix_tokens += prefix_length
            kept = self._longest_kept(end)
            self.stats.judge_prefix_hits += min(kept.depth + 1, prefix_length)
            if 0 < prefix_length <= end.depth and kept.depth + 1 < prefix_length:
                prefix = end
                while prefix.depth + 1 > prefix_length:
                    prefix = prefix.parent
                self._compute(prefix)                               # the constant prefix, once, pinned
                self._pinned = prefix
            rows.append(self._logits_of(end))
        return torch.stack(rows)

    def release(self, keep: TokenState, under: TokenState) -> None:
        """Drop everything strictly below `under` except the path to `keep` and what extends it (as the trie)."""
        node = self._trie.find(under)
        if node is None:
            return
        extends = len(keep) >= len(under) and tuple(keep[: len(under)]) == tuple(under)
        if not extends:
            for child in list(node.children.values()):
                self._drop_subtree(child)
            return
        for next_token in keep[len(under):]:
            for child in [child for token, child in node.children.items() if token != next_token]:
                self._drop_subtree(child)
            node = node.children.get(next_token)
            if node is None:
                break

    def prefetch(self, states: Sequence[TokenState]) -> None:
        """One forward per state here: nothing to batch."""

    @torch.no_grad()
    def verify(self) -> None:
        """Check on this model that continuing kept caches matches full forwards."""
        base = [1, 2, 3, 4]
        states = [base, base + [5], base + [6, 7], base + [6, 8], base[:2]]
        cached = self.next_logits(states)
        full = torch.stack([full_forward_logits(self.model, state, self.device) for state in states])
        error = float((cached - full).abs().max() / full.abs().max().clamp_min(1.0))
        tolerance = VERIFY_TOLERANCE.get(self.shape.dtype, HALF_TOLERANCE)
        if error > tolerance:
            raise ValueError(f"prefix-cached logits differ from full forwards by {error:.3g} (relative) on this model")

    # ---------------------------------------------------------------------------------------------- compute

    def _insert(self, state: TokenState) -> _TrieNode:
        check_state(state, self.max_length)
        node, created = self._trie.insert(state)
        self.stats.distinct_tokens += created
        return node

    @staticmethod
    def _path(end: _TrieNode) -> list[_TrieNode]:
        """Nodes from the first position to `end`."""
        nodes = []
        while end.parent is not None:
            nodes.append(end)
            end = end.parent
        return nodes[::-1]

    def _logits_of(self, end: _TrieNode) -> torch.Tensor:
        stored = self._logits.get(end)
        if stored is not None:
            self._logits.move_to_end(end)
            return stored
        return self._compute(end)

    def _longest_kept(self, end: _TrieNode) -> _TrieNode:
        """The deepest strict ancestor of `end` with a kept cache (the root, depth -1, when there is none)."""
        node = end.parent
        while node.parent is not None and node not in self._caches:
            node = node.parent
        return node

    def _compute(self, end: _TrieNode) -> torch.Tensor:
        """Feed what follows the longest kept prefix of `end`; keep the new cache and the last logits."""
        start = self._longest_kept(end)
        cache = None
        if start.parent is not None:
            self._caches.move_to_end(start)
            cache = _continuation(self._caches[start][0])
        fed = [node.token for node in self._path(end)[start.depth + 1:]]
        input_ids = torch.tensor([fed], dtype=torch.long, device=self.device)
        output = _model_forward(self.model, cache, input_ids=input_ids, use_cache=True, logits_to_keep=1)
        self.stats.forward_calls += 1
        self.stats.forwarded_tokens += len(fed)
        row = output.logits[0, -1].float().clone()
        self._keep(end, _model_outputs_cache(output), row)
        return row

    def _keep(self, end: _TrieNode, cache: Cache, row: torch.Tensor) -> None:
        self._drop(end)
        size = _cache_bytes(cache)
        self._caches[end] = (cache, size)
        self._logits[end] = row
        self._bytes += size + self.shape.logits_bytes
        while self._bytes > self.kv_cache_bytes:
            victim = next((node for node in self._caches if node is not self._pinned and node is not end), None)
            if victim is None:
                break
            self.stats.evicted_tokens += victim.depth + 1
            self._drop(victim)
        self._update_bytes()

    def _drop(self, node: _TrieNode) -> None:
        entry = self._caches.pop(node, None)
        if entry is not None:
            self._bytes -= entry[1]
        if self._logits.pop(node, None) is not None:
            self._bytes -= self.shape.logits_bytes
        if node is self._pinned and entry is not None:
            self._pinned = None

    def _drop_subtree(self, top: _TrieNode) -> None:
        top.parent.children.pop(top.token, None)
        stack = [top]
        while stack:
            node = stack.pop()
            self._drop(node)
            stack.extend(node.children.values())
        self._update_bytes()

    def _update_bytes(self) -> None:
        self.stats.kv_bytes = self._bytes
        self.stats.kv_peak_bytes = max(self.stats.kv_peak_bytes, self._bytes)
