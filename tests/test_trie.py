"""The token trie, forward plans, tree masks and the KV arena, without a model (plain Python, numpy, CPU tensors)."""
from __future__ import annotations

import numpy as np
import torch

from rain.backends.engine.arena import _KVArena
from rain.backends.engine.hf import ModelShape
from rain.backends.engine.trie import (NO_SLOT, ROOT_DEPTH, Plan, TokenTrie, check_state, computed_prefix_length,
                              lru_leaves, path_slots, subtree, tree_mask)

import pytest


def test_insert_counts_new_positions_once_and_find_walks_the_same_path():
    trie = TokenTrie()
    node, created = trie.insert([1, 2, 3])
    assert created == 3 and (node.token, node.depth) == (3, 2) and trie.root.depth == ROOT_DEPTH
    again, created = trie.insert([1, 2, 3])
    assert again is node and created == 0
    branch, created = trie.insert([1, 2, 4, 5])
    assert created == 2 and branch.parent.parent is node.parent
    assert trie.find([1, 2, 3]) is node and trie.find([1, 9]) is None
    assert trie.find([1, 2]).children.keys() == {3, 4}
    assert [n.token for n in subtree(trie.find([1, 2]))] == [2, 4, 5, 3]


def test_plan_feeds_parents_first_and_recomputes_a_token_whose_logits_were_dropped():
    trie = TokenTrie()
    prefix, _ = trie.insert([1, 2])
    for slot, node in enumerate([prefix.parent, prefix]):   # [1, 2] computed in slots 0, 1
        node.slot = slot
    a, _ = trie.insert([1, 2, 3, 4])
    b, _ = trie.insert([1, 2, 5])
    plan = Plan()
    assert plan.chain_length(a) == 2
    plan.add_target(a, wants_logits=True)
    plan.add_target(b, wants_logits=True)
    plan.add_target(prefix, wants_logits=True)                # computed: fed again for its logits only
    assert [node.token for node in plan.nodes] == [3, 4, 5, 2]
    assert plan.logit_rows == {a: 1, b: 2, prefix: 3}
    past_slots, allowed = tree_mask(plan)
    assert past_slots.tolist() == [0, 1]
    # columns: past slot 0, past slot 1, then the four new tokens 3, 4, 5, 2
    assert allowed.astype(int).tolist() == [[1, 1, 1, 0, 0, 0],      # 3 sees 1 2 and itself
                                            [1, 1, 1, 1, 0, 0],      # 4 sees 1 2 3 and itself
                                            [1, 1, 0, 0, 1, 0],      # 5 sees 1 2 and itself
                                            [1, 0, 0, 0, 0, 1]]      # 2 (again) sees 1 and itself


def test_computed_prefix_length_and_path_slots():
    trie = TokenTrie()
    end, _ = trie.insert([7, 8, 9, 10])
    nodes = [trie.find([7]), trie.find([7, 8]), trie.find([7, 8, 9]), end]
    nodes[0].slot, nodes[1].slot = 5, 2
    assert computed_prefix_length(end, 3) == 2 and computed_prefix_length(end, 1) == 1
    assert computed_prefix_length(end, 0) == 0
    assert path_slots(nodes[1]) == [2, 5]


def test_check_state():
    check_state([1], max_length=1)
    with pytest.raises(ValueError):
        check_state([], max_length=4)
    with pytest.raises(ValueError):
        check_state([1, 2], max_length=1)


def test_arena_allocates_lowest_slots_grows_and_gathers():
    shape = ModelShape(layers=2, kv_heads=1, head_dim=3, vocab_size=10, max_length=64, dtype=torch.float32,
                       device=torch.device("cpu"))
    arena = _KVArena(shape, max_slots=300)
    trie = TokenTrie()
    nodes = [trie.insert([index])[0] for index in range(4)]
    slots = arena.allocate(nodes)
    assert slots.tolist() == [0, 1, 2, 3] and arena.capacity == 256 and arena.free_slots == 296
    values = torch.arange(2 * 2 * 1 * 4 * 3, dtype=torch.float32).reshape(2, 2, 1, 4, 3)
    arena.write(slots, values)
    arena.free(nodes[1])
    assert nodes[1].slot == NO_SLOT and arena.used == 3
    out = torch.empty(2, 2, 1, 2, 3)
    arena.gather(np.array([0, 2]), out)                               # not contiguous: index_select
    torch.testing.assert_close(out, values[:, :, :, [0, 2]])
    arena.gather(np.array([2, 3]), out)                               # contiguous: one slice copy
    torch.testing.assert_close(out, values[:, :, :, [2, 3]])
    again = arena.allocate([trie.insert([9])[0]])
    assert again.tolist() == [1]                                      # the freed slot is reused first
    protected = np.zeros(arena.capacity, dtype=bool)
    protected[0] = True
    assert {node.token for node in lru_leaves(arena.owners, protected)} == {2, 3, 9}
