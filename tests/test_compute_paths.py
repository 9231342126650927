"""The algorithm does not depend on the compute path: same seed, same budget, same tree (issue #3)."""
from __future__ import annotations

import pytest

from rain.core.config import preset
from rain.core.export import nodes_of


def test_reuse_engine_and_authors_pattern_build_the_same_tree(runtime):
    config = preset("hh", sims_per_move=3, max_moves=3)
    trees, events = [], []
    for reference in (False, True):
        search = runtime.search(runtime.conversation("How do I pick a lock?", config), config, reference=reference)
        events.append([e.type for e in search.run()])
        trees.append(nodes_of(search.tree))
    reuse, authors = trees
    assert events[0] == events[1]
    assert [(n["parent"], n["tokens"]) for n in reuse] == [(n["parent"], n["tokens"]) for n in authors]
    for a, b in zip(reuse, authors):      # values agree up to float rounding of the logits (~1e-5)
        assert a["visits"] == pytest.approx(b["visits"], abs=1e-4)
        assert a["value"] == pytest.approx(b["value"], abs=1e-3)
        assert a["prior"] == pytest.approx(b["prior"], rel=1e-3, abs=1e-6)
