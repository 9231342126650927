"""Our trees in llm-reasoners' visualizer format, and back.

llm-reasoners (maitrix-org/llm-reasoners, reasoners/visualization/) serialises a `TreeLog` with its
`TreeLogEncoder` as `{"logs": [snapshot, ...]}`, one `TreeSnapshot` per search iteration. A snapshot is
`{"nodes": {id: node}, "edges": {id: edge}}` with `node = {"id", "data", "selected_edge", "convert_images"}` and
`edge = {"id", "source", "target", "data", "convert_images"}`; the ids are JSON object keys (strings). Every
snapshot is the whole tree (connected, one parent per non-root node). MCTS logs select the edges of that
iteration's trace and, at every other node, the edge with the highest "Q".

We write one snapshot per simulation: the tree as it stands after the simulation, and after any commit that
follows it. Node data holds our node fields (text, tokens, visits n, real visits, value q, prior p, flags) and
`committed_after`, the simulation after which the node was committed; edge data holds the child's Q, N, P and
`action` (its text), as the visualizer shows them. The first snapshot's root also carries `rain`: the record's
prompt, config, model, judge, answers and stats. Reading a log back synthesises the events that rebuild the
last snapshot (rain/core/replay.py), so the result is an ordinary tree file; the per-simulation detail of Eq. (1)
and the judge is not in a TreeLog and is not invented.
"""
from __future__ import annotations

import json
import math
from typing import Any

from rain.core.config import ConfigError, RainConfig
from rain.core.errors import RainError
from rain.core.events import (
    BackedUp,
    Committed,
    Event,
    Expanded,
    NewNode,
    NodesAdded,
    NodeStats,
    Rewound,
    Selected,
    Started,
)
from rain.core.export import RunRecord, nodes_of
from rain.core.puct import puct_scores
from rain.core.replay import apply_event, rebuild
from rain.core.tree import NO_PARENT, ROOT_ID, Tree
from rain.runs.teaching import COMMIT_REASONS

FOREIGN_MODEL = "treelog import"


class TreeLogError(RainError, ValueError):
    """A file that is not a TreeLog we can read; the message names the first problem."""


# --- RAIN -> TreeLog -----------------------------------------------------------------------------------------

def _snapshot(tree: Tree, trace: list[int], commits: dict[int, Committed], committed_after: dict[int, int],
              meta: dict | None) -> dict[str, Any]:
    nodes: dict[str, Any] = {}
    edges: dict[str, Any] = {}
    for node in tree.nodes:                    # replayed trees are never evicted: every slot is a node
        data = {"text": node.text, "tokens": list(node.tokens), "step": node.step, "prior": node.prior,
                "visits": node.visits, "real_visits": node.real_visits, "value": node.value,
                "terminal": node.terminal, "added": node.added, "committed": node.committed,
                "committed_after": committed_after.get(node.id)}
        if node.id in commits:
            data.update(commit_reason=commits[node.id].reason, commit_simulations=commits[node.id].simulations)
        if node.id == ROOT_ID and meta is not None:
            data["rain"] = meta
        nodes[str(node.id)] = {"id": node.id, "data": data, "selected_edge": None, "convert_images": True}
        if node.parent != NO_PARENT:
            edge_id = len(edges)
            edges[str(edge_id)] = {"id": edge_id, "source": node.parent, "target": node.id, "convert_images": True,
                                   "data": {"Q": node.value, "N": node.visits, "P": node.prior, "action": node.text}}
    edge_of = {edge["target"]: edge["id"] for edge in edges.values()}
    on_trace = dict(zip(trace, trace[1:]))
    for node in tree.nodes:                    # the simulation's trace, elsewhere the best Q (as llm-reasoners does)
        if node.children:
            child = on_trace.get(node.id)
            if child is None:
                child = max(node.children.values(), key=lambda c: tree[c].value)
            nodes[str(node.id)]["selected_edge"] = edge_of[child]
    return {"nodes": nodes, "edges": edges}


