"""`ReferenceEngine`: the authors' compute pattern (docs/algorithm.md §5 items 1, 2, 4).

Speed-ups and recompute ratios of the trie engine are measured against it on the same search (`python -m rain
bench`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache

from rain.backends.engine.hf import _model_forward, _model_outputs_cache, probe_model
from rain.backends.engine.trie import check_state
from rain.core.lm import ComputeStats, TokenState


class ReferenceEngine:
    """The authors' compute pattern (docs/algorithm.md §5 items 1, 2, 4), to measure the trie engine against.

    - Last logits are cached per full state tuple (their `dicp`). A hit returns the logits and drops that
      stream's keys/values (their `getp` returns `past=None` on a hit), so the next miss re-reads the prefix.
    - A miss extends a stream: if the previous call computed `state[:-1]` (and no earlier state of this call
      consumed it), one token is fed with its keys/values; otherwise the whole state is fed. So a rollout or
      candidate path reuses keys/values within itself, and every path start re-reads the whole prefix.
    - `judge_logits` feeds every prompt whole, without a cache, forming logits at all positions (their `getv`).
    - `reuse_streams=False` decodes without keys/values at all (`use_cache=False`, how vanilla was timed).
    `max_cached_states` bounds the logits dict (theirs grows without bound per query); None removes the bound.
    """

    name = "reference"
    note = "reference: the authors' compute pattern (full prefixes, no judge prefix cache)"

    def __init__(self, model: PreTrainedModel, reuse_streams: bool = True, max_length: int | None = None,
                 max_cached_states: int | None = 1024):
        self.model = model
        self.shape = probe_model(model, max_length)
        self.device = self.shape.device
        self.vocab_size = self.shape.vocab_size
        self.max_length = self.shape.max_length
        self.reuse_streams = reuse_streams
        self.max_cached_states = max_cached_states
        self.reset()

    def reset(self) -> None:
        self.stats = ComputeStats()
        self._logits: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self._streams: dict[tuple[int, ...], Cache] = {}
        self._positions: dict = {}              # trie of requested positions, for distinct_tokens

    @torch.no_grad()
    def next_logits(self, states: Sequence[TokenState]) -> torch.Tensor:
        previous, current = self._streams, {}
        rows = []
        for state in states:
            check_state(state, self.max_length)
            key = tuple(int(token) for token in state)
            self._count_distinct(key)
            cached = self._logits.get(key)
            if cached is not None:
                self._logits.move_to_end(key)
                rows.append(cached)
                continue
            cache = previous.pop(key[:-1], None) if self.reuse_streams else None
            fed = key[-1:] if cache is not None else key
            input_ids = torch.tensor([fed], dtype=torch.long, device=self.device)
            output = _model_forward(self.model, cache, input_ids=input_ids, use_cache=self.reuse_streams,
                                    logits_to_keep=1)
            self.stats.forward_calls += 1
            self.stats.forwarded_tokens += len(fed)
            row = output.logits[0, -1].float().clone()
            self._remember(key, row)
            if self.reuse_streams:
                current[key] = _model_outputs_cache(output)
            rows.append(row)
        self._streams = current
        self._update_bytes()
        return torch.stack(rows)

    @torch.no_grad()
    def judge_logits(self, states: Sequence[TokenState], shared_prefix: int) -> torch.Tensor:
        rows = []
        for state in states:
            check_state(state, self.max_length)
            self._count_distinct(tuple(int(token) for token in state))
            input_ids = torch.tensor([list(state)], dtype=torch.long, device=self.device)
            logits = self.model(input_ids=input_ids, use_cache=False).logits      # all positions, as theirs
            self.stats.forward_calls += 1
            self.stats.forwarded_tokens += len(state)
            self.stats.judge_prefix_tokens += min(shared_prefix, len(state))
            rows.append(logits[0, -1].float())
        return torch.stack(rows)

    def release(self, keep: TokenState, under: TokenState) -> None:
        """The authors keep their logits dict for the whole query: nothing to do."""

    def prefetch(self, states: Sequence[TokenState]) -> None:
        """The authors compute each request when it comes: nothing to do."""

    def _count_distinct(self, key: tuple[int, ...]) -> None:
        node = self._positions
        for token in key:
            child = node.get(token)
            if child is None:
                child = node[token] = {}
                self.stats.distinct_tokens += 1
            node = child

    def _remember(self, key: tuple[int, ...], row: torch.Tensor) -> None:
        self._logits[key] = row
        if self.max_cached_states is not None:
            while len(self._logits) > self.max_cached_states:
                self._logits.popitem(last=False)

    def _update_bytes(self) -> None:
        stream_bytes = sum(layer.keys.numel() * layer.keys.element_size() * 2
                           for cache in self._streams.values() for layer in cache.layers if layer.is_initialized)
        self.stats.kv_bytes = stream_bytes + len(self._logits) * self.shape.logits_bytes
        self.stats.kv_peak_bytes = max(self.stats.kv_peak_bytes, self.stats.kv_bytes)
