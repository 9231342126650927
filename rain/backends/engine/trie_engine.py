"""`TrieEngine`: computes every distinct (prefix, token) position once (the `rain.core.lm.LanguageModel` interface).

All states ever requested, generation states and judge prompts alike, live in one token trie (`rain.backends.engine.trie`);
each computed trie node owns a slot of a key/value arena (`rain.backends.engine.arena`). A request walks the trie, and all
not-yet-computed tokens of all requested states go through the model in ONE forward with a tree attention mask
(each token sees exactly its ancestors), on top of the gathered keys/values of their computed ancestors. This
fixes docs/algorithm.md §5 items 1-4: no prefix is ever re-read, candidates are batched, the judge's constant prefix is
computed once, and only needed logits are formed. The model is reached only through `rain.backends.engine.hf`.
"""
from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache

from rain.backends.engine.arena import MIN_ARENA_SLOTS, PrefixKV, _KVArena
from rain.backends.engine.hf import (
    TREE_ATTENTION_IMPLEMENTATIONS,
    UnsupportedModelError,
    _model_forward,
    _ScratchLayer,
    full_forward_logits,
    probe_model,
    tree_attention_problem,
)
from rain.backends.engine.trie import (
    NO_SLOT,
    Plan,
    TokenTrie,
    _TrieNode,
    check_state,
    computed_prefix_length,
    lru_leaves,
    path_slots,
    subtree,
    tree_mask,
)
from rain.core.lm import ComputeStats, TokenState

EVICT_FRACTION = 0.25            # evict this share of the arena at once, so evictions are rare
VERIFY_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}   # relative; half precision uses HALF_TOLERANCE
HALF_TOLERANCE = 5e-2


