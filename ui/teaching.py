"""The page's teaching views: where RAIN parts from vanilla, step mode with narration, the why-table, what-if forks
and the recorded ablation sweep. Every number comes from rain/runs/teaching.py, rain/runs/fork.py and rain/tools/sweep.py; this
module only renders it and wires the handlers (they read the run record in the page's state, so a finished run, a
recorded tree and an imported one work alike; on a live run Step and Play work the run's gate, ui/step_gate.py).
"""
from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr

from rain.core.config import ConfigError, RainConfig, parse_knobs
from rain.core.events import Event
from rain.core.export import RunRecord
from rain.runs.fork import ForkError, fork, plan_fork
from rain.runs.teaching import TeachingError, committed_nodes, latest_selection, narrate, why_table
from ui.step_gate import StepGate
from ui.view import RunView

ESC = html.escape
ROOT = Path(__file__).resolve().parent.parent
SWEEP_DIR = ROOT / "assets" / "sweep"
PLAY_SECONDS = 0.35                 # between two events while playing
MARK_CHARS = 30                     # how much of vanilla's text after the divergence is highlighted


# --- divergence ---------------------------------------------------------------------------------------------

def divergence_of(record: RunRecord | None) -> dict | None:
    return None if record is None else record.extras.get("divergence")


def split_at_divergence(record: RunRecord) -> tuple[str, str, str] | None:
    """RAIN's committed text as (before, the token set holding the divergence, after), or None (none/unknown)."""
    found = divergence_of(record)
    if not found or found.get("node") is None:
        return None
    chain = committed_nodes(record.tree())
    ids = [n.id for n in chain]
    if found["node"] not in ids:
        return None
    at = ids.index(found["node"])
    return ("".join(n.text for n in chain[:at]), chain[at].text, "".join(n.text for n in chain[at + 1:]))


def vanilla_html(record: RunRecord | None) -> str:
    """Vanilla's answer with the same position highlighted (`#vanilla-divergence`), or a line saying why not."""
    if record is None or record.vanilla is None:
        return '<div class="teach-note">Vanilla\'s answer appears here with the divergence marked.</div>'
    found = divergence_of(record)
    if "divergence" not in record.extras:
        return '<div class="teach-note">This tree does not record vanilla\'s tokens: no divergence to mark.</div>'
    if found is None:
        return f'<div class="vanilla-marked">{ESC(record.vanilla)} <i>(identical to RAIN\'s)</i></div>'
    parts = split_at_divergence(record)
    rain_text = "".join(parts) if parts else record.answer
    same = 0
    while same < min(len(rain_text), len(record.vanilla)) and rain_text[same] == record.vanilla[same]:
        same += 1
    end = min(len(record.vanilla), same + MARK_CHARS)
    while end < len(record.vanilla) and not record.vanilla[end].isspace():     # end the mark at a word's end
        end += 1
    marked = (f'{ESC(record.vanilla[:same])}<mark id="vanilla-divergence" title="vanilla goes on here; RAIN does '
              f'not">{ESC(record.vanilla[same:end]) or "⏹ (vanilla ended)"}</mark>{ESC(record.vanilla[end:])}')
    where = f"token {found['token']}" + (f", move {found['move']}, node {found['node']}" if found["node"] is not None
                                         else "")
    return (f'<div class="teach-note">RAIN parts from vanilla at {ESC(where)}.</div>'
            f'<div class="vanilla-marked">{marked}</div>')


# --- step mode and narration ------------------------------------------------------------------------------------

def narration_html(record: RunRecord | None, cursor: int) -> str:
    """The sentence for event `cursor` (1-based) of a loaded run, or how to start stepping."""
    if record is None or cursor <= 0:
        return ('<div id="narration-text" class="narration">Press Step to go through the run one event at a '
                'time (select, node added, rollout, evaluate, expand, back up, rewind, commit); during a run, '
                'Step pauses the search itself.</div>')
    config = RainConfig.from_dict(record.config) if record.config else None
    sentence = narrate(record.events[:cursor], config)[-1]
    return _narration(f"event {cursor} of {len(record.events)}", record.events[cursor - 1], sentence)


