"""The page's teaching views: where RAIN parts from vanilla, step mode with narration, the why-table, what-if forks
and the recorded ablation sweep. Every number comes from rain/runs/teaching.py, rain/runs/fork.py and rain/tools/sweep.py; this
module only renders it and wires the handlers (they read the run record in the page's state, so a finished run, a
recorded tree and an imported one work alike; on a live run Step and Play work the run's gate, ui/step_gate.py).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from rain.core.config import ConfigError, KnobError, parse_knobs
from rain.core.export import RunRecord
from rain.runs.fork import ForkError, fork, plan_fork
from rain.core.tree import ROOT_ID
from rain.runs.session import RunStats
from rain.runs.teaching import committed_nodes, count
from ui.step_gate import StepGate
from ui.view import RunView, short

ESC = html.escape
ROOT = Path(__file__).resolve().parent.parent
SWEEP_DIR = ROOT / "assets" / "sweep"
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
        return ""                           # nothing to mark yet: no empty panel
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
              f'not">{ESC(record.vanilla[same:end]) or "(vanilla ended here)"}</mark>{ESC(record.vanilla[end:])}')
    where = f"token {found['token']}" + (f", move {found['move']}, node {found['node']}" if found["node"] is not None
                                         else "")
    return (f'<div class="teach-note">RAIN parts from vanilla at {ESC(where)}.</div>'
            f'<div class="vanilla-marked">{marked}</div>')


# --- the moment: its narration and its why-table ---------------------------------------------------------------

STEP_HINT = ('<div id="narration-text" class="narration">Press Step to go through the run one event at a time '
             '(select, node added, rollout, evaluate, expand, back up, rewind, commit); during a run, Step pauses '
             'the search itself.</div>')


def narration_html(view: RunView | None, live: bool = False, paused: bool = False) -> str:
    """The sentence of the moment's event (rain.runs.teaching.Narrator's, said once by the view's fold) under
    "event N of M, simulation S", or how to start stepping."""
    if view is None or view.event is None:
        return STEP_HINT
    where = (f"event {view.events} (live{', paused' if paused else ''}), simulation {view.simulation}" if live
             else view.where())
    return (f'<div class="narration"><b>{ESC(where)} · {ESC(view.event.type)}</b> '
            f'{ESC(view.sentence)}</div>')


CHOSEN_TITLE = ' title="Eq. (1) chose this child"'


def why_html(view: RunView | None) -> str:
    """Eq. (1) for every child of the why-table's node at the moment's latest selection: ordered by score, the
    child Eq. (1) chose marked, the formula and its two terms behind "show the maths"."""
    if view is None:
        return '<div class="teach-note">The why-table shows why the search chose a child (Eq. 1).</div>'
    if view.why is None:
        return (f'<div class="teach-note">{ESC(view.why_error)}</div>' if view.why_error else
                '<div class="teach-note">No selection yet: Eq. (1) has chosen nothing.</div>')
    table = view.why
    ranked = sorted(table.rows, key=lambda r: (-r.score, r.id))
    rows = "".join(
        f'<tr class="{"chosen" if r.selected else ""}"{CHOSEN_TITLE if r.selected else ""}>'
        f'<td>{"▶" if r.selected else ""}</td><td>{index}</td>'
        f'<td>#{r.id}</td><td class="text">{ESC(short(r.text, 48))}</td><td>{r.prior:.2f}</td>'
        f'<td>{count(r.visits)}</td><td>{r.value:+.2f}</td><td><b>{r.score:.3f}</b></td></tr>'
        for index, r in enumerate(ranked, 1))
    terms = "".join(f'<tr><td>#{r.id}</td><td>{r.value_term:.3f}</td><td>{r.exploration_term:.3f}</td>'
                    f'<td>{r.score:.3f}</td></tr>' for r in ranked)
    node = "the prompt" if table.node == ROOT_ID else f"node #{table.node} “{ESC(short(view.node_text(table.node), 30))}”"
    evaluator = view.narrator.config.evaluator
    notes = ([f"The values q are scores of the evaluator {evaluator}, not the model's self-evaluation."]
             if evaluator != "self" else [])
    if table.in_flight:
        notes.append(f"{table.in_flight} path{'s' * (table.in_flight > 1)} of this round await their back-up: Eq. (1) "
                     "counts each as one more visit scored −1 (virtual loss).")
    return (f'<div class="why-head">Simulation {table.simulation}: which child of {node} to try next '
            f'(N = {count(table.parent_visits)} visit{"" if table.parent_visits == 1 else "s"} so far). The highest '
            'score wins.</div>' + "".join(f'<div class="teach-note">{ESC(note)}</div>' for note in notes) +
            f'<table class="why-table"><tr><th></th><th>rank</th><th>node</th><th>token set</th><th>prior p</th>'
            f'<th>visits n</th><th>value q</th><th>score</th></tr>{rows}</table>'
            f'<details class="maths"><summary>show the maths</summary><code>{ESC(table.formula)}</code>'
            f'<table class="why-table"><tr><th>node</th><th>value term</th><th>c·p·√N/(1+n)</th><th>score</th></tr>'
            f'{terms}</table></details>')


def on_record(record: RunRecord | None, gate: StepGate | None) -> Any:
    """Vanilla's marked answer when the page's record changes (while a live run streams, nothing to mark yet)."""
    if gate is not None and gate.live:
        return vanilla_html(None)
    return vanilla_html(record)


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
            f'<span class="committed">{ESC(kept)}</span><span class="fork-point" title="the fork point">→</span>{ESC(rest_parent)}</div>'
            f'<div><b>fork</b><br><span class="committed">{ESC(kept)}</span><span class="fork-point" title="the fork point">→</span>'
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
    except KnobError as error:
        if error.name is None:
            return gr.skip(), gr.skip(), (f"Cannot fork: “{error.pair}” is not a setting. Write NAME=VALUE with a "
                                          "name from Search knobs, e.g. similarity_update=off sims_per_move=1.")
        return gr.skip(), gr.skip(), f"Cannot fork: {error.name} cannot be “{error.text}”."
    except (ForkError, ConfigError, ValueError) as error:
        return gr.skip(), gr.skip(), f"Cannot fork: {error}"
    view = RunView.at(forked)
    stats = RunStats.from_dict(forked.stats)
    return (fork_html(record, forked), gr.update(value=figure_of(view, f"fork-{id(forked)}", show_unvisited),
                                                  visible=True),
            f"Forked: {len(forked.events)} events, {stats.rain.simulations if stats.rain else 0} simulations.")


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
.why-table { border-collapse: collapse; font-size: 12.5px; width: 100%; }
.why-table td:not(.text) { white-space: nowrap; }
.why-table td, .why-table th { border-bottom: 1px solid #e2e8f0; padding: 2px 6px; text-align: right; }
.why-table td.text, .why-table th:nth-child(4) { text-align: left; }
.why-table tr.chosen { background: #fef3c7; font-weight: 600; }
.why-table tr.chosen td:first-child { color: #b45309; }
#divergence, #vanilla-divergence { background: #fde68a; outline: 2px solid #f59e0b; border-radius: 3px; }
.fork-pair { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; font-size: 14px; }
.fork-point { color: #f59e0b; font-weight: 700; padding: 0 2px; }
"""
