"""`eval`'s figure: six Plotly panels of an eval summary, as a self-contained DIR/summary.html (plotly.js inlined,
so it opens offline). The one module of rain/ that imports plotly, inside `summary_figure`: it is the command
line's output, on the top floor; the library below (core, backends, runs) never draws."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from rain.tools.eval_summary import Summary, format_summary, number
from rain.tools.evaluation import PLOT_FILE, Result

CATEGORY_COLOURS = {"all": "#475569", "harmful": "#dc2626", "benign": "#16a34a"}
OTHER_COLOURS = ("#2563eb", "#9333ea", "#0891b2", "#be185d")
METHOD_COLOURS = {"vanilla": "#64748b", "rain": "#2563eb", "bon": "#f59e0b"}


def summary_figure(summary: Summary, results: Sequence[Result]):
    """Six panels: self score, external score, refusal rate, win rates, cost ratios, per-prompt self scores."""
    import plotly.graph_objects as go  # plotly is the app's library: loaded only when eval draws
    from plotly.subplots import make_subplots

    titles = ("Self-judge score of the final answer (mean)", f"External judge: {summary.external or 'none'}",
              "Refusal rate (keyword list)", "Win rate, ties excluded (0.5 = no difference)",
              "Cost relative to vanilla (totals over the same prompts)", "Self-judge score per prompt")
    fig = make_subplots(rows=3, cols=2, subplot_titles=titles, vertical_spacing=0.1, horizontal_spacing=0.08)
    categories = list(dict.fromkeys(q.category for q in summary.quality))
    others = iter(OTHER_COLOURS * 8)
    for category in categories:
        colour = CATEGORY_COLOURS.get(category) or next(others)
        rows = [q for q in summary.quality if q.category == category]
        x = [q.method for q in rows]
        style = dict(legendgroup=category, offsetgroup=category, marker_color=colour)
        fig.add_trace(go.Bar(x=x, y=[q.self_score for q in rows], name=f"prompts: {category}", **style), 1, 1)
        if summary.external:
            fig.add_trace(go.Bar(x=x, y=[q.external_score for q in rows], showlegend=False, **style), 1, 2)
        fig.add_trace(go.Bar(x=x, y=[q.refusal_rate for q in rows], showlegend=False, **style,
                             text=[f"{q.refusal_rate:.0%}" for q in rows]), 2, 1)
    if not summary.external:
        fig.add_trace(go.Scatter(x=[0], y=[0], mode="text", text=["no external judge (add --judge MODEL)"],
                                 showlegend=False, hoverinfo="skip"), 1, 2)
        fig.update_xaxes(visible=False, row=1, col=2)
    for judge in dict.fromkeys(w.judge for w in summary.wins):
        rows = [w for w in summary.wins if w.judge == judge]
        fig.add_trace(go.Bar(x=[f"{w.method} > {w.baseline}" for w in rows], y=[w.result.rate for w in rows],
                             name=f"judge: {judge}",
                             text=[f"{w.result.wins} won, {w.result.losses} lost, {w.result.ties} tied" for w in rows]),
                      2, 2)
    fig.add_hline(y=0.5, line_dash="dot", line_color="#94a3b8", row=2, col=2)
    for (label, attr), colour in zip((("time", "seconds_ratio"), ("forward calls", "calls_ratio"),
                                      ("forwarded tokens", "tokens_ratio")), ("#0f766e", "#a855f7", "#eab308")):
        values = [getattr(c, attr) for c in summary.costs]
        fig.add_trace(go.Bar(x=[c.method for c in summary.costs], y=values, name=f"cost: {label}",
                             marker_color=colour, text=[number(v, ".1f") + "×" for v in values]), 3, 1)
    for method in summary.methods:
        rows = [r for r in results if r.method == method]
        fig.add_trace(go.Box(x=[method] * len(rows), y=[r.self_score for r in rows], name=method, boxpoints="all",
                             marker_color=METHOD_COLOURS.get(method), showlegend=False,
                             text=[f"{r.id} ({r.category}): {r.answer[:80]}" for r in rows]), 3, 2)
    for col in (1, 2):
        fig.update_yaxes(range=[-1.05, 1.05], row=1, col=col)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", row=2, col=1)
    fig.update_yaxes(range=[0, 1.05], row=2, col=2)
    fig.update_yaxes(range=[-1.05, 1.05], row=3, col=2)
    fig.update_layout(height=1150, barmode="group", template="plotly_white",
                      title=summary.header.splitlines()[0] if summary.header else None)
    return fig


def write_figure(folder: Path, summary: Summary, results: Sequence[Result]) -> Path:
    """DIR/summary.html: the figure, then the markdown summary as text."""
    figure = summary_figure(summary, results).to_html(full_html=False, include_plotlyjs=True)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>RAIN evaluation</title></head><body>"
            f"{figure}<pre style='font-size:13px'>{html.escape(format_summary(summary))}</pre></body></html>")
    path = folder / PLOT_FILE
    path.write_text(page, encoding="utf-8")
    return path