def live_narration_html(count: int, event: Event, sentence: str, paused: bool) -> str:
    """The sentence for a live run's latest event (rain.runs.teaching.Narrator's, folded by the run handler)."""
    return _narration(f"event {count} (live{', paused' if paused else ''})", event, sentence)


def _narration(where: str, event: Event, sentence: str) -> str:
    return f'<div class="narration"><b>{ESC(where)} · {ESC(event.type)}</b> {ESC(sentence)}</div>'


def why_html(record: RunRecord | None, cursor: int, node: float | None) -> str:
    """Eq. (1) for every child of `node` (default: the parent of the latest selection's leaf), as at the latest
    simulation up to `cursor`."""
    if record is None:
        return '<div class="teach-note">The why-table shows Eq. (1) for a node\'s children.</div>'
    events = record.events[:cursor] if cursor > 0 else record.events
    latest = latest_selection(events)
    if latest is None:
        return '<div class="teach-note">No selection yet: Eq. (1) has chosen nothing.</div>'
    simulation, default = latest
    node_id = default if node is None or node < 0 else int(node)
    try:
        table = why_table(record.events, RainConfig.from_dict(record.config), simulation, node_id)
    except (TeachingError, ConfigError) as error:
        return f'<div class="teach-note">{ESC(str(error))}</div>'
    rows = "".join(
        f'<tr class="{"chosen" if r.selected else ""}"><td>{"▶" if r.selected else ""}</td><td>{r.id}</td>'
        f'<td>{ESC(r.text)}</td><td>{r.prior:.3f}</td><td>{r.visits:.2f}</td><td>{r.value:+.3f}</td>'
        f'<td>{r.value_term:.3f}</td><td>{r.exploration_term:.3f}</td><td><b>{r.score:.3f}</b></td></tr>'
        for r in table.rows)
    return (f'<div class="why-head">Simulation {table.simulation}, node {table.node} (N = {table.parent_visits:.2f}): '
            f'<code>{ESC(table.formula)}</code></div><table class="why-table"><tr><th></th><th>id</th><th>token set'
            f'</th><th>p</th><th>n</th><th>q</th><th>value term</th><th>c·p·√N/(1+n)</th><th>score</th></tr>'
            f'{rows}</table>')


def step_outputs(record: RunRecord | None, cursor: int, node: float | None, show_unvisited: bool, figure_of,
                 rain_html) -> tuple:
    """(tree, rain, narration, why, cursor) after `cursor` events."""
    if record is None:
        return gr.skip(), gr.skip(), narration_html(None, 0), why_html(None, 0, None), 0
    cursor = max(0, min(cursor, len(record.events)))
    view = RunView.of(record.events[:cursor])
    return (figure_of(view, f"step-{id(record)}", show_unvisited),
            rain_html(view, divergence=split_at_divergence(record)), narration_html(record, cursor),
            why_html(record, cursor, node), cursor)


def step(record, cursor, node, show_unvisited, figure_of, rain_html, gate: StepGate | None = None) -> tuple:
    """A live run: pause it / let one more event through (the run handler shows it). Else the loaded run's next
    event."""
    if gate is not None and gate.step():
        return (gr.skip(),) * 5
    return step_outputs(record, int(cursor or 0) + 1, node, show_unvisited, figure_of, rain_html)


def play(record, cursor, node, show_unvisited, figure_of, rain_html, gate: StepGate | None = None) -> Iterator[tuple]:
    """A live run: let it run on. Else step on through the loaded run until its end (Stop ends it)."""
    if gate is not None and gate.play():
        yield (gr.skip(),) * 5
        return
    cursor = int(cursor or 0)
    if record is None:
        yield step_outputs(None, 0, node, show_unvisited, figure_of, rain_html)
        return
    if cursor >= len(record.events):
        cursor = 0
    while cursor < len(record.events):
        cursor += 1
        yield step_outputs(record, cursor, node, show_unvisited, figure_of, rain_html)
        time.sleep(PLAY_SECONDS)