class TrieEngine:
    """Computes every distinct token position once (see the module docstring).

    `kv_cache_bytes` caps the arena plus stored logits (what `stats.kv_bytes` reports); `logits_fraction` of it
    is reserved for last-position logits of requested states, so a repeated request costs nothing. When the
    arena is full, least-recently-used leaves are evicted in bulk; ancestors of computed tokens always stay
    computed. `max_forward_tokens` bounds one forward (the mask is [new, past + new]); larger requests are
    split. Outside the cap sits one reusable scratch buffer as wide as the largest forward (past + new).
    `verify` checks the tree path against full forwards once, at construction (a few tiny forwards).
    `max_length` bounds the states it accepts; a model with sliding-window layers is served only when that bound
    is within the window (rain.backends.engine.hf.tree_attention_problem).
    """

    name = "trie"
    note = ""                        # why this engine serves the model (rain.backends.engine.select)

    def __init__(self, model: PreTrainedModel, max_length: int | None = None, kv_cache_bytes: int = 1 << 30,
                 logits_fraction: float = 0.125, max_forward_tokens: int = 2048, verify: bool = True):
        self.model = model
        self.shape = probe_model(model, max_length)
        problem = tree_attention_problem(self.shape)
        if problem:
            raise UnsupportedModelError(problem)
        attention = getattr(model.config, "_attn_implementation", "sdpa")
        if attention not in TREE_ATTENTION_IMPLEMENTATIONS:
            raise UnsupportedModelError(f"attention implementation {attention!r} does not take a 4-D tree mask; "
                                        f"load the model with attn_implementation='sdpa'")
        self.device = self.shape.device
        self.vocab_size = self.shape.vocab_size
        self.max_length = self.shape.max_length
        self.kv_cache_bytes = kv_cache_bytes
        self.max_forward_tokens = max_forward_tokens
        self.max_stored_logits = int(kv_cache_bytes * logits_fraction) // self.shape.logits_bytes
        self.max_slots = (kv_cache_bytes - self.max_stored_logits * self.shape.logits_bytes) // self.shape.token_bytes
        if self.max_slots < 1:
            raise ValueError(f"kv_cache_bytes={kv_cache_bytes} holds no token ({self.shape.token_bytes} bytes each)")
        self.reset()
        if verify:
            self.verify()
            self.reset()

    def reset(self) -> None:
        """Forget everything (trie, keys/values, logits, counters)."""
        self.stats = ComputeStats()
        self._trie = TokenTrie()
        self._arena = _KVArena(self.shape, self.max_slots)
        self._logits: OrderedDict[_TrieNode, torch.Tensor] = OrderedDict()
        self._scratch = torch.empty((2, self.shape.layers, self.shape.kv_heads, 0, self.shape.head_dim),
                                    dtype=self.shape.dtype, device=self.device)
        self._scratch_slots = np.zeros(0, dtype=np.int64)   # arena slot held by each scratch column (-1: none)
        self._scratch_frees = 0                             # the arena's `frees` when those columns were valid
        self._clock = 0
        self._prefetched: dict[_TrieNode, None] = {}     # ends to compute along with the next forward

    # ---------------------------------------------------------------------------------------------- interface

    def prefetch(self, states: Sequence[TokenState]) -> None:
        """Queue `states`: the next forward also computes their logits, saving a forward of their own.

        The search queues the judge's two prompts as soon as a rollout ends, so they ride along with the
        expansion's next forward (one forward per simulation fewer; the same results).
        """
        for state in states:
            self._prefetched[self._insert(state)] = None

    @torch.inference_mode()
    def next_logits(self, states: Sequence[TokenState]) -> torch.Tensor:
        ends = [self._insert(state) for state in states]
        return self._logits_of(ends)

    @torch.inference_mode()
    def judge_logits(self, states: Sequence[TokenState], shared_prefix: int) -> torch.Tensor:
        ends = [self._insert(state) for state in states]
        for end in ends:
            prefix_length = min(shared_prefix, end.depth + 1)
            self.stats.judge_prefix_tokens += prefix_length
            self.stats.judge_prefix_hits += computed_prefix_length(end, prefix_length)
        return self._logits_of(ends)

    @torch.inference_mode()
    def export_prefix(self, tokens: TokenState) -> PrefixKV:
        """Keys/values of `tokens` (computing what is missing), as a standalone tensor other engines can adopt."""
        self.next_logits([tokens])
        slots = np.asarray(path_slots(self._trie.find(tokens))[::-1], dtype=np.int64)
        values = self._arena.data.index_select(3, torch.from_numpy(slots).to(self.device))
        return PrefixKV(tuple(int(t) for t in tokens), values)

    @torch.inference_mode()
    def adopt_prefix(self, prefix: PrefixKV) -> None:
        """Take `prefix`'s keys/values as computed (they count as preloaded, not as distinct or forwarded)."""
        if prefix.values.shape[:3] != self._arena.data.shape[:3] or prefix.values.shape[3] != len(prefix.tokens):
            raise ValueError("the prefix was computed on another model")
        node, fresh = self._trie.root, []
        for depth, token in enumerate(prefix.tokens):
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = _TrieNode(token=token, depth=depth, parent=node)
            if not child.computed:                    # computed positions are ancestor-closed: a suffix is fresh
                fresh.append(child)
            node = child
        if not fresh or len(fresh) > self._arena.free_slots:
            return
        slots = self._arena.allocate(fresh)
        for new in fresh:
            new.parent.computed_children += 1
        depths = torch.tensor([new.depth for new in fresh], device=self.device)
        self._arena.write(slots, prefix.values.index_select(3, depths))
        self.stats.preloaded_tokens += len(fresh)
        self._update_bytes()

    def release(self, keep: TokenState, under: TokenState) -> None:
        """Drop everything strictly below `under` except the path to `keep` and what extends it.

        Dropped positions leave the trie, so if they are ever requested again they count as distinct again.
        """
        self._prefetched.clear()                        # a hint only; its nodes may be dropped below
        node = self._trie.find(under)
        if node is None:
            return
        extends = len(keep) >= len(under) and tuple(keep[: len(under)]) == tuple(under)
        if not extends:
            for token in list(node.children):
                self._drop_subtree(node.children.pop(token))
        else:
            for next_token in keep[len(under):]:
                for token in [token for token in node.children if token != next_token]:
                    self._drop_subtree(node.children.pop(token))
                node = node.children.get(next_token)
                if node is None:
                    break
        self._update_bytes()

    @torch.inference_mode()
    def verify(self) -> None:
        """Check on this model that tree-masked forwards over gathered keys/values match full forwards."""
        base = [1, 2, 3, 4]
        states = [base, base + [5], base + [6, 7], base + [6, 8], base[:2]]
        tree = torch.cat([self.next_logits(states[:1]), self.next_logits(states[1:])])
        full = torch.stack([full_forward_logits(self.model, state, self.device) for state in states])
        scale = full.abs().max().clamp_min(1.0)
        error = float(((tree - full).abs().max() / scale))
        tolerance = VERIFY_TOLERANCE.get(self.shape.dtype, HALF_TOLERANCE)
        if error > tolerance:
            raise UnsupportedModelError(f"tree-masked logits differ from full forwards by {error:.3g} (relative) "
                                        f"on this model")

    # ---------------------------------------------------------------------------------------------- the trie

    def _insert(self, state: TokenState) -> _TrieNode:
        """The node of `state`'s last token, creating missing positions (each counts once as distinct)."""
        check_state(state, self.max_length)
        node, created = self._trie.insert(state)
        self.stats.distinct_tokens += created
        return node

    def _drop_subtree(self, top: _TrieNode) -> None:
        if top.slot != NO_SLOT:
            top.parent.computed_children -= 1
        for node in subtree(top):
            if node.slot != NO_SLOT:
                self._arena.free(node)
            self._logits.pop(node, None)

    # ---------------------------------------------------------------------------------------------- compute

    def _logits_of(self, ends: list[_TrieNode]) -> torch.Tensor:
        """Logits after each end node, computing in as few forwards as the size bound allows."""
        self._clock += 1
        found: dict[_TrieNode, torch.Tensor] = {}
        missing: dict[_TrieNode, None] = {}             # ordered set
        for end in ends:
            end.last_used = self._clock
            if end in found:
                continue
            stored = self._logits.get(end)
            if stored is not None:
                self._logits.move_to_end(end)
                found[end] = stored
            else:
                missing[end] = None
        if missing and self._prefetched:               # a forward is due: take the queued ends along
            for end in self._prefetched:
                if end not in missing and end not in self._logits:
                    end.last_used = self._clock
                    missing[end] = None
            self._prefetched.clear()
        plan = Plan()
        for end in missing:
            if end in found:
                continue                                # already a row of an earlier piece
            if plan.nodes and len(plan.nodes) + plan.chain_length(end) > self.max_forward_tokens:
                found.update(self._run(plan))
                plan = Plan()
            if not plan.nodes:
                found.update(self._split_long_chain(end, missing))
            plan.add_target(end, wants_logits=True)
        if plan.nodes:
            found.update(self._run(plan))
        self._update_bytes()
        return torch.stack([found[end] for end in ends])

    def _split_long_chain(self, end: _TrieNode, wanted: dict[_TrieNode, None]) -> dict[_TrieNode, torch.Tensor]:
        """Compute a path longer than `max_forward_tokens` in pieces, so no single mask gets too large.

        Returns the logits of `wanted` nodes that lie on the pieces.
        """
        found: dict[_TrieNode, torch.Tensor] = {}
        while True:
            length = Plan().chain_length(end)
            if length <= self.max_forward_tokens:
                return found
            piece_end = end
            for _ in range(length - self.max_forward_tokens):
                piece_end = piece_end.parent
            plan = Plan()
            plan.add_target(piece_end, wants_logits=False)
            plan.logit_rows = {node: row for node, row in plan.row_of.items() if node in wanted}
            found.update(self._run(plan))
            if not piece_end.computed:
                return found                            # the arena is too small to keep it: one big forward

    def _run(self, plan: Plan) -> dict[_TrieNode, torch.Tensor]:
        """One forward over `plan.nodes`; stores their keys/values and the requested logits."""
        past_slots, allowed = tree_mask(plan)
        past, new = len(past_slots), len(plan.nodes)
        buffer = self._scratch_view(past + new)
        held = self._held_columns(past_slots)
        self._arena.gather(past_slots[held:], buffer[:, :, :, held:past])
        cache = Cache(layers=[_ScratchLayer(buffer[0, layer].unsqueeze(0), buffer[1, layer].unsqueeze(0), past)
                              for layer in range(self.shape.layers)])
        mask = torch.full(allowed.shape, torch.finfo(self.shape.dtype).min, dtype=self.shape.dtype,
                          device=self.device)
        mask.masked_fill_(torch.from_numpy(allowed).to(self.device), 0.0)
        input_ids = torch.tensor([[node.token for node in plan.nodes]], dtype=torch.long, device=self.device)
        positions = torch.tensor([[node.depth for node in plan.nodes]], dtype=torch.long, device=self.device)
        targets = list(plan.logit_rows)
        keep = torch.tensor([plan.logit_rows[target] for target in targets] or [new - 1], dtype=torch.long,
                            device=self.device)
        output = _model_forward(self.model, cache, input_ids=input_ids, position_ids=positions,
                                attention_mask=mask[None, None], use_cache=True, logits_to_keep=keep)
        self.stats.forward_calls += 1
        self.stats.forwarded_tokens += new
        fresh = [not node.computed for node in plan.nodes]
        self._store(plan, past_slots, buffer[:, :, :, past:])
        stored = [node.slot if was_fresh and node.computed else NO_SLOT for node, was_fresh in zip(plan.nodes, fresh)]
        self._scratch_slots = np.concatenate([past_slots, np.asarray(stored, dtype=np.int64)])
        self._scratch_frees = self._arena.frees
        logits = output.logits[0].float()
        results = {}
        for index, target in enumerate(targets):
            row = logits[index].clone()
            results[target] = row
            self._remember_logits(target, row)
        return results

    def _scratch_view(self, width: int) -> torch.Tensor:
        """[2, layers, kv_heads, width, head_dim] of a buffer reused across forwards."""
        if self._scratch.shape[3] < width:
            capacity = max(width, 2 * self._scratch.shape[3], MIN_ARENA_SLOTS)
            self._scratch = torch.empty((2, self.shape.layers, self.shape.kv_heads, capacity, self.shape.head_dim),
                                        dtype=self.shape.dtype, device=self.device)
            self._scratch_slots = np.zeros(0, dtype=np.int64)
        return self._scratch[:, :, :, :width]

    def _held_columns(self, past_slots: np.ndarray) -> int:
        """How many leading columns of the scratch buffer already hold `past_slots`' keys/values: the last forward
        left its past and its stored new tokens there. A rollout's next forward then copies one token's keys and
        values instead of its whole past (the same bytes in the same columns, so the same logits). Nothing is
        held once a slot has been freed since (it may hold another token now)."""
        if self._scratch_frees != self._arena.frees:
            return 0
        held = self._scratch_slots
        count = min(len(held), len(past_slots))
        differ = np.flatnonzero(held[:count] != past_slots[:count])
        return int(differ[0]) if len(differ) else count

    def _store(self, plan: Plan, past_slots: np.ndarray, new_values: torch.Tensor) -> None:
        """Give the newly computed tokens arena slots, evicting old leaves first if the arena is full."""
        rows = [row for row, node in enumerate(plan.nodes) if not node.computed]
        if not rows:
            return
        if len(rows) > self._arena.free_slots:
            wanted = max(len(rows), int(EVICT_FRACTION * self._arena.max_slots))
            self._evict(wanted, past_slots)
        rows = rows[: self._arena.free_slots]            # parents come first, so any prefix stays ancestor-closed
        if not rows:
            return
        nodes = [plan.nodes[row] for row in rows]
        slots = self._arena.allocate(nodes)
        for node in nodes:
            node.parent.computed_children += 1
            node.last_used = self._clock
        if len(rows) == new_values.shape[3]:
            values = new_values
        else:
            values = new_values.index_select(3, torch.tensor(rows, dtype=torch.long, device=self.device))
        self._arena.write(slots, values)

    def _evict(self, wanted_free: int, protected_slots: np.ndarray) -> None:
        """Free least-recently-used leaves until `wanted_free` slots are free; the current call's past stays."""
        protected = np.zeros(self._arena.capacity, dtype=bool)
        protected[protected_slots] = True
        order = itertools.count()
        heap = [(node.last_used, next(order), node) for node in lru_leaves(self._arena.owners, protected)]
        heapq.heapify(heap)
        while heap and self._arena.free_slots < wanted_free:
            last_used, _, node = heapq.heappop(heap)
            parent = node.parent
            self._arena.free(node)
            self.stats.evicted_tokens += 1
            parent.computed_children -= 1
            if parent.parent is not None and parent.computed_children == 0 and not protected[parent.slot]:
                parent.last_used = max(parent.last_used, last_used)
                heapq.heappush(heap, (parent.last_used, next(order), parent))

    def _remember_logits(self, node: _TrieNode, logits: torch.Tensor) -> None:
        if self.max_stored_logits == 0:
            return
        self._logits[node] = logits
        self._logits.move_to_end(node)
        while len(self._logits) > self.max_stored_logits:
            self._logits.popitem(last=False)

    def _update_bytes(self) -> None:
        self.stats.kv_bytes = (self._arena.used * self.shape.token_bytes
                               + len(self._logits) * self.shape.logits_bytes)
        self.stats.kv_peak_bytes = max(self.stats.kv_peak_bytes, self.stats.kv_bytes)
