"""Rebuild the search tree from its events alone: replay needs no model.

Folding every event of a run over `Tree.new()` gives the same nodes (ids, tokens, priors, visits, values,
flags) as the live search; stopping early gives the tree as it stood after that event, the paths in flight
included (a select event until its simulation's back-up: what parallel simulations' virtual loss counts,
docs/algorithm.md §3).
"""
from __future__ import annotations

from typing import Iterable, Iterator

from rain.core.errors import RainError
from rain.core.events import BackedUp, Committed, Event, Expanded, NewNode, NodesAdded, Selected, Started
from rain.core.tree import Tree


class ReplayError(RainError, ValueError):
    """The events do not describe a consistent tree."""


def _add(tree: Tree, new: NewNode, added: bool) -> None:
    if new.id != len(tree.nodes):
        raise ReplayError(f"node {new.id} created out of order (expected id {len(tree.nodes)})")
    if not 0 <= new.parent < new.id:
        raise ReplayError(f"node {new.id} has parent {new.parent}, which does not exist yet")
    tree.add(new.parent, tuple(new.tokens), new.text, new.prior, added=added)


def _set(tree: Tree, node_id: int, visits: float, value: float, real_visits: int | None = None) -> None:
    if not 0 <= node_id < len(tree.nodes):
        raise ReplayError(f"event names node {node_id}, which does not exist")
    node = tree[node_id]
    node.visits, node.value = visits, value
    if real_visits is not None:
        node.real_visits = real_visits


def apply_event(tree: Tree, event: Event) -> None:
    """Apply one event's state change to `tree` in place."""
    if isinstance(event, Started):
        tree[tree.root].text = event.root_text
    elif isinstance(event, Selected):                # in flight until its back-up: the virtual loss applies
        tree.in_flight[event.simulation] = list(event.path)
    elif isinstance(event, (Expanded, NodesAdded)):
        for new in event.children:
            _add(tree, new, added=isinstance(event, NodesAdded))
    elif isinstance(event, BackedUp):
        tree.in_flight.pop(event.simulation, None)
        for stats in event.path:
            _set(tree, stats.id, stats.visits, stats.value, stats.real_visits)
            tree.min_value = min(tree.min_value, stats.value) if stats.id != tree.root else tree.min_value
            tree.max_value = max(tree.max_value, stats.value) if stats.id != tree.root else tree.max_value
        for share in event.similarity:
            _set(tree, share.id, share.visits, share.value)
        if event.terminal and event.path:
            tree[event.path[-1].id].terminal = True
    elif isinstance(event, Committed):
        if not 0 <= event.node < len(tree.nodes) or tree[event.node].parent != tree.root:
            raise ReplayError(f"commit of node {event.node}, which is not a child of the root {tree.root}")
        tree.root = event.node
        tree[event.node].committed = True
        for node_id, prior in event.priors.items():
            if not 0 <= node_id < len(tree.nodes):
                raise ReplayError(f"commit re-noises node {node_id}, which does not exist")
            tree[node_id].prior = prior


def replay(events: Iterable[Event]) -> Iterator[tuple[Event, Tree]]:
    """Yield (event, tree after it); the same Tree object is updated in place."""
    tree = Tree.new()
    for event in events:
        apply_event(tree, event)
        yield event, tree


def rebuild(events: Iterable[Event], upto: int | None = None) -> Tree:
    """The tree after the first `upto` events (all when None)."""
    tree = Tree.new()
    for index, event in enumerate(events):
        if upto is not None and index >= upto:
            break
        apply_event(tree, event)
    return tree