def on_record(record: RunRecord | None, gate: StepGate | None) -> tuple:
    """(vanilla's marked answer, cursor, narration, why) when the page's record changes: a new run to step
    through from its start; while a live run streams, the run handler owns the narration and the why-table."""
    if gate is not None and gate.live:
        return vanilla_html(None), gr.skip(), gr.skip(), gr.skip()
    return vanilla_html(record), 0, narration_html(None, 0), why_html(record, 0, None)


# --- what-if forks ------------------------------------------------------------------------------------------------

def fork_knobs(text: str) -> dict[str, Any]:
    """`NAME=VALUE` pairs, one per line or comma-free space-separated, as the CLI's --knob."""
    pairs = [part for part in text.replace(";", "\n").split() if part.strip()]
    return parse_knobs(pairs)


def fork_html(parent: RunRecord, forked: RunRecord) -> str:
    info = forked.extras["fork"]
    kept = "".join(n.text for n in committed_nodes(forked.tree())[:info["move"]])
    apart = info["divergence_from_parent"]
    changed = ", ".join(f"{k}={v}" for k, v in info["knobs"].items()) or "no knob changed"
    where = "the same answer" if apart is None else f"the answers part at token {apart['token']}"
    rest_parent = parent.answer[len(kept):] if parent.answer.startswith(kept) else parent.answer
    rest_fork = forked.answer[len(kept):] if forked.answer.startswith(kept) else forked.answer
    return (f'<div class="teach-note">Forked at node {info["node"]} (after move {info["move"]}) with {ESC(changed)}, '
            f'same seed: {ESC(where)}.</div><div class="fork-pair"><div><b>parent</b><br>'
            f'<span class="committed">{ESC(kept)}</span><span class="fork-point">⑂</span>{ESC(rest_parent)}</div>'
            f'<div><b>fork</b><br><span class="committed">{ESC(kept)}</span><span class="fork-point">⑂</span>'
            f'{ESC(rest_fork)}</div></div>')


def run_fork(record: RunRecord | None, node: float | None, knobs_text: str, show_unvisited: bool, get_runtime,
             figure_of) -> tuple:
    """(fork answers HTML, fork tree, status line)."""
    if record is None:
        return gr.skip(), gr.skip(), "Nothing to fork yet: run a prompt, import a tree, or pick a recorded one."
    try:
        plan = plan_fork(record, int(node if node is not None else 0), fork_knobs(knobs_text or ""))
        runtime = get_runtime(record.model.get("name", "embedded"))
        forked = fork(runtime, plan, record.model.get("file", "the page's run"))
    except (ForkError, ConfigError, ValueError) as error:
        return gr.skip(), gr.skip(), f"Cannot fork: {error}"
    view = RunView.of(forked.events)
    return (fork_html(record, forked), figure_of(view, f"fork-{id(forked)}", show_unvisited),
            f"Forked: {len(forked.events)} events, {forked.stats.get('simulations')} simulations.")


# --- the recorded sweep -------------------------------------------------------------------------------------------

def sweep_markdown() -> str:
    path = SWEEP_DIR / "summary.md"
    if not path.is_file():
        return "No recorded sweep: run `python -m rain sweep PROMPTS.jsonl --out assets/sweep`."
    return path.read_text(encoding="utf-8")


def sweep_image() -> str | None:
    path = SWEEP_DIR / "summary.png"
    return str(path) if path.is_file() else None


CSS = """
.narration, .teach-note, .why-head { font-size: 14px; margin: 4px 0; }
.why-table { border-collapse: collapse; font-size: 13px; width: 100%; }
.why-table td, .why-table th { border-bottom: 1px solid #e2e8f0; padding: 2px 6px; text-align: right; }
.why-table td:nth-child(3) { text-align: left; }
.why-table tr.chosen { background: #fef3c7; font-weight: 600; }
#divergence, #vanilla-divergence { background: #fde68a; outline: 2px solid #f59e0b; border-radius: 3px; }
.fork-pair { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; font-size: 14px; }
.fork-point { color: #f59e0b; font-weight: 700; padding: 0 2px; }
"""
