"""The page's one fold of a run: every panel (tree, answer, timeline, judge, narration, why-table) reads it.

`RunView.apply(event)` folds one event through the library's `rain.runs.teaching.Narrator`, which applies it to its tree
(`rain.core.replay.apply_event`) and says the event's one sentence; the view keeps only what the page needs besides:
the last selected path, the candidate under evaluation, the judge's latest verdict per node, the why-table of the
latest selection (read from this tree at that moment, so no panel replays the run) and the latest events' lines.
`apply` returns which outputs changed, so the live run knows what to redraw. A live run, a recorded one and an
imported one go through the same code: `RunView.at(record, cursor)` is the run after its first `cursor` events.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from rain.core.config import ConfigError, RainConfig
from rain.core.events import (BackedUp, Committed, Evaluated, Event, Finished, NodesAdded, RolledOut, Rewound,
                         Selected, Started)
from rain.core.export import RunRecord
from rain.runs.teaching import Narrator, TeachingError, WhyTable, why_table_at
from rain.core.tree import NO_PARENT, ROOT_ID, Tree

TIMELINE_KEEP = 30
ALWAYS = frozenset({"rain", "timeline", "stats", "narration"})     # what every event changes on the page
SEARCH_STEP = frozenset({"tree", "judge", "why"})                  # what a select/evaluate/back-up/commit changes


@dataclass(frozen=True)
class Verdict:
    """The judge's latest evaluation at one node."""

    node: int
    simulation: int
    answer: str
    score: float
    orders: list[dict[str, float]]                      # each option order's label probabilities
    cache_hit: bool
    parts: list[float] = field(default_factory=list)   # each order's part of the score (empty in older files)


@dataclass(frozen=True)
class Line:
    """One timeline entry: the event's narration; `kind` picks its colour on the page."""

    kind: str
    label: str
    text: str


def short(text: str, limit: int = 36) -> str:
    """Token text on one line, for labels: newlines shown as ⏎, long text cut with an ellipsis."""
    text = text.replace("\r", "").replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _config(record: RunRecord | None) -> RainConfig | None:
    try:
        return RainConfig.from_dict(record.config) if record is not None and record.config else None
    except ConfigError:
        return None


