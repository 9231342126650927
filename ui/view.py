"""What the page shows of a run, folded from its events alone (live, imported or replayed: the same code).

`RunView.apply(event)` folds one event into a private `rain.core.tree.Tree` with `rain.core.replay.apply_event` and keeps
the few extras the page needs: the last selected path, the candidate text under evaluation, the judge's latest
verdict per node and a short timeline. It never touches a model or the search object.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from rain.core.events import (BackedUp, Committed, Evaluated, Event, Expanded, Finished, NodesAdded, RolledOut,
                         Rewound, Selected, Started)
from rain.core.replay import apply_event
from rain.core.tree import NO_PARENT, Tree

TIMELINE_KEEP = 30


@dataclass(frozen=True)
class Verdict:
    """The judge's latest evaluation at one node."""

    node: int
    simulation: int
    answer: str
    score: float
    first: dict[str, float]
    second: dict[str, float]
    cache_hit: bool
    parts: list[float] = field(default_factory=list)   # each order's part of the score (empty in older files)


@dataclass(frozen=True)
class Line:
    """One timeline entry: `kind` picks its colour on the page."""

    kind: str
    label: str
    text: str


def short(text: str, limit: int = 36) -> str:
    """Token text on one line, for labels: newlines shown as ⏎, long text cut with an ellipsis."""
    text = text.replace("\r", "").replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class RunView:
    tree: Tree = field(default_factory=Tree.new)
    question: str = ""
    prompt_tokens: int = 0
    path: list[int] = field(default_factory=list)         # last selected path, root first
    rollout_node: int | None = None
    rollout_text: str = ""
    candidate: str | None = None                          # committed + path + rollout, as the judge saw it
    verdicts: dict[int, Verdict] = field(default_factory=dict)
    latest: int | None = None                             # node of the latest evaluation
    simulation: int = 0                                   # simulations started
    moves: int = 0
    evaluations: int = 0
    cache_hits: int = 0
    added_nodes: int = 0
    similarity_shares: int = 0
    last_commit: Committed | None = None
    finished: Finished | None = None
    events: int = 0
    in_simulation: bool = False
    timeline: deque = field(default_factory=lambda: deque(maxlen=TIMELINE_KEEP))

    @classmethod
    def of(cls, events: Iterable[Event]) -> "RunView":
        view = cls()
        for event in events:
            view.apply(event)
        return view

    # --- derived text
    def committed_path(self) -> list[int]:
        """Node ids from the original root to the current root."""
        chain, node = [], self.tree.root
        while node != NO_PARENT:
            chain.append(node)
            node = self.tree[node].parent
        return chain[::-1]

    def committed_text(self) -> str:
        if self.finished is not None:
            return self.finished.answer
        return "".join(self.tree[n].text for n in self.committed_path()[1:])

    def path_text(self) -> str:
        """Text of the selected path below the current root (the token sets being tried)."""
        if not self.in_simulation:
            return ""
        return "".join(self.tree[n].text for n in self.path[1:] if n < len(self.tree.nodes))

    def answer_tokens(self) -> int:
        return sum(len(self.tree[n].tokens) for n in self.committed_path()[1:])

    # --- folding
    def apply(self, event: Event) -> None:
        apply_event(self.tree, event)
        self.events += 1
        add = self.timeline.appendleft
        if isinstance(event, Started):
            self.question, self.prompt_tokens = event.question, event.prompt_tokens
            add(Line("start", "start", f"prompt of {event.prompt_tokens} tokens"))
        elif isinstance(event, Selected):
            self.simulation = event.simulation
            self.in_simulation = True
            self.path = list(event.path)
            self.rollout_node, self.rollout_text, self.candidate = None, "", None
            leaf = event.path[-1]
            chain = "→".join(str(n) for n in event.path[-4:])
            chain = ("…→" if len(event.path) > 4 else "") + chain
            score = f" (Eq. 1 score {event.scores[-1]:.2f})" if event.scores else " (the root is a leaf)"
            add(Line("select", f"sim {event.simulation}", f"select {chain} “{short(self.tree[leaf].text, 24)}”{score}"))
        elif isinstance(event, NodesAdded):
            self.added_nodes += len(event.children)
            ids = ", ".join(f"#{c.id}" for c in event.children)
            add(Line("added", f"sim {event.simulation}", f"dynamic addition at #{event.node}: {ids}"))
        elif isinstance(event, RolledOut):
            self.rollout_node, self.rollout_text = event.node, event.text
            what = f"{event.tokens} tokens “{short(event.text, 40)}”" if event.tokens else "nothing (terminal node)"
            add(Line("rollout", f"sim {event.simulation}", f"roll out from #{event.node}: {what}"))
        elif isinstance(event, Evaluated):
            self.evaluations += 1
            self.cache_hits += int(event.cache_hit)
            self.latest = event.node
            self.candidate = event.answer
            self.verdicts[event.node] = Verdict(event.node, event.simulation, event.answer, event.score,
                                                dict(event.first), dict(event.second), event.cache_hit,
                                                list(event.parts))
            cached = " (cached)" if event.cache_hit else ""
            add(Line("evaluate", f"sim {event.simulation}", f"evaluate #{event.node}: score {event.score:+.2f}{cached}"))
        elif isinstance(event, Expanded):
            add(Line("expand", f"sim {event.simulation}", f"expand #{event.node}: {len(event.children)} children"))
        elif isinstance(event, BackedUp):
            self.similarity_shares += len(event.similarity)
            shares = f", {len(event.similarity)} similarity share(s)" if event.similarity else ""
            add(Line("backup", f"sim {event.simulation}",
                     f"back up {event.score:+.2f} along {len(event.path)} nodes{shares}"))
        elif isinstance(event, Rewound):
            self.in_simulation = False
            add(Line("rewind", f"sim {event.simulation}", f"rewind to the root #{event.root}"))
        elif isinstance(event, Committed):
            self.moves = event.move
            self.last_commit = event
            self.path, self.candidate, self.rollout_text, self.in_simulation = [], None, "", False
            add(Line("commit", f"move {event.move}",
                     f"COMMIT #{event.node} “{short(event.text, 30)}” after {event.simulations} sims ({event.reason})"))
        elif isinstance(event, Finished):
            self.finished = event
            self.in_simulation, self.candidate = False, None
            add(Line("done", "done", f"finished ({event.reason}): {self.answer_tokens()} tokens, "
                                     f"{event.stats.get('simulations', self.simulation)} simulations"))


def simulation_bounds(events: Sequence[Event]) -> list[int]:
    """bounds[k] = number of events that make up the run after k simulations (commits that follow included).

    bounds[0] stops before the first selection; the last entry is len(events).
    """
    bounds = []
    for index, event in enumerate(events):
        if isinstance(event, Selected):
            bounds.append(index)
    bounds.append(len(events))
    return bounds


def view_at(events: Sequence[Event], simulations: int | None = None) -> RunView:
    """The view after `simulations` simulations (all events when None)."""
    if simulations is None:
        return RunView.of(events)
    bounds = simulation_bounds(events)
    simulations = max(0, min(int(simulations), len(bounds) - 1))
    return RunView.of(events[: bounds[simulations]])
