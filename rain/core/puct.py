"""Eq. (1), the selection score, as pure functions of the tree (docs/algorithm.md §1.3 getqu, §1.5.1-2).

Its own module, apart from rain/core/search.py, because the page's why-table (rain/runs/teaching.py) shows
these terms and must import without torch; the search selects with the same functions.
"""
from __future__ import annotations

import math

from rain.core.config import RainConfig
from rain.core.tree import Tree

VALUE_RANGE_EPSILON = 1e-5          # getqu: (q - min) / (max - min + 1e-5)
VIRTUAL_LOSS_SCORE = -1.0           # a path in flight counts as one visit scored this: the lowest score a judge
                                    # gives (docs/algorithm.md §3 "Parallel simulations")


def selection_stats(tree: Tree, node_id: int) -> tuple[float, float]:
    """(n, q) of a node as Eq. (1) reads them: with m selected paths through it awaiting their back-up (parallel
    simulations), the virtual loss counts each as one more visit scored VIRTUAL_LOSS_SCORE:
    n' = n + m, q' = (q·n + m·(-1)) / (n + m) (docs/algorithm.md §3). m = 0 in the sequential search."""
    node, pending = tree[node_id], tree.in_flight_through(node_id) if tree.in_flight else 0
    if pending == 0:
        return node.visits, node.value
    visits = node.visits + pending
    return visits, (node.value * node.visits + pending * VIRTUAL_LOSS_SCORE) / visits


def puct_terms(tree: Tree, node_id: int, config: RainConfig) -> list[tuple[float, float]]:
    """Eq. (1)'s two terms for every child of `node_id`: (value term, exploration term c · p · sqrt(N) / (1 + n)).

    Code variant (default, §1.3 getqu): value = (q - min)/(max - min + 1e-5), 0 for an unvisited child, and
    N = the parent's n. Paper variants (§1.5.1-2): raw q, and N = the sum of the siblings' n. n and q include
    the virtual loss of paths in flight (`selection_stats`).
    """
    children = tree.children(node_id)
    stats = [selection_stats(tree, child.id) for child in children]
    total = selection_stats(tree, node_id)[0] if config.puct_visits == "parent" else sum(n for n, _ in stats)
    exploration = config.c_puct * math.sqrt(total)
    terms = []
    for child, (visits, child_value) in zip(children, stats):
        if config.puct_value == "raw":
            value = child_value
        elif visits == 0:
            value = 0.0
        else:
            value = (child_value - tree.min_value) / (tree.max_value - tree.min_value + VALUE_RANGE_EPSILON)
        terms.append((value, exploration * child.prior / (1 + visits)))
    return terms


def puct_scores(tree: Tree, node_id: int, config: RainConfig) -> list[float]:
    """Eq. (1) for every child of `node_id`: value + c · p · sqrt(N) / (1 + n) (terms: `puct_terms`)."""
    return [value + exploration for value, exploration in puct_terms(tree, node_id, config)]
