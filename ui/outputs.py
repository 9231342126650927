"""The page's outputs: their names (the order of every handler's outputs, a contract of the API), one streamed
update (`pack`), and `moment`, the one function that shows a run at one moment: the live run, Step, Play, the
scrubber, replay and import all go through it, so every panel shows the same event."""
from __future__ import annotations

import html
from typing import Any

import gradio as gr

from rain.core.export import RunRecord
from rain.runs.session import RunStats
from ui.bon import Lane, bon_html
from ui.figures import empty_figure, tree_figure
from ui.render import judge_note, judge_panel, node_choices, rain_html, stats_html, timeline_html
from ui.teaching import narration_html, split_at_divergence, why_html
from ui.view import RunView, simulation_bounds

OUTPUTS = ("status", "vanilla", "rain", "tree", "timeline", "stats", "record", "judge_node", "judge_info",
           "judge_prompts", "scrub", "export", "bon",
           "narration", "why", "gate", "cursor")                           # new outputs go last (API positions)
STATES = ("record", "gate", "cursor")   # gr.State outputs: the page keeps them, the API does not return them


def pack(**values: Any) -> tuple:
    """One streamed update: the named outputs, every other output left as it is (gr.skip())."""
    unknown = set(values) - set(OUTPUTS)
    if unknown:
        raise KeyError(f"unknown outputs {unknown}")
    return tuple(values.get(name, gr.skip()) for name in OUTPUTS)


def status_html(message: str, kind: str = "info") -> str:
    icon = {"info": "●", "run": "◌", "ok": "✓", "error": "⚠", "stop": "■"}.get(kind, "")
    return f'<div class="status {kind}">{icon} {html.escape(str(message))}</div>'


def cleared() -> dict[str, Any]:
    """Every panel of a run back to empty: what a refused request shows, so no answer stays beside a prompt that
    it does not answer."""
    return dict(vanilla="", rain=rain_html(None), tree=empty_figure(), timeline=timeline_html(None),
                stats=stats_html(None), judge_node=gr.update(choices=node_choices(None), value="latest"),
                judge_info=judge_panel(None, None, None)[0], judge_prompts="",
                narration=narration_html(None), why=why_html(None), record=None, cursor=0,
                scrub=gr.update(maximum=1, value=0))


def problem(message: str, clear: bool = False) -> tuple:
    """A message in the page instead of a run (and a toast); `clear` empties the panels of the previous run."""
    gr.Warning(message)
    return pack(status=status_html(message, "error"), **(cleared() if clear else {}))


def figure_of(view: RunView, uirevision: str, show_unvisited: bool):
    if not view.events:
        return empty_figure(uirevision=uirevision)
    path = view.path if (view.path and view.finished is None) else []
    return tree_figure(view.tree, path=path, verdicts=view.verdicts, focus=view.latest if view.finished is None else None,
                       uirevision=uirevision, show_unvisited=bool(show_unvisited), question=view.question)


def judge_outputs(view: RunView, record: RunRecord | None) -> dict[str, Any]:
    """The judge panel on the moment's latest verdict, and the node picker following it."""
    info, prompts = judge_panel(view, record.judge if record else None, "latest",
                                           record.config if record else None)
    return dict(judge_node=gr.update(choices=node_choices(view), value="latest"), judge_info=info,
                judge_prompts=prompts)


def record_outputs(record: RunRecord) -> dict[str, Any]:
    """What a record shows beside its tree: the vanilla answer and the Best-of-N lane."""
    stats = RunStats.from_dict(record.stats)
    return dict(vanilla=record.vanilla or "", bon=bon_html(Lane.from_stats(stats), stats))


def simulations_of(record: RunRecord) -> int:
    return len(simulation_bounds(record.events)) - 1


def moment(view: RunView, record: RunRecord | None, revision: str, show_unvisited: bool, *, live: bool = False,
           paused: bool = False, only: frozenset[str] | None = None) -> dict[str, Any]:
    """Every panel at the view's moment: the RAIN answer, the tree, the timeline, the stats (the record's own at the
    run's end), the judge panel, the narration, the why-table, the scrubber and the cursor. `only`: just those
    outputs (a live run redraws what the event changed)."""
    at_end = view.finished is not None and record is not None and not live
    stats = RunStats.from_dict(record.stats if record is not None else None)
    divergence = split_at_divergence(record) if at_end else None
    note = judge_note(record.model, record.config) if record is not None else ""
    wanted = (lambda name: True) if only is None else (lambda name: name in only)
    values: dict[str, Any] = {}
    if wanted("rain"):
        values["rain"] = rain_html(view, divergence=divergence, judge=note)
    if wanted("tree"):
        values["tree"] = figure_of(view, revision, show_unvisited)
    if wanted("timeline"):
        values["timeline"] = timeline_html(view)
    if wanted("stats"):
        values["stats"] = stats_html(view, final=stats if at_end and record.stats else None,
                                     vanilla_tokens=stats.vanilla.tokens if stats.vanilla else None,
                                     vanilla_seconds=stats.vanilla.seconds if stats.vanilla else None)
    if wanted("judge"):
        values.update(judge_outputs(view, record))
    if wanted("narration"):
        values["narration"] = narration_html(view, live=live, paused=paused)
    if wanted("why"):
        values["why"] = why_html(view)
    if only is None:
        total = simulations_of(record) if record is not None and not live else view.simulation
        values["scrub"] = gr.update(maximum=max(total, 1), value=view.simulation)
        values["cursor"] = view.events
    return values


def show(source: RunRecord, cursor: int | None, revision: str, show_unvisited: bool, why_node: float | None = None,
         **extra: Any) -> tuple:
    """The page at event `cursor` of a record (its end when None); `extra` names more outputs (`record` too)."""
    node = None if why_node is None or why_node < 0 else int(why_node)
    view = RunView.at(source, cursor, why_node=node)
    return pack(**{**moment(view, source, revision, show_unvisited), **extra})
