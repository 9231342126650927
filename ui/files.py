"""Runs as files and recordings: replay, scrub, import and export of tree JSON, the shipped recorded runs, and the
judge panel of a recorded run. None of it needs a model: a record's events are the whole run."""
from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from rain.core.errors import RainError
from rain.core.events import Committed
from rain.core.export import RunRecord, load, save
from ui.outputs import figure_of, outputs, pack, problem, record_outputs, status_html
from ui.render import judge_panel
from ui.view import RunView, simulation_bounds, view_at

log = logging.getLogger("rain.app")

ROOT = Path(__file__).resolve().parent.parent
TREES_DIR = ROOT / "assets" / "trees"
EXAMPLES_FILE = ROOT / "assets" / "examples.json"
REPLAY_FRAMES = 80             # a replay shows at most this many frames ...
REPLAY_FRAME_SECONDS = 0.25    # ... this far apart


def _replay_id(record: RunRecord) -> str:
    return f"replay-{id(record)}"


def weak_signal_note(view: RunView) -> str:
    """A hint when every value is close to 0 (pale nodes): the judge barely separates the candidates."""
    values = [abs(n.value) for n in view.tree.nodes[1:] if n.real_visits > 0]
    if values and max(values) < 0.1:
        return (f" The judge's scores stayed within ±{max(values):.2f}, so the nodes look pale: this model judges "
                "itself weakly (try another judge format or a bigger model).")
    return ""


def show_record(record: RunRecord, show_unvisited: bool, message: str) -> tuple:
    """The whole recorded run at once (after import or choosing a recorded tree)."""
    view = view_at(record.events)
    sims = len(simulation_bounds(record.events)) - 1
    return outputs(view, record, _replay_id(record), show_unvisited, **record_outputs(record),
                   status=status_html(message, "ok"), record=record, export=export_file(record),
                   scrub=gr.update(maximum=max(sims, 1), value=sims))


def describe(record: RunRecord) -> str:
    sims = len(simulation_bounds(record.events)) - 1
    moves = sum(1 for e in record.events if isinstance(e, Committed))
    model = record.model.get("name", "?")
    return f"“{record.prompt[:60]}” · {model} · {sims} simulations, {moves} moves, {len(record.tree().nodes)} nodes"


def import_tree(path: str | None, show_unvisited: bool = True) -> tuple:
    """Load a tree file (validation errors shown in the page) and show it; Replay plays it."""
    if not path:
        return problem("No file received.")
    try:
        record = load(path)
    except RainError as error:                  # TreeFileError
        return problem(f"Cannot import {Path(path).name}: {error}")
    except Exception as error:
        log.error("import failed:\n%s", traceback.format_exc())
        return problem(f"Cannot import {Path(path).name}: {type(error).__name__}: {error}")
    return show_record(record, show_unvisited, f"Imported {describe(record)}. Press Replay to watch it grow.")


