"""Runs as files and recordings: import and export of tree JSON and the shipped recorded runs (the lesson's among
them). None of it needs a model: a record's events are the whole run. Moving through a run is ui/cursor.py's."""
from __future__ import annotations

import json
import logging
import re
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import gradio as gr

from rain.core.errors import RainError
from rain.core.events import Committed
from rain.core.export import RunRecord, load, save
from ui.outputs import pack, problem, record_outputs, show, status_html
from ui.view import simulation_bounds

log = logging.getLogger("rain.app")

ROOT = Path(__file__).resolve().parent.parent
TREES_DIR = ROOT / "assets" / "trees"
EXAMPLES_FILE = ROOT / "assets" / "examples.json"
LESSON_TREE = "1_harmful_pick_a_lock.json"    # the recorded run docs/teaching.md reads


def _replay_id(record: RunRecord) -> str:
    return f"replay-{id(record)}"


def show_record(record: RunRecord, show_unvisited: bool, message: str) -> tuple:
    """The whole recorded run at once (after import or choosing a recorded tree): the cursor at its end."""
    return show(record, None, _replay_id(record), show_unvisited, **record_outputs(record),
                status=status_html(message, "ok"), record=record, export=export_file(record))


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