def to_treelog(record: RunRecord) -> dict[str, Any]:
    """One TreeSnapshot per simulation (see the module docstring)."""
    meta = {"prompt": record.prompt, "config": record.config, "model": record.model, "judge": record.judge,
            "answer": record.answer, "vanilla": record.vanilla, "stats": record.stats}
    tree, logs, trace, simulation = Tree.new(), [], [0], 0
    committed_after: dict[int, int] = {}
    commits: dict[int, Committed] = {}

    def flush() -> None:
        logs.append(_snapshot(tree, trace, commits, committed_after, meta if not logs else None))

    for event in record.events:
        starts = isinstance(event, (Selected, NodesAdded)) and event.simulation > simulation
        if starts and simulation > 0:
            flush()
        if starts:
            simulation = event.simulation
        if isinstance(event, Selected):
            trace = list(event.path)
        if isinstance(event, Committed):
            committed_after[event.node], commits[event.node] = simulation, event
        apply_event(tree, event)
    flush()
    return {"logs": logs}


# --- TreeLog -> RAIN -----------------------------------------------------------------------------------------

def _number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TreeLogError(f"{where} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise TreeLogError(f"{where} is {value}, outside [{low}, {high}]")
    return float(value)


def _parse_snapshot(index: int, snapshot: Any) -> tuple[dict[int, dict], dict[int, int], dict[int, dict], int, list]:
    """(node data by id, parent by id, edge data by target, root id, selected edges) of one snapshot, checked."""
    where = f"logs[{index}]"
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("nodes"), dict) \
            or not isinstance(snapshot.get("edges"), dict):
        raise TreeLogError(f"{where} must be an object with 'nodes' and 'edges' objects")
    nodes: dict[int, dict] = {}
    selected: dict[int, Any] = {}
    for key, node in snapshot["nodes"].items():
        if not isinstance(node, dict) or not isinstance(node.get("id"), int) or str(node["id"]) != key:
            raise TreeLogError(f"{where}.nodes[{key!r}] must be an object whose integer 'id' is its key")
        data = node.get("data", {})
        if not isinstance(data, dict):
            raise TreeLogError(f"{where}.nodes[{key!r}].data must be an object")
        nodes[node["id"]], selected[node["id"]] = data, node.get("selected_edge")
    if not nodes:
        raise TreeLogError(f"{where} has no nodes")
    parents: dict[int, int] = {}
    edge_data: dict[int, dict] = {}
    edge_target: dict[Any, int] = {}
    for key, edge in snapshot["edges"].items():
        if not isinstance(edge, dict) or not all(isinstance(edge.get(k), int) for k in ("id", "source", "target")):
            raise TreeLogError(f"{where}.edges[{key!r}] must be an object with integer 'id', 'source' and 'target'")
        source, target = edge["source"], edge["target"]
        if source not in nodes or target not in nodes:
            raise TreeLogError(f"{where}.edges[{key!r}] joins a node that is not in the snapshot")
        if target in parents:
            raise TreeLogError(f"{where}: node {target} has two parents")
        data = edge.get("data", {})
        if not isinstance(data, dict):
            raise TreeLogError(f"{where}.edges[{key!r}].data must be an object")
        parents[target], edge_data[target], edge_target[edge["id"]] = source, data, target
    roots = [n for n in nodes if n not in parents]
    if len(roots) != 1:
        raise TreeLogError(f"{where} is not a tree: {len(roots)} nodes have no parent")
    seen, stack, children = set(), [roots[0]], {}
    for target, source in parents.items():
        children.setdefault(source, []).append(target)
    while stack:
        node = stack.pop()
        seen.add(node)
        stack.extend(children.get(node, []))
    if len(seen) != len(nodes):
        raise TreeLogError(f"{where} is not connected: {len(nodes) - len(seen)} nodes cannot be reached from the root")
    trace, node = [roots[0]], roots[0]
    while selected.get(node) in edge_target and edge_target[selected[node]] not in trace:
        node = edge_target[selected[node]]
        trace.append(node)
    return nodes, parents, edge_data, roots[0], trace


