"""Pure Plotly figures of a search-tree snapshot: no model, no Gradio, no search internals.

Layout: a tidy tree (post-order DFS: each leaf takes the next x slot, each parent sits at the midpoint of its
first and last child, y = -depth), so edges never cross. Encoding: colour = value q on a diverging scale fixed
to [-1, 1], marker size ~ sqrt(visits), diamonds = dynamically added nodes, thick dark edges and outlines = the
committed path, orange edges = the last selected path (the simulation before the rewind), green outline = the
node's n includes similarity mass (Eq. 2), big ring = the current root, star = the latest evaluated node.
"""
from __future__ import annotations

import html
import math
from typing import Iterable, Mapping, Sequence

import plotly.graph_objects as go

from rain.runs.teaching import count
from rain.core.tree import NO_PARENT, Tree

MAX_NODES = 600
SIMILARITY_EPSILON = 1e-9
# Diverging scale on q in [-1, 1]: red = judged bad, white = neutral, blue = judged good.
VALUE_SCALE = [[0.0, "#b2182b"], [0.25, "#ef8a62"], [0.5, "#f7f7f7"], [0.75, "#67a9cf"], [1.0, "#2166ac"]]
COMMITTED = "#1f2937"
SELECTED = "#f59e0b"
SIMILARITY = "#10b981"
UNVISITED = "#cbd5e1"
EDGE = "#cbd5e1"
FONT = "Inter, ui-sans-serif, system-ui, sans-serif"
TREE_HEIGHT = 440            # px: the tree, the Step controls, the narration and the why-table share a 720 px screen
LABEL_PAD = "\u2002"         # an en space: ~6 px at the labels' 12 px font
LABEL_PAD_PX = 6


# --- which nodes, where ---------------------------------------------------------------------------------

def committed_path(tree: Tree) -> list[int]:
    chain, node = [], tree.root
    while node != NO_PARENT:
        chain.append(node)
        node = tree[node].parent
    return chain[::-1]


def display_nodes(tree: Tree, limit: int = MAX_NODES, show_unvisited: bool = True) -> list[int]:
    """At most `limit` node ids, closed under parents: the committed path, then visited nodes (the current
    root's subtree first), then unvisited candidates (the current root's subtree first); shallow before deep."""
    path = committed_path(tree)
    chosen: dict[int, None] = dict.fromkeys(path)
    under_root = {tree.root}
    stack = [tree.root]
    while stack:
        for child in tree[stack.pop()].children.values():
            under_root.add(child)
            stack.append(child)

    def phase(node_id: int) -> int:
        node = tree[node_id]
        visited = node.visits > 0
        return (0 if visited else 2) + (0 if node_id in under_root else 1)

    rest = sorted((n.id for n in tree.nodes if n.id not in chosen),
                  key=lambda i: (phase(i), tree[i].step, -tree[i].visits, i))
    for node_id in rest:
        if len(chosen) >= limit:
            break
        node = tree[node_id]
        if not show_unvisited and node.visits <= 0:
            continue
        if node.parent in chosen:
            chosen[node_id] = None
    if len(chosen) > limit:                       # only if the committed path alone is longer than the limit
        chosen = dict.fromkeys(list(chosen)[:limit])
    return list(chosen)


def tidy_layout(tree: Tree, shown: Iterable[int] | None = None, top: int = 0) -> dict[int, tuple[float, float]]:
    """(x, y) of every shown node under `top`: leaves take consecutive x slots in DFS order, parents sit at the
    midpoint of their first and last shown child, y = -depth. Iterative, so deep trees do not recurse."""
    shown_set = set(shown) if shown is not None else None

    def kids(node_id: int) -> list[int]:
        ids = list(tree[node_id].children.values())
        return ids if shown_set is None else [i for i in ids if i in shown_set]

    xs: dict[int, float] = {}
    slot = 0
    stack: list[tuple[int, bool]] = [(top, False)]
    while stack:
        node_id, expanded = stack.pop()
        children = kids(node_id)
        if not children:
            xs[node_id] = float(slot)
            slot += 1
        elif expanded:
            xs[node_id] = (xs[children[0]] + xs[children[-1]]) / 2.0
        else:
            stack.append((node_id, True))
            stack.extend((child, False) for child in reversed(children))
    return {n: (x, -float(tree[n].step)) for n, x in xs.items()}