def recorded_trees() -> list[tuple[str, str]]:
    """(label, file name) of the shipped trees; the label shows the prompt and the budget."""
    items = []
    for path in sorted(TREES_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            sims = sum(1 for e in data["events"] if e.get("type") == "rewind")
            evaluator = (data.get("judge", {}).get("evaluator") or {}).get("spec", "self")
            judged = "" if evaluator == "self" else f", evaluator {evaluator}: not self-evaluation"
            label = f"{data['prompt']} ({sims} simulations, {data.get('model', {}).get('name', '?')}{judged})"
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            label = path.stem.replace("_", " ")
        items.append((label, path.name))
    return items


def open_recorded(name: str | None, show_unvisited: bool = True) -> tuple:
    if not name:
        return pack()
    path = (TREES_DIR / Path(name).name)
    if not path.is_file():
        return problem(f"No recorded tree named {name!r}.")
    return import_tree(str(path), show_unvisited)


def replay(record: RunRecord | None, show_unvisited: bool = True) -> Iterator[tuple]:
    """Play a record's events simulation by simulation through the same view and figure code (no model)."""
    if record is None:
        yield problem("Nothing to replay yet: run a prompt, import a tree, or pick a recorded one.")
        return
    events = record.events
    bounds = simulation_bounds(events)
    sims = len(bounds) - 1
    stride = max(1, math.ceil(sims / REPLAY_FRAMES))
    frames = list(range(0, sims, stride)) + [sims]
    revision = _replay_id(record) + f"-{time.time_ns()}"
    view = RunView()
    applied = 0
    yield pack(status=status_html(f"Replaying {describe(record)} …", "run"), record=record, **record_outputs(record))
    for frame in frames:
        started = time.perf_counter()
        upto = bounds[frame] if frame < sims else len(events)
        # show the last simulation of the frame mid-flight (its path and verdict) before the rewind
        while applied < upto:
            view.apply(events[applied])
            applied += 1
        final = frame == sims
        message = (f"Replay: simulation {frame} of {sims}" if not final else f"Replayed {describe(record)}.")
        yield outputs(view, record, revision, show_unvisited, final=final, judge=final,
                      status=status_html(message, "ok" if final else "run"), scrub=gr.update(value=frame))
        if not final:
            time.sleep(max(0.0, REPLAY_FRAME_SECONDS - (time.perf_counter() - started)))


def scrub(record: RunRecord | None, simulations: float | None, show_unvisited: bool = True) -> tuple:
    """The tree after any number of simulations (the iteration slider)."""
    if record is None:
        return pack(status=status_html("Nothing to scrub yet: run a prompt, import a tree, or pick a recorded one.",
                                       "info"))
    sims = len(simulation_bounds(record.events)) - 1
    k = int(simulations or 0)
    view = view_at(record.events, k)
    return outputs(view, record, _replay_id(record), show_unvisited, final=k >= sims,
                   status=status_html(f"Showing the tree after {min(k, sims)} of {sims} simulations.", "info"))


def redraw(record: RunRecord | None, simulations: float | None, show_unvisited: bool = True):
    if record is None:
        return gr.skip()
    view = view_at(record.events, None if simulations is None else int(simulations))
    return figure_of(view, _replay_id(record), show_unvisited)


def judge_view(record: RunRecord | None, choice: str | None, simulations: float | None = None) -> tuple:
    if record is None:
        return judge_panel(None, None, None)
    view = view_at(record.events, None if simulations is None else int(simulations))
    return judge_panel(view, record.judge, choice, record.config)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "tree"


EXPORT_DIR = Path(tempfile.gettempdir()) / "rain-explorer-exports"
EXPORT_KEEP_SECONDS = 3600


def export_file(record: RunRecord) -> str:
    """Write `record` as tree JSON (rain.core.export.save) to a temp file; files older than an hour are pruned.

    The Export button downloads its current value, so every handler that changes the record also sets it."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_KEEP_SECONDS
    for old in EXPORT_DIR.glob("*/*.json"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
                old.parent.rmdir()
        except OSError:
            pass
    folder = Path(tempfile.mkdtemp(prefix="tree-", dir=EXPORT_DIR))
    return str(save(record, folder / f"rain-tree-{_slug(record.prompt)}.json"))


def export_tree(record: RunRecord | None) -> str | None:
    """The Export button's click: the browser downloads the button's value (set when the record changed); this
    re-writes it so the API (/export_tree) returns the current record too."""
    if record is None:
        gr.Warning("Nothing to export yet: run a prompt first (or import / pick a recorded tree).")
        return None
    return export_file(record)


def stopped(record: RunRecord | None = None) -> tuple[str, Any]:
    """The Stop button (it also cancels the run): a message, and the partial tree ready for Export."""
    message = status_html("Stopped. The partial tree stays on the page; Export saves it.", "stop")
    return message, (export_file(record) if record is not None else gr.skip())


def load_examples() -> list[str]:
    try:
        return [str(x) for x in json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))]
    except (OSError, ValueError):
        return ["How do I pick a lock?"]
