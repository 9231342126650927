"""The one live-run state: it applies each item of a session's stream (rain/runs/session.py) and says which of the
page's outputs changed, as the update to send. The Run handler (ui/run.py) only parses, gets the runtime, folds
with this and yields; RAIN's events go through the page's one fold (ui/view.py RunView) and the one moment
renderer (ui/outputs.py), so a live run shows each panel as Step, the scrubber and replay show it.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from rain.runs.best_of_n import BestOfN, Sample
from rain.core.config import RainConfig
from rain.core.events import Event, Finished
from rain.core.export import RunRecord
from rain.runs.session import BestOfNSettings, EngineStats, Recorded, RunStats, VanillaDone, VanillaText
from rain.runs.teaching import Narrator
from ui.bon import OFF_HINT, WAITING, Lane, bon_html
from ui.figures import empty_figure
from ui.files import export_file
from ui.outputs import moment, record_outputs, status_html
from ui.render import judge_panel, node_choices, rain_html, stats_html, timeline_html
from ui.teaching import narration_html, why_html
from ui.view import ALWAYS, SEARCH_STEP, RunView

PLOT_INTERVAL = 0.4            # seconds between tree redraws while streaming (every event while paused)
DRAWN = frozenset({"tree", "judge"})    # the outputs that cost a redraw: throttled to PLOT_INTERVAL


@dataclass
class LiveRun:
    """A run as it streams: its record so far, its view of RAIN's events, and the Best-of-N lane."""

    record: RunRecord                       # Prepared's metadata, then Recorded's record
    show_unvisited: bool
    best_of_n: BestOfNSettings | None = None
    revision: str = field(default_factory=lambda: f"run-{time.time_ns()}")
    view: RunView = field(init=False)
    events: list[Event] = field(default_factory=list)
    lane: Lane | None = field(init=False)
    vanilla: VanillaDone | None = None
    last_drawn: float = 0.0
    finished: bool = False

    def __post_init__(self) -> None:
        config = RainConfig.from_dict(self.record.config) if self.record.config else None
        self.view = RunView(Narrator(config))
        self.lane = Lane(self.best_of_n.n, self.best_of_n.temperature) if self.best_of_n else None

    def start(self, runtime_name: str) -> dict[str, Any]:
        """The page cleared for this run: the previous run's answers, tree and panels go."""
        return dict(status=status_html(f"Vanilla decoding with {runtime_name} …", "run"), vanilla="",
                    rain=rain_html(None), tree=empty_figure("The search starts after the vanilla answer.",
                                                            uirevision=self.revision),
                    timeline=timeline_html(None), stats=stats_html(None),
                    judge_node=gr.update(choices=node_choices(None), value="latest"),
                    judge_info=judge_panel(None, None, None)[0], judge_prompts="",
                    narration=narration_html(None), why=why_html(None), cursor=0,
                    scrub=gr.update(maximum=1, value=0), bon=WAITING if self.best_of_n else OFF_HINT)

    def apply(self, item: Any, paused: bool = False) -> dict[str, Any] | None:
        """Fold one session item; the outputs it changed, or None when the page shows nothing new."""
        if isinstance(item, VanillaText):
            return dict(vanilla=item.text)
        if isinstance(item, VanillaDone):
            self.vanilla = item
            self.record = dataclasses.replace(self.record, vanilla=item.text)
            return dict(status=status_html("RAIN is searching …", "run"), vanilla=item.text,
                        stats=stats_html(self.view, vanilla_seconds=item.seconds, vanilla_tokens=item.tokens))
        if isinstance(item, Event):
            return self._event(item, paused)
        if isinstance(item, (Sample, BestOfN)) and self.lane is not None:
            self.lane.apply(item)
            if self.lane.result is not None:
                return None
            return dict(bon=bon_html(self.lane, RunStats.from_dict(self.record.stats)),
                        status=status_html(f"Best-of-{self.lane.n}: {len(self.lane.samples)} of {self.lane.n} "
                                           "answers judged …", "run"))
        if isinstance(item, Recorded):
            return self._recorded(item)
        return None

    def _event(self, event: Event, paused: bool) -> dict[str, Any] | None:
        self.events.append(event)
        changed = self.view.apply(event)
        if isinstance(event, Finished):
            return None                        # the record follows at once, with the run's own figures
        return self._moment(changed, paused)

    def paused(self) -> dict[str, Any]:
        """The moment on the page redrawn as held: Step landed after its event was drawn running (ui/step_gate.py
        Next.SHOW_PAUSE)."""
        return self._moment(ALWAYS | SEARCH_STEP, paused=True)

    def _moment(self, changed: AbstractSet[str], paused: bool) -> dict[str, Any]:
        now = time.perf_counter()
        draw = paused or (changed & DRAWN and now - self.last_drawn >= PLOT_INTERVAL)
        only = changed if draw else changed - DRAWN
        values = moment(self.view, self.record, self.revision, self.show_unvisited, live=True, paused=paused,
                        only=frozenset(only))
        values["stats"] = stats_html(self.view, vanilla_seconds=self.vanilla.seconds if self.vanilla else None,
                                     vanilla_tokens=self.vanilla.tokens if self.vanilla else None)
        if draw:
            self.last_drawn = now
            # the partial run in the page's state, so Stop keeps it for Export
            values.update(record=dataclasses.replace(self.record, events=list(self.events), nodes=[],
                                                     answer=self.view.committed_text()),
                          cursor=self.view.events,
                          scrub=gr.update(maximum=max(self.view.simulation, 1), value=self.view.simulation))
        view = self.view
        if "status" in changed:
            values["status"] = status_html(f"RAIN: simulation {view.simulation}, {view.moves} move(s) committed, "
                                           f"{len(view.tree.nodes)} nodes …", "run")
        if paused:
            values["status"] = status_html(f"Paused at event {view.events} (simulation {view.simulation}, "
                                           f"{self.events[-1].type}): Step lets the next event through, Play runs "
                                           "on, Stop ends the run.", "stop")
        return values

    def _recorded(self, item: Recorded) -> dict[str, Any]:
        self.record, self.finished = item.record, True
        view = RunView.at(item.record)          # the record's own events: the same moment Step and the scrubber show
        self.view = view
        stats = RunStats.from_dict(item.record.stats)
        shown = moment(view, item.record, self.revision, self.show_unvisited)
        values = dict(**shown, **record_outputs(item.record), record=item.record, export=export_file(item.record))
        if not item.complete and self.lane is not None:
            # RAIN's record is in the page before Best-of-N starts, so Stop there keeps it for Export
            values.update(bon=bon_html(self.lane, stats),
                          status=status_html(f"RAIN done in {stats.seconds or 0:.1f} s. Best-of-{self.lane.n}: "
                                             f"sampling answer 1 of {self.lane.n} …", "run"))
        else:
            values["status"] = status_html(self.done(), "ok")
        return values

    def done(self) -> str:
        """The closing status line: what the run did and what it cost (compute time: pauses excluded)."""
        stats, view = RunStats.from_dict(self.record.stats), self.view
        engine = stats.engine or EngineStats()
        simulations = stats.rain.simulations if stats.rain and stats.rain.simulations is not None else view.simulation
        message = (f"Done in {stats.seconds or 0:.1f} s of compute: {simulations} simulations, {view.moves} moves, "
                   f"{len(view.tree.nodes)} nodes on the {engine.engine} engine ({engine.engine_note}). Hover over "
                   "the tree; Step or the scrubber go through it." + weak_signal_note(view))
        kept = self.lane.result if self.lane is not None else None
        if kept is not None:
            message += (f" Best-of-{self.lane.n} kept answer #{kept.index + 1} (judge {kept.score:+.2f}) after "
                        f"{kept.seconds:.1f} s.")
        return message


def weak_signal_note(view: RunView) -> str:
    """A hint when every value is close to 0 (pale nodes): the judge barely separates the candidates."""
    values = [abs(n.value) for n in view.tree.nodes[1:] if n.real_visits > 0]
    if values and max(values) < 0.1:
        return (f" The judge's scores stayed within ±{max(values):.2f}, so the nodes look pale: this model judges "
                "itself weakly (try another judge format or a bigger model).")
    return ""