# --- encodings ------------------------------------------------------------------------------------------

def marker_size(visits: float) -> float:
    """Area grows with visits: 7 px for an unvisited node, ~30 px at 100 visits, capped at 38."""
    return round(min(38.0, 7.0 + 2.3 * math.sqrt(max(visits, 0.0))), 1)


def similarity_mass(visits: float, real_visits: int) -> float:
    """The part of n that came from Eq. (2) similarity updates rather than real visits."""
    return max(0.0, visits - real_visits)


def _escape(text: str) -> str:
    return html.escape(text.replace("\r", "").replace("\n", "⏎"), quote=False)


def _labels(verdict) -> str:
    def one(probs: Mapping[str, float]) -> str:
        return " ".join(f"P({_escape(k)})={v:.2f}" for k, v in probs.items())
    orders = "".join(f"<br>  order {k}: {one(probs)}" for k, probs in enumerate(verdict.orders, 1))
    return f"judge (sim {verdict.simulation}): score {verdict.score:+.2f}{orders}{' (cached)' if verdict.cache_hit else ''}"


def node_label(tree: Tree, node_id: int, question: str = "") -> str:
    """`#id “token set”`; the prompt's node shows the user's question, not the chat template around it."""
    if node_id == 0:
        return f"#0 the question “{_escape(question if len(question) <= 60 else question[:59] + '…')}”" \
            if question else "#0 the prompt"
    text = tree[node_id].text
    text = text if len(text) <= 60 else text[:59] + "…"
    return f"#{node_id} “{_escape(text)}”"


def hover_extra(tree: Tree, node_id: int, verdicts: Mapping[int, object] | None = None) -> str:
    """The hover lines that only some nodes have: similarity mass, flags, the judge's latest verdict."""
    node = tree[node_id]
    lines = []
    mass = similarity_mass(node.visits, node.real_visits)
    if mass > SIMILARITY_EPSILON:
        lines.append(f"n includes +{mass:.2f} similarity mass")
    flags = [name for name, on in (("current root", node_id == tree.root), ("committed", node.committed and node_id != 0),
                                   ("dynamically added", node.added), ("terminal", node.terminal)) if on]
    if flags:
        lines.append(" · ".join(flags))
    if verdicts and node_id in verdicts:
        lines.append(_labels(verdicts[node_id]))
    return "".join("<br>" + line for line in lines)


def hover_text(tree: Tree, node_id: int, verdicts: Mapping[int, object] | None = None, question: str = "") -> str:
    """The full hover text of one node (the figure sends it as customdata + a shared hovertemplate)."""
    node = tree[node_id]
    return (f"<b>{node_label(tree, node_id, question)}</b><br>prior p {node.prior:.3f} · visits n {count(node.visits)} "
            f"(real {node.real_visits}) · value q {node.value:+.3f}" + hover_extra(tree, node_id, verdicts))


VISITED_HOVER = ("<b>%{customdata[0]}</b><br>prior p %{customdata[1]:.3f} · visits n %{customdata[2]} "
                 "(real %{customdata[3]}) · value q %{customdata[4]}%{customdata[5]}<extra></extra>")
UNVISITED_HOVER = "<b>%{customdata[0]}</b><br>prior p %{customdata[1]:.3f} · not visited yet%{customdata[2]}<extra></extra>"


def _edges(positions: Mapping[int, tuple[float, float]], pairs: Iterable[tuple[int, int]]) -> tuple[list, list]:
    xs: list = []
    ys: list = []
    for parent, child in pairs:
        if parent in positions and child in positions:
            (x0, y0), (x1, y1) = positions[parent], positions[child]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
    return xs, ys


def root_ring_size(tree: Tree) -> float:
    return max(28, marker_size(tree[tree.root].visits) + 12)