@dataclass
class RunView:
    narrator: Narrator = field(default_factory=Narrator)   # folds the tree and says each event's sentence
    why_node: int | None = None                           # the why-table's node (None: the selection's parent)
    total: int | None = None                              # events in the whole run, when known (a record)
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
    seconds: float | None = None                          # compute time so far (the search's live stats)
    last_commit: Committed | None = None
    finished: Finished | None = None
    events: int = 0
    event: Event | None = None                            # the latest event and its sentence
    sentence: str = ""
    selection: Selected | None = None                     # the latest descent below the root
    why: WhyTable | None = None                           # Eq. (1) as that descent read it
    why_error: str = ""
    in_simulation: bool = False
    timeline: deque = field(default_factory=lambda: deque(maxlen=TIMELINE_KEEP))

    @property
    def tree(self) -> Tree:
        return self.narrator.tree

    @classmethod
    def of(cls, events: Iterable[Event], config: RainConfig | None = None, **options) -> "RunView":
        view = cls(Narrator(config), **options)
        for event in events:
            view.apply(event)
        return view

    @classmethod
    def at(cls, record: RunRecord, cursor: int | None = None, why_node: int | None = None) -> "RunView":
        """The run after its first `cursor` events (all when None): the page's one moment."""
        cursor = len(record.events) if cursor is None else max(0, min(int(cursor), len(record.events)))
        return cls.of(record.events[:cursor], _config(record), why_node=why_node, total=len(record.events))

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

    def node_text(self, node_id: int) -> str:
        """What a node stands for in the page: its token set, or the user's question for the prompt's node."""
        if node_id == ROOT_ID:
            return self.question or self.tree[node_id].text
        return self.tree[node_id].text if 0 <= node_id < len(self.tree.nodes) else ""

    def where(self) -> str:
        """The moment, as the page names it: "event N of M, simulation S"."""
        of = f" of {self.total}" if self.total is not None else ""
        return f"event {self.events}{of}, simulation {self.simulation}"

    # --- folding
    def apply(self, event: Event) -> frozenset[str]:
        """Fold one event; the names of the page's outputs it changed (ui/outputs.py OUTPUTS)."""
        if isinstance(event, Selected) and len(event.path) > 1:
            self.selection = event                  # Eq. (1) as the descent read it: before it is in flight itself
            self.set_why_node(self.why_node)
        self.sentence = self.narrator.narrate(event)
        self.event = event
        self.events += 1
        changed = set(ALWAYS)
        label = f"sim {getattr(event, 'simulation', self.simulation)}"
        if isinstance(event, Started):
            self.question, self.prompt_tokens, label = event.question, event.prompt_tokens, "start"
        elif isinstance(event, Selected):
            self.simulation, self.in_simulation, self.path = event.simulation, True, list(event.path)
            self.rollout_node, self.rollout_text, self.candidate = None, "", None
            changed |= SEARCH_STEP
        elif isinstance(event, NodesAdded):
            self.added_nodes += len(event.children)
            changed.add("tree")
        elif isinstance(event, RolledOut):
            self.rollout_node, self.rollout_text = event.node, event.text
        elif isinstance(event, Evaluated):
            self.evaluations += 1
            self.cache_hits += int(event.cache_hit)
            self.latest, self.candidate = event.node, event.answer
            self.verdicts[event.node] = Verdict(event.node, event.simulation, event.answer, event.score,
                                                [dict(p) for p in event.orders], event.cache_hit,
                                                list(event.parts))
            changed |= SEARCH_STEP
        elif isinstance(event, BackedUp):
            self.similarity_shares += len(event.similarity)
            changed.add("tree")
        elif isinstance(event, Rewound):
            self.in_simulation = False
            self.seconds = (event.stats or {}).get("seconds", self.seconds)
            changed |= {"tree", "status"}
        elif isinstance(event, Committed):
            self.moves, self.last_commit, label = event.move, event, f"move {event.move}"
            self.path, self.candidate, self.rollout_text, self.in_simulation = [], None, "", False
            self.seconds = (event.stats or {}).get("seconds", self.seconds)
            changed |= SEARCH_STEP | {"status"}
        elif isinstance(event, Finished):
            self.finished, label = event, "done"
            self.in_simulation, self.candidate = False, None
            self.seconds = event.stats.get("seconds", self.seconds)
            changed |= SEARCH_STEP | {"status"}
        kind = "added" if isinstance(event, NodesAdded) else "start" if isinstance(event, Started) else event.type
        self.timeline.appendleft(Line(kind, label, self.sentence))
        return frozenset(changed)

    def set_why_node(self, node: int | None) -> None:
        """Eq. (1) at the latest selection for `node`'s children (None: the parent of the selection's leaf). The
        tree stands as that descent read it only while the selection is the latest event; a node the user asks
        about later is read from the tree as it stands now (its values may have moved since)."""
        self.why_node = node if node is not None and node >= 0 else None
        if self.selection is None:
            self.why, self.why_error = None, ""
            return
        target = self.selection.path[-2] if self.why_node is None else self.why_node
        try:
            self.why, self.why_error = why_table_at(self.tree, self.selection, self.narrator.config, target), ""
        except TeachingError as error:
            self.why, self.why_error = None, str(error)


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


def cursor_of(events: Sequence[Event], simulations: int) -> int:
    """The cursor (events applied) at the end of simulation `simulations` (its rewind and any commit after it)."""
    bounds = simulation_bounds(events)
    return bounds[max(0, min(int(simulations), len(bounds) - 1))]


def view_at(events: Sequence[Event], simulations: int | None = None, config: RainConfig | None = None) -> RunView:
    """The view after `simulations` simulations (all events when None)."""
    if simulations is None:
        return RunView.of(events, config)
    return RunView.of(events[: cursor_of(events, simulations)], config)
