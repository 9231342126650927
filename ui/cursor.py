"""One cursor for the page: Step, Play, the scrubber and Replay move one moment of the run in the page's state
(events applied so far), and every panel shows that moment through ui/outputs.py `show`: the tree, the RAIN
answer, the timeline, the judge panel, the narration and the why-table. On a live run Step and Play work the run's
gate instead (ui/step_gate.py): the run itself then draws each event.
"""
from __future__ import annotations

import math
import time
from typing import Iterator

from rain.core.export import RunRecord
from ui.files import _replay_id, describe
from ui.outputs import pack, problem, record_outputs, show, simulations_of, status_html
from ui.render import judge_panel
from ui.step_gate import StepGate
from ui.teaching import why_html
from ui.view import RunView, cursor_of, simulation_bounds

PLAY_SECONDS = 0.35            # between two events while playing
REPLAY_FRAMES = 80             # a replay shows at most this many frames (simulations) ...
REPLAY_FRAME_SECONDS = 0.25    # ... this far apart
NOTHING = "Nothing loaded yet: run a prompt, open the lesson's run, import a tree, or pick a recorded one."


def _node(why_node: float | None) -> int | None:
    return None if why_node is None or why_node < 0 else int(why_node)


def _at(record: RunRecord, cursor: int, show_unvisited: bool, why_node: float | None, **extra) -> tuple:
    cursor = max(0, min(int(cursor), len(record.events)))
    return show(record, cursor, _replay_id(record), show_unvisited, _node(why_node), **extra)


def step(record: RunRecord | None, cursor: int | None, why_node: float | None, show_unvisited: bool,
         gate: StepGate | None = None) -> tuple:
    """A live run: pause it, or let one more event through (the run draws it). Else the loaded run's next event
    (from the first again after the last)."""
    if gate is not None and gate.step():
        return pack()
    if record is None:
        return pack(status=status_html(NOTHING, "info"))
    cursor = int(cursor or 0) + 1
    return _at(record, 1 if cursor > len(record.events) else cursor, show_unvisited, why_node)


def play(record: RunRecord | None, cursor: int | None, why_node: float | None, show_unvisited: bool,
         gate: StepGate | None = None) -> Iterator[tuple]:
    """A live run: let it run on. Else step on through the loaded run to its end (Stop ends it)."""
    if gate is not None and gate.play():
        yield pack()
        return
    if record is None:
        yield pack(status=status_html(NOTHING, "info"))
        return
    cursor = int(cursor or 0)
    if cursor >= len(record.events):
        cursor = 0
    while cursor < len(record.events):
        cursor += 1
        yield _at(record, cursor, show_unvisited, why_node)
        time.sleep(PLAY_SECONDS)


def scrub(record: RunRecord | None, simulations: float | None, show_unvisited: bool = True,
          why_node: float | None = None) -> tuple:
    """The run at the end of simulation `simulations` (the scrubber: drag it, or type a number and press Enter)."""
    if record is None:
        return pack(status=status_html(NOTHING, "info"))
    total = simulations_of(record)
    wanted = max(0, min(int(simulations or 0), total))
    cursor = cursor_of(record.events, wanted)
    return _at(record, cursor, show_unvisited, why_node,
               status=status_html(f"Showing the run after {wanted} of {total} simulations (event {cursor} of "
                                  f"{len(record.events)}).", "info"))


def replay(record: RunRecord | None, show_unvisited: bool = True, why_node: float | None = None) -> Iterator[tuple]:
    """Play a record simulation by simulation through the same moment code (no model)."""
    if record is None:
        yield problem("Nothing to replay yet: run a prompt, import a tree, or pick a recorded one.")
        return
    bounds = simulation_bounds(record.events)
    sims = len(bounds) - 1
    stride = max(1, math.ceil(sims / REPLAY_FRAMES))
    frames = list(range(0, sims, stride)) + [sims]
    yield pack(status=status_html(f"Replaying {describe(record)} …", "run"), record=record, **record_outputs(record))
    for frame in frames:
        started = time.perf_counter()
        final = frame == sims
        cursor = len(record.events) if final else bounds[frame]
        message = f"Replay: simulation {frame} of {sims}" if not final else f"Replayed {describe(record)}."
        yield _at(record, cursor, show_unvisited, why_node, status=status_html(message, "ok" if final else "run"))
        if not final:
            time.sleep(max(0.0, REPLAY_FRAME_SECONDS - (time.perf_counter() - started)))


def why(record: RunRecord | None, cursor: int | None, why_node: float | None) -> str:
    """The why-table of another node at the same moment."""
    if record is None:
        return why_html(None)
    return why_html(RunView.at(record, int(cursor or 0) or None, why_node=_node(why_node)))


def redraw(record: RunRecord | None, cursor: int | None, show_unvisited: bool, why_node: float | None) -> tuple:
    """The same moment with or without the unvisited candidates."""
    if record is None:
        return pack()
    return _at(record, int(cursor or 0) or len(record.events), show_unvisited, why_node)


def judge_view(record: RunRecord | None, choice: str | None, cursor: int | None = None) -> tuple:
    """The judge panel on another evaluated node, as at the moment."""
    if record is None:
        return judge_panel(None, None, None)
    view = RunView.at(record, int(cursor or 0) or None)
    return judge_panel(view, record.judge, choice, record.config)