def label_text(tree: Tree, node_id: int) -> str:
    """A spine label, padded by the marker's radius: Plotly starts "middle right" text at the node's centre, so
    without it the marker hides the first characters."""
    text = tree[node_id].text
    text = text if len(text) <= 18 else text[:17] + "…"
    size = marker_size(tree[node_id].visits)
    if node_id == tree.root:
        size = root_ring_size(tree)                  # the current root's ring is wider than its marker
    pad = LABEL_PAD * math.ceil(size / 2 / LABEL_PAD_PX + 1)
    return f"{pad}“{_escape(text)}”"


def empty_figure(message: str = "The search tree appears here when a run starts.",
                 uirevision: str = "rain", height: int = 0) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        template="none", height=height or TREE_HEIGHT, margin=dict(l=10, r=10, t=10, b=10), uirevision=uirevision,
        xaxis=dict(visible=False), yaxis=dict(visible=False), paper_bgcolor="white", plot_bgcolor="white",
        annotations=[dict(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                          font=dict(size=15, color="#64748b", family=FONT))])
    return figure


def tree_figure(tree: Tree, *, path: Sequence[int] = (), verdicts: Mapping[int, object] | None = None,
                focus: int | None = None, uirevision: str = "rain", show_unvisited: bool = True,
                max_nodes: int = MAX_NODES, height: int = TREE_HEIGHT, title: str | None = None,
                question: str = "") -> go.Figure:
    """The tree as a Plotly figure (see the module docstring for the encoding)."""
    shown = display_nodes(tree, max_nodes, show_unvisited)
    positions = tidy_layout(tree, shown)
    shown = [n for n in shown if n in positions]
    committed = set(committed_path(tree))
    path_set = set(path)

    all_pairs = [(tree[n].parent, n) for n in shown if n != 0]
    committed_pairs = [(p, c) for p, c in all_pairs if c in committed]
    selected_pairs = [(path[i], path[i + 1]) for i in range(len(path) - 1)]

    traces: list[go.Scatter] = []
    ex, ey = _edges(positions, all_pairs)
    traces.append(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color=EDGE, width=1), hoverinfo="skip",
                             showlegend=False))
    sx, sy = _edges(positions, selected_pairs)
    traces.append(go.Scatter(x=sx or [None], y=sy or [None], mode="lines", line=dict(color=SELECTED, width=4),
                             hoverinfo="skip", name="last selected path (then rewound)"))
    cx, cy = _edges(positions, committed_pairs)
    traces.append(go.Scatter(x=cx or [None], y=cy or [None], mode="lines", line=dict(color=COMMITTED, width=4.5),
                             hoverinfo="skip", name="committed path"))

    unvisited = [n for n in shown if tree[n].visits <= 0 and n not in committed]
    visited = [n for n in shown if n not in unvisited]
    if unvisited:
        traces.append(go.Scatter(
            x=[positions[n][0] for n in unvisited], y=[positions[n][1] for n in unvisited], mode="markers",
            marker=dict(color=UNVISITED, size=6, symbol=["diamond" if tree[n].added else "circle" for n in unvisited],
                        line=dict(color="#94a3b8", width=0.5)),
            customdata=[[node_label(tree, n, question), round(tree[n].prior, 4), hover_extra(tree, n, verdicts)]
                        for n in unvisited],
            hovertemplate=UNVISITED_HOVER, name="candidate, not visited yet"))

    def outline(n: int) -> tuple[str, float]:
        if n in committed:
            return COMMITTED, 2.5
        if similarity_mass(tree[n].visits, tree[n].real_visits) > SIMILARITY_EPSILON:
            return SIMILARITY, 2.5
        if n in path_set:
            return SELECTED, 2.0
        return "#64748b", 0.6

    outlines = [outline(n) for n in visited]
    traces.append(go.Scatter(
        x=[positions[n][0] for n in visited], y=[positions[n][1] for n in visited], mode="markers",
        marker=dict(color=[round(tree[n].value, 3) for n in visited], cmin=-1, cmax=1, colorscale=VALUE_SCALE,
                    size=[marker_size(tree[n].visits) for n in visited],
                    symbol=["diamond" if tree[n].added else "circle" for n in visited],
                    line=dict(color=[c for c, _ in outlines], width=[w for _, w in outlines]),
                    colorbar=dict(title=dict(text="value q", side="right"), thickness=12, len=0.6, x=1.0,
                                  y=0.02, yanchor="bottom", tickvals=[-1, -0.5, 0, 0.5, 1], outlinewidth=0)),
        customdata=[[node_label(tree, n, question), round(tree[n].prior, 4), count(tree[n].visits), tree[n].real_visits,
                     f"{tree[n].value:+.3f}", hover_extra(tree, n, verdicts)] for n in visited],
        hovertemplate=VISITED_HOVER, name="visited (colour = q, size = n)"))

    # committed token sets as labels along the spine, and the leaf of the last selected path
    label_ids = [n for n in committed if n != 0 and n in positions]
    if path and path[-1] in positions and path[-1] not in committed:
        label_ids.append(path[-1])
    if label_ids:
        traces.append(go.Scatter(
            x=[positions[n][0] for n in label_ids], y=[positions[n][1] for n in label_ids], mode="text",
            text=[label_text(tree, n) for n in label_ids],
            textposition="middle right", textfont=dict(size=12, color=COMMITTED, family=FONT),
            hoverinfo="skip", showlegend=False))
    # legend-only keys
    traces.append(go.Scatter(x=[None], y=[None], mode="markers", name="dynamically added",
                             marker=dict(symbol="diamond", size=10, color="#e2e8f0", line=dict(color="#64748b", width=1))))
    traces.append(go.Scatter(x=[None], y=[None], mode="markers", name="n includes similarity mass",
                             marker=dict(size=10, color="#f7f7f7", line=dict(color=SIMILARITY, width=2.5))))
    rx, ry = positions.get(tree.root, (None, None))
    traces.append(go.Scatter(x=[rx], y=[ry], mode="markers", name="current root",
                             marker=dict(symbol="circle-open", size=root_ring_size(tree),
                                         color=COMMITTED, line=dict(width=2.5)), hoverinfo="skip"))
    if focus is not None and focus in positions:
        fx, fy = positions[focus]
        traces.append(go.Scatter(x=[fx], y=[fy], mode="markers", name="latest evaluated",
                                 marker=dict(symbol="star", size=17, color=SELECTED,
                                             line=dict(color="#78350f", width=1)),
                                 hovertext=[hover_text(tree, focus, verdicts, question)], hoverinfo="text",
                                 hoverlabel=dict(bordercolor=SELECTED)))

    total = len(tree.nodes)
    notes = []
    if len(shown) < total:
        notes.append(f"showing {len(shown)} of {total} nodes (committed path and current root's subtree first)")
    else:
        notes.append(f"{total} nodes")
    if title:
        notes.insert(0, title)
    figure = go.Figure(data=traces)
    xs = [p[0] for p in positions.values()] or [0.0]
    depth = max((-p[1] for p in positions.values()), default=0.0)
    figure.update_layout(
        template="none", height=height, uirevision=uirevision, hovermode="closest", dragmode="pan",
        modebar=dict(orientation="v", remove=["select2d", "lasso2d", "autoScale2d"]),
        margin=dict(l=8, r=8, t=34, b=8), paper_bgcolor="white", plot_bgcolor="white",
        font=dict(family=FONT, size=12, color="#334155"),
        hoverlabel=dict(bgcolor="white", font=dict(family=FONT, size=12), align="left"),
        legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom", font=dict(size=11), itemclick=False,
                    itemdoubleclick=False, bgcolor="rgba(255,255,255,0.8)"),
        xaxis=dict(visible=False, range=[min(xs) - 1, max(xs) + max(3.0, 0.12 * (max(xs) - min(xs) + 1))]),
        yaxis=dict(visible=False, range=[-depth - 0.6, 0.6]),
        annotations=[dict(text=" · ".join(notes), x=1, y=0, xref="paper", yref="paper", xanchor="right",
                          yanchor="bottom", showarrow=False, font=dict(size=11, color="#64748b"))])
    return figure
