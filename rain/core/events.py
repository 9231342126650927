"""Typed events for every step of Algorithm 1; the CLI, the app and replay consume nothing else.

Events carry state *deltas* complete enough that folding them over an empty tree (rain/core/replay.py) rebuilds
the search tree exactly, with no model. Each event serialises to a JSON object with a "type" key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class NewNode:
    """A node as created: by expansion or dynamic addition."""

    id: int
    parent: int
    tokens: list[int]
    text: str
    prior: float


@dataclass(frozen=True)
class NodeStats:
    id: int
    visits: float
    real_visits: int
    value: float


@dataclass(frozen=True)
class SimilarityShare:
    """Eq. (2): sibling `id` received weight γ·cos from `source`'s score."""

    id: int
    source: int
    cosine: float
    weight: float
    visits: float
    value: float


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"
    optional: ClassVar[tuple[str, ...]] = ()       # fields left out of the JSON while None (older files lack them)

    def to_dict(self) -> dict[str, Any]:
        data = {"type": self.type, **dataclasses.asdict(self)}
        for name in self.optional:
            if data[name] is None:
                del data[name]
        return data


@dataclass(frozen=True)
class Started(Event):
    type: ClassVar[str] = "started"
    question: str
    prompt_tokens: int
    root_text: str


@dataclass(frozen=True)
class Selected(Event):
    """Forward step: the descent by Eq. (1) from the root to a leaf."""

    type: ClassVar[str] = "select"
    simulation: int
    path: list[int]                 # node ids, root first
    scores: list[float]             # Eq. (1) score of each chosen child


@dataclass(frozen=True)
class NodesAdded(Event):
    """Dynamic node addition at an internal node met during the descent."""

    type: ClassVar[str] = "node_added"
    simulation: int
    node: int
    children: list[NewNode]


@dataclass(frozen=True)
class RolledOut(Event):
    """Simulation from the leaf until the end of a clause (docs/algorithm.md §1.3 simg)."""

    type: ClassVar[str] = "rollout"
    simulation: int
    node: int
    tokens: int                     # number of sampled tokens
    text: str                       # sampled text


@dataclass(frozen=True)
class Evaluated(Event):
    """Self-evaluation of the exchange: every option order's label probabilities, each order's part, the score.

    `orders` holds each order's label probabilities (N labels, K orders, as the record's judge description lists
    them); `parts` each order's part of the score. In the tree JSON (schema 2) they are one list, `orders`:
    [{"probs": {label: p}, "part": x}, ...]; schema-1 events (`first`, `second`, maybe `parts`) are read as well
    (rain/core/export.py `upgrade_v1` converts whole files).
    """

    type: ClassVar[str] = "evaluate"
    simulation: int
    node: int
    answer: str                     # the evaluated answer text (committed + path + rollout)
    score: float
    orders: list[dict[str, float]]
    cache_hit: bool
    parts: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        parts = list(self.parts) + [None] * (len(self.orders) - len(self.parts))
        return {"type": self.type, "simulation": self.simulation, "node": self.node, "answer": self.answer,
                "score": self.score, "cache_hit": self.cache_hit,
                "orders": [{"probs": dict(probs), "part": part} for probs, part in zip(self.orders, parts)]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Evaluated":
        """From schema 2 (`orders`) or schema 1 (`first`, `second`, optional `parts`)."""
        rest = {k: v for k, v in values.items() if k not in ("orders", "first", "second")}
        if "orders" not in values:
            return cls(**rest, orders=[dict(values[k]) for k in ("first", "second") if values.get(k)])
        orders = [dict(order["probs"]) for order in values["orders"]]
        parts = [order.get("part") for order in values["orders"]]
        parts = [float(p) for p in parts] if all(isinstance(p, (int, float)) for p in parts) else []
        return cls(**{**rest, "parts": parts}, orders=orders)


@dataclass(frozen=True)
class Expanded(Event):
    """Candidate token sets attached to the leaf (docs/algorithm.md §1.3 group_getp)."""

    type: ClassVar[str] = "expand"
    simulation: int                 # 0: a fork's prefix, created before any simulation
    node: int
    children: list[NewNode]


@dataclass(frozen=True)
class BackedUp(Event):
    """Visits and values along the path, plus the Eq. (2) similarity shares."""

    type: ClassVar[str] = "backup"
    simulation: int
    score: float
    path: list[NodeStats]
    similarity: list[SimilarityShare] = field(default_factory=list)
    terminal: bool = False          # the leaf is terminal and was not expanded


@dataclass(frozen=True)
class Rewound(Event):
    """Back to the root after a simulation."""

    type: ClassVar[str] = "rewind"
    optional: ClassVar[tuple[str, ...]] = ("stats",)
    simulation: int
    root: int
    stats: dict[str, Any] | None = None     # live counters so far (Search.live_stats); absent in older files


@dataclass(frozen=True)
class Committed(Event):
    """Outer loop: the most-visited child becomes the new root; its children's priors are re-noised."""

    type: ClassVar[str] = "commit"
    move: int                       # 1-based index of the committed token set
    node: int
    text: str
    simulations: int                # simulations spent on this move
    reason: str                     # "threshold" (stop rule met), "budget" (window used up), "fixed",
                                    # "node_cap" (max_tree_nodes reached; see Search._room_for_simulation), or
                                    # "fork" (an earlier run's commit a what-if fork starts below; rain/runs/fork.py)
    priors: dict[int, float]        # new priors of the new root's children
    stats: dict[str, Any] | None = None     # live counters so far (Search.live_stats); absent in older files
    optional: ClassVar[tuple[str, ...]] = ("stats",)


@dataclass(frozen=True)
class Finished(Event):
    type: ClassVar[str] = "done"
    answer: str
    reason: str                     # eos, turn_end, max_new_tokens, max_length, max_moves, no_children, cancelled
    stats: dict[str, Any]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (Started, Selected, NodesAdded, RolledOut, Evaluated, Expanded, BackedUp,
                              Rewound, Committed, Finished)
}
_NESTED = {"children": NewNode, "path": NodeStats, "similarity": SimilarityShare}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Inverse of Event.to_dict (raises KeyError/TypeError/ValueError on malformed input)."""
    cls = EVENT_TYPES[data["type"]]
    values = {k: v for k, v in data.items() if k != "type"}
    for name, item_cls in _NESTED.items():
        if name in values and not (cls is Selected and name == "path"):
            values[name] = [item if isinstance(item, item_cls) else item_cls(**item) for item in values[name]]
    if cls is Committed:
        values["priors"] = {int(k): float(v) for k, v in values["priors"].items()}
    if cls is Evaluated:
        return Evaluated.from_dict(values)
    return cls(**values)