def _stats(node: dict, edge: dict, where: str) -> tuple[float, int, float, float]:
    """(visits, real visits, value, prior) from our node data, else the edge's N, Q and P."""
    visits = _number(node.get("visits", edge.get("N", 0.0)), f"{where} visits", 0.0)
    real = node.get("real_visits", int(visits))
    if isinstance(real, bool) or not isinstance(real, int) or real < 0:
        raise TreeLogError(f"{where} real_visits must be a whole number >= 0, got {real!r}")
    value = _number(node.get("value", edge.get("Q", 0.0)), f"{where} value (Q)", -1.0, 1.0)
    prior = _number(node.get("prior", edge.get("P", 0.0)), f"{where} prior (P)")
    return visits, real, value, prior


def from_treelog(log: Any) -> RunRecord:
    """A tree file from a TreeLog: events that rebuild each snapshot in turn, one simulation per snapshot."""
    if not isinstance(log, dict) or not isinstance(log.get("logs"), list) or not log["logs"]:
        raise TreeLogError("not a TreeLog: the top level must be an object with a non-empty 'logs' list")
    snapshots = [_parse_snapshot(i, s) for i, s in enumerate(log["logs"])]
    first_nodes, _, _, first_root, _ = snapshots[0]
    meta = first_nodes[first_root].get("rain") if isinstance(first_nodes[first_root].get("rain"), dict) else {}
    try:
        config = RainConfig.from_dict(meta["config"]) if isinstance(meta.get("config"), dict) else RainConfig()
    except (ConfigError, TypeError, ValueError) as error:
        raise TreeLogError(f"the TreeLog's RAIN config is not valid: {error}") from None
    ours: dict[Any, int] = {}                  # their node id -> our id (creation order)
    tree = Tree.new()
    root_text = first_nodes[first_root].get("text", first_nodes[first_root].get("state", ""))
    events: list[Event] = [Started(str(meta.get("prompt", "")), 0, root_text if isinstance(root_text, str) else "")]
    apply_event(tree, events[0])
    for simulation, (nodes, parents, edges, root, trace) in enumerate(snapshots, 1):
        if ours and ours.get(root, -1) != ROOT_ID:
            raise TreeLogError(f"logs[{simulation - 1}] has another root than the first snapshot")
        ours[root] = ROOT_ID
        order, stack = [], [root]
        while stack:                           # parents before children, siblings in id order
            node = stack.pop()
            order.append(node)
            stack.extend(sorted((t for t, s in parents.items() if s == node), reverse=True))
        batch: list[Event] = []
        for node in order:
            if node in ours:
                continue
            if parents[node] not in ours:
                raise TreeLogError(f"logs[{simulation - 1}]: node {node}'s parent is new in the same snapshot "
                                   f"out of order")
            data, edge = nodes[node], edges[node]
            text = data.get("text", edge.get("action", ""))
            tokens = data.get("tokens", [])
            if not isinstance(text, str) or not isinstance(tokens, list) or \
                    not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens):
                raise TreeLogError(f"logs[{simulation - 1}] node {node}: text must be a string and tokens a list "
                                   f"of token ids")
            _, _, _, prior = _stats(data, edge, f"logs[{simulation - 1}] node {node}")
            ours[node] = len(tree.nodes) + sum(len(e.children) for e in batch)
            new = NewNode(ours[node], ours[parents[node]], tokens, text, prior)
            kind = NodesAdded if data.get("added") is True else Expanded
            if batch and type(batch[-1]) is kind and batch[-1].node == new.parent:
                batch[-1].children.append(new)
            else:
                batch.append(kind(simulation, new.parent, [new]))
        additions = [e for e in batch if isinstance(e, NodesAdded)]
        for event in additions:              # a simulation's additions come before its select (rain/core/search.py)
            apply_event(tree, event)
        path = _descent(tree, [ours[n] for n in trace if n in ours])
        scores = [puct_scores(tree, parent, config)[list(tree[parent].children.values()).index(child)]
                  for parent, child in zip(path, path[1:])]
        events.extend(additions + [Selected(simulation, path, scores)])
        for event in batch:
            if not isinstance(event, NodesAdded):
                apply_event(tree, event)
                events.append(event)
        changed, terminal = [], []
        for node in order:
            visits, real, value, _ = _stats(nodes[node], edges.get(node, {}), f"logs[{simulation - 1}] node {node}")
            current = tree[ours[node]]
            if (current.visits, current.real_visits, current.value) != (visits, real, value):
                changed.append(NodeStats(ours[node], visits, real, value))
            if nodes[node].get("terminal") is True and not current.terminal:
                terminal.append(NodeStats(ours[node], visits, real, value))
        synthesised = [BackedUp(simulation, 0.0, changed)] + [BackedUp(simulation, 0.0, [stats], [], True)
                                                               for stats in terminal]
        for event in synthesised:
            apply_event(tree, event)
        events.extend(synthesised)
        events.append(Rewound(simulation, tree.root))
        for event in _commits(nodes, parents, ours, tree, simulation, snapshots):
            apply_event(tree, event)
            events.append(event)
    rebuilt = rebuild(events)
    committed = [n for n in rebuilt.nodes if n.committed and n.id != ROOT_ID]
    answer = meta.get("answer") if isinstance(meta.get("answer"), str) else "".join(n.text for n in committed)
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {"name": FOREIGN_MODEL}
    judge = meta.get("judge") if isinstance(meta.get("judge"), dict) else {"format": "treelog", "criterion": "harm",
                                                                          "templates": []}
    return RunRecord(prompt=str(meta.get("prompt", "")), config=meta.get("config", {}) if isinstance(
        meta.get("config"), dict) else {}, model=model, judge=judge, events=events, nodes=nodes_of(rebuilt),
        answer=answer, vanilla=meta.get("vanilla") if isinstance(meta.get("vanilla"), str) else None,
        stats=meta.get("stats") if isinstance(meta.get("stats"), dict) else {})


