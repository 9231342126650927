"""Eq. (1), the selection score, as pure functions of the tree (docs/algorithm.md §1.3 getqu, §1.5.1-2).

Its own module, apart from rain/core/search.py, because the page's why-table (rain/runs/teaching.py) shows
these terms and must import without torch; the search selects with the same functions.
"""
from __future__ import annotations

import math

from rain.core.config import RainConfig
from rain.core.tree import Tree

VALUE_RANGE_EPSILON = 1e-5          # getqu: (q - min) / (max - min + 1e-5)


def puct_terms(tree: Tree, node_id: int, config: RainConfig) -> list[tuple[float, float]]:
    """Eq. (1)'s two terms for every child of `node_id`: (value term, exploration term c · p · sqrt(N) / (1 + n)).

    Code variant (default, §1.3 getqu): value = (q - min)/(max - min + 1e-5), 0 for an unvisited child, and
    N = the parent's n. Paper variants (§1.5.1-2): raw q, and N = the sum of the siblings' n.
    """
    children = tree.children(node_id)
    total = tree[node_id].visits if config.puct_visits == "parent" else sum(c.visits for c in children)
    exploration = config.c_puct * math.sqrt(total)
    terms = []
    for child in children:
        if config.puct_value == "raw":
            value = child.value
        elif child.visits == 0:
            value = 0.0
        else:
            value = (child.value - tree.min_value) / (tree.max_value - tree.min_value + VALUE_RANGE_EPSILON)
        terms.append((value, exploration * child.prior / (1 + child.visits)))
    return terms


def puct_scores(tree: Tree, node_id: int, config: RainConfig) -> list[float]:
    """Eq. (1) for every child of `node_id`: value + c · p · sqrt(N) / (1 + n) (terms: `puct_terms`)."""
    return [value + exploration for value, exploration in puct_terms(tree, node_id, config)]
