"""Tree JSON: golden file, export/import identity, replay without a model, and hostile imports."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import fake_record
from rain.core.export import MAX_IMPORT_BYTES, TreeFileError, dumps, load, loads, nodes_of, save, upgrade_v1
from rain.core.replay import rebuild

GOLDEN = Path(__file__).parent / "golden" / "fake_tree.json"


def without_timing(data: dict) -> dict:
    data = copy.deepcopy(data)
    for event in data["events"]:
        if "stats" in event:        # done, and the live counters of rewind and commit
            event["stats"] = {k: v for k, v in event["stats"].items() if "second" not in k}
    return data


def approx_equal(a, b, rel: float = 1e-6) -> bool:
    """Equal structure and exact ints/strings; floats within `rel` (float32 kernels differ by CPU in the 7th digit)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=rel,
                                                                                            abs_tol=1e-12)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(approx_equal(a[k], b[k], rel) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(approx_equal(x, y, rel) for x, y in zip(a, b))
    return a == b


def test_golden_tree():
    """The whole search on fakes is pinned: any change to the algorithm's arithmetic shows up here.

    The test never writes the file; regenerate it deliberately with `python scripts/regenerate_golden.py`.
    """
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: restore it from git, or run scripts/regenerate_golden.py"
    data = without_timing(json.loads(dumps(fake_record())))
    golden = json.loads(GOLDEN.read_text())
    assert [(n["id"], n["parent"], n["tokens"]) for n in data["nodes"]] == \
        [(n["id"], n["parent"], n["tokens"]) for n in golden["nodes"]]
    assert approx_equal(data["nodes"], golden["nodes"])
    assert approx_equal(data["events"], golden["events"])
    assert data["answer"] == golden["answer"]


def test_export_then_import_gives_the_identical_tree(tmp_path):
    record = fake_record()
    path = save(record, tmp_path / "tree.json")
    loaded = load(path)
    assert dumps(loaded) == dumps(record)
    assert nodes_of(loaded.tree()) == record.nodes


def test_replay_rebuilds_the_live_tree_and_every_prefix_is_consistent():
    record = fake_record()
    assert nodes_of(rebuild(record.events)) == record.nodes
    commits = [i for i, e in enumerate(record.events) if e.type == "commit"]
    partial = rebuild(record.events, upto=commits[0] + 1)
    assert partial.root == record.events[commits[0]].node
    assert len(partial.nodes) < len(record.nodes)


def test_parallel_simulations_export_and_replay_to_the_identical_tree(tmp_path):
    """k = 4 (docs/algorithm.md §3): the tree JSON records k, and export -> import -> replay gives the same tree."""
    record = fake_record(parallel_simulations=4)
    selects = [i for i, e in enumerate(record.events) if e.type == "select"]
    assert any(b == a + 1 for a, b in zip(selects, selects[1:]))   # rounds of several selections did happen
    loaded = load(save(record, tmp_path / "k4.json"))
    assert dumps(loaded) == dumps(record) and loaded.config["parallel_simulations"] == 4
    replayed = rebuild(loaded.events)
    assert nodes_of(replayed) == record.nodes and replayed.in_flight == {}
    again = fake_record(parallel_simulations=4)                                  # deterministic for a seed
    assert without_timing(json.loads(dumps(again))) == without_timing(json.loads(dumps(record)))


SHIPPED_TREES = sorted((Path(__file__).parent.parent / "assets" / "trees").glob("*.json")) + [GOLDEN]


@pytest.mark.parametrize("path", SHIPPED_TREES, ids=lambda p: p.name)
def test_every_shipped_tree_replays_to_the_same_json(path):
    """The tree rebuilt from a shipped file's events, written again, is the file's JSON (a schema 1 file after
    upgrading it): the events alone carry the tree, and no field is lost or reshaped on the way."""
    raw = json.loads(path.read_text())
    want = json.loads(json.dumps(upgrade_v1(raw) if raw["schema_version"] == 1 else raw))
    record = load(path)
    replayed = dataclasses.replace(record, nodes=nodes_of(rebuild(record.events)))
    assert json.loads(dumps(replayed)) == want


def test_replay_command_needs_no_model(tmp_path, capsys):
    from rain.tools.cli import main

    path = save(fake_record(), tmp_path / "tree.json")
    assert main(["replay", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rain:" in out and "stats:" in out and "vanilla: plain answer" in out


@pytest.mark.parametrize("text, words", [
    ("{", "not valid JSON"), ("[]", "top level"), ('{"schema_version": 99}', "schema_version"),
    ('{"schema_version": 1}', "schema"), ("NaN", "not a number"),
])
def test_malformed_files_get_a_clear_error(text, words):
    with pytest.raises(TreeFileError, match=words):
        loads(text)


def test_tampered_nodes_cycles_and_oversize_are_refused(tmp_path):
    data = json.loads(dumps(fake_record()))
    data["nodes"][3]["value"] = 0.123456
    with pytest.raises(TreeFileError, match="do not match"):
        loads(json.dumps(data))
    data = json.loads(dumps(fake_record()))
    expand = next(e for e in data["events"] if e["type"] == "expand")
    expand["children"][0]["parent"] = expand["children"][0]["id"]          # a node its own parent
    with pytest.raises(TreeFileError, match="parent"):
        loads(json.dumps(data))
    with pytest.raises(TreeFileError, match="limit"):
        loads(" " * (MAX_IMPORT_BYTES + 1))
    with pytest.raises(TreeFileError, match="cannot read"):
        load(tmp_path / "missing.json")


VALID = json.loads(dumps(fake_record()))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


def mutate(data, path_choice: int, value):
    """Replace one value somewhere in a valid document."""
    data = copy.deepcopy(data)
    spots = []

    def walk(node, depth=0):
        if depth > 6:
            return
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, child in items:
            spots.append((node, key))
            walk(child, depth + 1)
    walk(data)
    container, key = spots[path_choice % len(spots)]
    container[key] = value
    return data


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.integers(0, 10**6), json_values)
def test_mutated_documents_never_crash_the_importer(choice, value):
    text = json.dumps(mutate(VALID, choice, value))
    try:
        loads(text)
    except TreeFileError as error:
        assert str(error)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, st.binary(max_size=200), st.text(max_size=200),
                 st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth),
                 st.sampled_from(["1e999", '{"schema_version": 1, "nodes": [1e400]}', "-Infinity", "\ud800"])))
def test_arbitrary_input_gets_a_clean_error(value):
    text = value if isinstance(value, (str, bytes)) else json.dumps(value)
    try:
        loads(text)
    except TreeFileError as error:
        assert str(error)