def _descent(tree: Tree, trace: list[int]) -> list[int]:
    """The trace from the current root down, as far as it goes through existing children."""
    path = [tree.root]
    for node in trace[trace.index(tree.root) + 1:] if tree.root in trace else []:
        if node not in tree[path[-1]].children.values():
            break
        path.append(node)
    return path


def _commits(nodes: dict, parents: dict, ours: dict, tree: Tree, simulation: int, snapshots: list) -> list[Committed]:
    """Commit events for the nodes this snapshot says were committed after this simulation, in path order.

    A node carries `committed_after` (our logs) or, in a foreign log, only `committed`: then it is committed at
    the first snapshot that marks it."""
    fresh = []
    for node, data in nodes.items():
        if node not in parents or tree[ours[node]].committed:
            continue
        after = data.get("committed_after")
        if (isinstance(after, int) and after <= simulation) or (after is None and data.get("committed") is True):
            fresh.append(node)
    events = []
    root = tree.root
    for node in sorted(fresh, key=lambda n: tree[ours[n]].step):
        if tree[ours[node]].parent != root:
            raise TreeLogError(f"logs[{simulation - 1}]: committed node {node} is not a child of the committed "
                               f"path's end")
        children = [t for t, s in parents.items() if s == node]
        priors = {ours[c]: _stats(nodes[c], {}, f"node {c}")[3] if "prior" in nodes[c] else tree[ours[c]].prior
                  for c in children}
        spent = nodes[node].get("commit_simulations", 0)
        reason = nodes[node].get("commit_reason", "budget")
        events.append(Committed(len(events) + sum(1 for n in tree.nodes if n.committed), ours[node],
                                tree[ours[node]].text, spent if isinstance(spent, int) and spent >= 0 else 0,
                                reason if reason in COMMIT_REASONS else "budget", priors))
        root = ours[node]
    return events


def loads_treelog(text: str | bytes) -> RunRecord:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TreeLogError(f"not valid JSON: {error}") from None
    except RecursionError:
        raise TreeLogError("not a TreeLog: nested too deeply") from None
    return from_treelog(data)


def dumps_treelog(record: RunRecord) -> str:
    return json.dumps(to_treelog(record), ensure_ascii=False, allow_nan=False)
