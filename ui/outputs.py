"""The page's outputs: their names (the order of every handler's outputs, a contract of the API), one streamed
update (`pack`), and `outputs`, the one function that shows a run's view: the run (at its end), replay, scrub and
import all go through it."""
from __future__ import annotations

import html
from typing import Any

import gradio as gr

from rain.core.export import RunRecord
from ui.bon import Lane, bon_html
from ui.figures import empty_figure, tree_figure
from ui.render import judge_panel, node_choices, rain_html, stats_html, timeline_html
from ui.teaching import split_at_divergence
from ui.view import RunView

OUTPUTS = ("status", "vanilla", "rain", "tree", "timeline", "stats", "record", "judge_node", "judge_info",
           "judge_prompt_1", "judge_prompt_2", "scrub", "export", "bon",
           "narration", "why", "gate")                                     # new outputs go last (API positions)
STATES = ("record", "gate")       # gr.State outputs: the page keeps them, the API does not return them


def pack(**values: Any) -> tuple:
    """One streamed update: the named outputs, every other output left as it is (gr.skip())."""
    unknown = set(values) - set(OUTPUTS)
    if unknown:
        raise KeyError(f"unknown outputs {unknown}")
    return tuple(values.get(name, gr.skip()) for name in OUTPUTS)


def status_html(message: str, kind: str = "info") -> str:
    icon = {"info": "●", "run": "◌", "ok": "✓", "error": "⚠", "stop": "■"}.get(kind, "")
    return f'<div class="status {kind}">{icon} {html.escape(str(message))}</div>'


def problem(message: str) -> tuple:
    """A message in the page instead of a run (and a toast)."""
    gr.Warning(message)
    return pack(status=status_html(message, "error"))


def figure_of(view: RunView, uirevision: str, show_unvisited: bool):
    if not view.events:
        return empty_figure(uirevision=uirevision)
    path = view.path if (view.path and view.finished is None) else []
    return tree_figure(view.tree, path=path, verdicts=view.verdicts, focus=view.latest if view.finished is None else None,
                       uirevision=uirevision, show_unvisited=bool(show_unvisited))


def judge_outputs(view: RunView, record: RunRecord | None) -> dict[str, Any]:
    """The judge panel on the latest verdict, and the node picker following it."""
    info, prompt_1, prompt_2 = judge_panel(view, record.judge if record else None, "latest",
                                           record.config if record else None)
    return dict(judge_node=gr.update(choices=node_choices(view), value="latest"), judge_info=info,
                judge_prompt_1=prompt_1, judge_prompt_2=prompt_2)


def record_outputs(record: RunRecord) -> dict[str, Any]:
    """What a record shows beside its tree: the vanilla answer and the Best-of-N lane."""
    return dict(vanilla=record.vanilla or "", bon=bon_html(Lane.from_stats(record.stats), record.stats))


def outputs(view: RunView, source: RunRecord | None, revision: str, show_unvisited: bool, final: bool = True,
            judge: bool = True, **extra: Any) -> tuple:
    """The page after a view of `source`'s events: the RAIN answer, the tree, the timeline, the stats (the
    record's figures when `final`) and, with `judge`, the judge panel; `extra` names more outputs (among them
    `record`, the page's State)."""
    stats = (source.stats if source is not None else None) or {}
    divergence = split_at_divergence(source) if source is not None and final else None
    values = dict(rain=rain_html(view, divergence=divergence), tree=figure_of(view, revision, show_unvisited),
                  timeline=timeline_html(view),
                  stats=stats_html(view, final=(stats or None) if final else None,
                                   vanilla_tokens=stats.get("vanilla_tokens")))
    if judge:
        values.update(judge_outputs(view, source))
    values.update(extra)
    return pack(**values)
