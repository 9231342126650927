"""The search tree as plain data: nodes in a list, indexed by id (cf. mctx's tree.py).

A node is a token set X_{i:j} in the context of its ancestors (docs/algorithm.md §1.1). The tree never calls the model,
tokenizer or encoder, and holds only what the events carry: rain/core/replay.py's `apply_event` is its one writer, for the
live search and a replay alike; rain/core/export.py serialises it. The search's own caches (embeddings, candidate sets)
live in rain/core/search.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

NO_PARENT = -1
ROOT_ID = 0      # the original root: the prompt

TokenSet = tuple[int, ...]


@dataclass
class Node:
    id: int
    parent: int                    # NO_PARENT for the original root
    tokens: TokenSet               # the token set this node adds (empty for the original root)
    text: str                      # decoded `tokens`, for people
    step: int                      # depth from the original root; picks the token-set length (getmaxnew)
    prior: float                   # p in Eq. (1), renormalised over siblings (with root noise at the root)
    visits: float = 0.0            # n: real visits plus similarity mass from Eq. (2)
    real_visits: int = 0           # fn: real visits only (the stop rule reads it)
    value: float = 0.0             # q (the paper's v): running mean of backed-up scores
    children: dict[TokenSet, int] = field(default_factory=dict)   # insertion order = the authors' dict order
    terminal: bool = False         # EOS, turn marker or length cap: evaluated, never expanded
    added: bool = False            # created by dynamic node addition
    committed: bool = False        # on the committed path (part of the answer)


@dataclass
class Tree:
    """All nodes ever created and the current root.

    Abandoned branches stay for display until `evict_abandoned` frees them (the search does so only when its
    node cap is reached); an evicted id keeps its list slot as None, so ids never change.
    """

    nodes: list[Node | None]
    root: int = ROOT_ID
    min_value: float = -1.0        # root.minqn: range that normalises q in Eq. (1); only widens
    max_value: float = 1.0         # root.maxqn
    evicted: int = 0               # nodes freed by evict_abandoned
    deepest_step: int = 0          # largest step of any node created (bounds a simulation's path length)
    in_flight: dict[int, list[int]] = field(default_factory=dict)   # simulation -> its selected path, from its
                                   # select event to its back-up: what the virtual loss counts (parallel_simulations)

    @classmethod
    def new(cls, prompt_text: str = "") -> "Tree":
        return cls(nodes=[Node(id=ROOT_ID, parent=NO_PARENT, tokens=(), text=prompt_text, step=0,
                                prior=0.0, committed=True)])

    def add(self, parent: int, tokens: TokenSet, text: str, prior: float, added: bool = False) -> Node:
        node = Node(id=len(self.nodes), parent=parent, tokens=tokens, text=text,
                    step=self.nodes[parent].step + 1, prior=prior, added=added)
        self.nodes.append(node)
        self.nodes[parent].children[tokens] = node.id
        self.deepest_step = max(self.deepest_step, node.step)
        return node

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def children(self, node_id: int) -> list[Node]:
        return [self.nodes[i] for i in self.nodes[node_id].children.values()]

    @property
    def size(self) -> int:
        """Nodes held (created minus evicted)."""
        return len(self.nodes) - self.evicted

    def evict_abandoned(self) -> int:
        """Free every node that is neither on the committed path nor under the root; returns how many."""
        keep = set()
        node_id = self.root
        while node_id != NO_PARENT:                       # the committed path
            keep.add(node_id)
            node_id = self.nodes[node_id].parent
        stack = [self.root]
        while stack:                                      # the live subtree
            node_id = stack.pop()
            keep.add(node_id)
            stack.extend(self.nodes[node_id].children.values())
        freed = 0
        for node_id, node in enumerate(self.nodes):
            if node is None or node_id in keep:
                continue
            self.nodes[node_id] = None
            freed += 1
        for node_id in keep:                              # committed-path nodes forget their abandoned children
            node = self.nodes[node_id]
            node.children = {tokens: child for tokens, child in node.children.items() if child in keep}
        self.evicted += freed
        return freed

    def in_flight_through(self, node_id: int) -> int:
        """How many selected paths awaiting their back-up pass through `node_id` (0 in the sequential search)."""
        return sum(node_id in path for path in self.in_flight.values())

    def most_visited_child(self, node_id: int) -> Node | None:
        """get_max_n_action: argmax n (similarity mass included); ties go to the higher q, then dict order."""
        children = self.children(node_id)
        if not children:
            return None
        most = max(c.visits for c in children)
        tied = [c for c in children if c.visits == most]
        return max(tied, key=lambda c: c.value)
