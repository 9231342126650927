"""The token trie behind `TrieEngine`, in plain Python and numpy (no model, no torch).

Every state ever requested is a path from the root (the empty prefix); each node is one position, the token at
`depth` after the prefix spelled by its ancestors. A node that owns an arena slot is *computed*; computed nodes
are ancestor-closed. A forward is planned here (`Plan`: which tokens to feed, parents first) and its tree
attention mask is built here (`tree_mask`: each fed token sees exactly its ancestors).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rain.core.lm import TokenState

NO_SLOT = -1                     # a trie node without keys/values in the arena
ROOT_DEPTH = -1                  # the trie root is the empty prefix; its children sit at position 0


@dataclass(eq=False, slots=True)
class _TrieNode:
    """One position: the token at `depth` after the prefix spelled by its ancestors."""

    token: int
    depth: int                                  # position id of the token
    parent: "_TrieNode | None"
    children: dict[int, "_TrieNode"] = field(default_factory=dict)
    slot: int = NO_SLOT                         # arena slot of its keys/values, NO_SLOT if not computed
    computed_children: int = 0                  # children holding a slot; only nodes at 0 may be evicted
    last_used: int = 0                          # engine clock of the last request at or below this node

    @property
    def computed(self) -> bool:
        return self.slot != NO_SLOT or self.parent is None      # the root (empty prefix) needs nothing


def check_state(state: TokenState, max_length: int) -> None:
    if len(state) == 0:
        raise ValueError("a state must hold at least one token")
    if len(state) > max_length:
        raise ValueError(f"state of {len(state)} tokens exceeds the model context of {max_length}")


class TokenTrie:
    """All requested positions; `insert` reports how many are new (each counts once as distinct)."""

    def __init__(self) -> None:
        self.root = _TrieNode(token=-1, depth=ROOT_DEPTH, parent=None)

    def insert(self, state: TokenState) -> tuple[_TrieNode, int]:
        """The node of `state`'s last token and how many positions had to be created for it."""
        node = self.root
        index = 0
        for index, token in enumerate(state):      # noqa: B007 (index is read after the loop)
            child = node.children.get(token)
            if child is None:
                break
            node = child
        else:
            return node, 0
        for depth in range(index, len(state)):
            token = int(state[depth])
            child = _TrieNode(token=token, depth=depth, parent=node)
            node.children[token] = child
            node = child
        return node, len(state) - index

    def find(self, state: TokenState) -> _TrieNode | None:
        node = self.root
        for token in state:
            node = node.children.get(token)
            if node is None:
                return None
        return node


def path_slots(end: _TrieNode) -> list[int]:
    """Arena slots from `end` up to the first position (leaf first)."""
    slots = []
    node = end
    while node.parent is not None:
        slots.append(node.slot)
        node = node.parent
    return slots


def computed_prefix_length(end: _TrieNode, prefix_length: int) -> int:
    """How many of the first `prefix_length` positions on the path to `end` are computed (a prefix-closed set)."""
    node = end
    while node.depth >= prefix_length:
        node = node.parent
    while node.parent is not None and not node.computed:
        node = node.parent
    return node.depth + 1


def subtree(top: _TrieNode) -> list[_TrieNode]:
    """`top` and everything below it."""
    nodes, stack = [], [top]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(node.children.values())
    return nodes


@dataclass
class Plan:
    """One forward: the tokens to feed (parents before children) and who sees what."""

    nodes: list[_TrieNode] = field(default_factory=list)
    row_of: dict[_TrieNode, int] = field(default_factory=dict)
    logit_rows: dict[_TrieNode, int] = field(default_factory=dict)     # target -> position in the forward

    def add_target(self, target: _TrieNode, wants_logits: bool) -> None:
        """Queue the uncomputed tokens of the path to `target` (or `target` alone when only its logits are gone)."""
        chain: list[_TrieNode] = []
        node = target
        if node.computed and node not in self.row_of:
            chain.append(node)                       # keys/values kept, logits dropped: recompute this token
            node = node.parent
        while not node.computed and node not in self.row_of:
            chain.append(node)
            node = node.parent
        for new in reversed(chain):
            self.row_of[new] = len(self.nodes)
            self.nodes.append(new)
        if wants_logits:
            self.logit_rows[target] = self.row_of[target]

    def chain_length(self, target: _TrieNode) -> int:
        """How many tokens `add_target` would queue for `target`."""
        count, node = 0, target
        if node.computed and node not in self.row_of:
            count, node = 1, node.parent
        while not node.computed and node not in self.row_of:
            count, node = count + 1, node.parent
        return count


def tree_mask(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Sorted arena slots of the computed ancestors, and the allowed matrix [new, past + new].

    Row of a token = row of its parent + itself; a token whose parent is computed sees the parent's path
    from the arena (also when that parent is fed again in this forward only to recover its logits).
    """
    attachments: dict[_TrieNode, np.ndarray] = {}
    for node in plan.nodes:
        parent = node.parent
        if parent.computed and parent not in attachments:
            attachments[parent] = np.asarray(path_slots(parent), dtype=np.int64)
    joined = np.concatenate(list(attachments.values())) if attachments else np.zeros(0, dtype=np.int64)
    past_slots, columns = np.unique(joined, return_inverse=True)
    column_of: dict[_TrieNode, np.ndarray] = {}
    start = 0
    for parent, slots in attachments.items():
        column_of[parent] = columns[start: start + len(slots)]
        start += len(slots)
    past, new = len(past_slots), len(plan.nodes)
    allowed = np.zeros((new, past + new), dtype=bool)
    for row, node in enumerate(plan.nodes):
        if node.parent.computed:
            allowed[row, column_of[node.parent]] = True
        else:
            allowed[row] = allowed[plan.row_of[node.parent]]
        allowed[row, past + row] = True
    return past_slots, allowed


def lru_leaves(owners: Sequence[_TrieNode | None], protected: np.ndarray) -> list[_TrieNode]:
    """Computed nodes without computed children that are not protected: the eviction candidates."""
    return [node for node in owners if node is not None and node.computed_children == 0 and not protected[node.slot]]
