"""llm-reasoners' TreeLog: the format as its TreeLogEncoder writes it, a lossless round trip, foreign logs, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rain.tools.cli import main
from rain.core.events import Selected
from rain.core.export import dumps, load, loads
from rain.runs.treelog import TreeLogError, from_treelog, loads_treelog, to_treelog
from fakes import fake_record

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "trees" / "1_harmful_pick_a_lock.json"


def snapshot_invariants(snapshot: dict) -> None:
    """What llm-reasoners' TreeSnapshot asserts (one parent per non-root node, connected), and its JSON shape."""
    nodes, edges = snapshot["nodes"], snapshot["edges"]
    assert all(key == str(node["id"]) and set(node) == {"id", "data", "selected_edge", "convert_images"}
               for key, node in nodes.items())
    assert all(key == str(edge["id"]) and set(edge) == {"id", "source", "target", "data", "convert_images"}
               for key, edge in edges.items())
    assert len({e["target"] for e in edges.values()}) == len(edges) == len(nodes) - 1
    for node in nodes.values():
        out = [e for e in edges.values() if e["source"] == node["id"]]
        assert (node["selected_edge"] is None) == (not out)
        if out:
            assert node["selected_edge"] in {e["id"] for e in out}


@pytest.mark.parametrize("source", ["fake", "shipped"])
def test_round_trip_keeps_every_node_visit_value_and_the_committed_path(source):
    record = fake_record() if source == "fake" else load(SHIPPED)
    log = json.loads(json.dumps(to_treelog(record)))            # through JSON, as a file would be
    simulations = [e for e in record.events if isinstance(e, Selected)]
    assert len(log["logs"]) == len(simulations)
    for snapshot, select in zip(log["logs"], simulations):
        snapshot_invariants(snapshot)
        trace = select.path
        for parent, child in zip(trace, trace[1:]):              # the simulation's trace is the selected edges
            edge = snapshot["edges"][str(snapshot["nodes"][str(parent)]["selected_edge"])]
            assert edge["target"] == child
    last = log["logs"][-1]
    assert {e["target"]: e["data"]["Q"] for e in last["edges"].values()} == \
        {n["id"]: n["value"] for n in record.nodes if n["parent"] != -1}
    back = loads(dumps(from_treelog(log)))                      # and it imports like any tree file
    assert back.nodes == record.nodes
    assert [n["id"] for n in back.nodes if n["committed"]] == [n["id"] for n in record.nodes if n["committed"]]
    assert back.answer == record.answer and back.prompt == record.prompt and back.config == record.config
    assert sum(e.type == "rewind" for e in back.events) == len(simulations)


def test_a_foreign_mcts_log_imports_with_its_q_and_tree():
    """A log as llm-reasoners' from_mcts_results writes it: state in node data, Q and reward on the edges."""
    def node(i, edge=None):
        return {"id": i, "data": {"state": f"s{i}"}, "selected_edge": edge, "convert_images": True}

    def edge(i, source, target, q):
        return {"id": i, "source": source, "target": target, "data": {"Q": q, "reward": q}, "convert_images": True}

    log = {"logs": [
        {"nodes": {"10": node(10, 0), "11": node(11)}, "edges": {"0": edge(0, 10, 11, 0.5)}},
        {"nodes": {"10": node(10, 1), "11": node(11), "12": node(12)},
         "edges": {"0": edge(0, 10, 11, 0.4), "1": edge(1, 10, 12, -0.2)}},
    ]}
    record = loads(dumps(from_treelog(log)))
    assert [(n["id"], n["parent"], n["value"]) for n in record.nodes] == [(0, -1, 0.0), (1, 0, 0.4), (2, 0, -0.2)]
    assert record.model == {"name": "treelog import"} and record.answer == ""


@pytest.mark.parametrize("text, words", [
    ("{", "not valid JSON"),
    ("[]", "non-empty 'logs' list"),
    ('{"logs": []}', "non-empty 'logs' list"),
    ('{"logs": [{"nodes": []}]}', "'nodes' and 'edges' objects"),
    ('{"logs": [{"nodes": {"0": {"id": 1}}, "edges": {}}]}', "whose integer 'id' is its key"),
    ('{"logs": [{"nodes": {"0": {"id": 0}, "1": {"id": 1}}, "edges": {}}]}', "2 nodes have no parent"),
    ('{"logs": [{"nodes": {"0": {"id": 0}, "1": {"id": 1}}, "edges": {"0": {"id": 0, "source": 0, "target": 1, '
     '"data": {"Q": 7}}}}]}', "outside [-1.0, 1.0]"),
    ('{"logs": [{"nodes": {"0": {"id": 0}, "1": {"id": 1}, "2": {"id": 2}}, "edges": {"0": {"id": 0, "source": 1, '
     '"target": 2}, "1": {"id": 1, "source": 2, "target": 1}}}]}', "cannot be reached from the root"),
])
def test_malformed_logs_are_named(text, words):
    with pytest.raises(TreeLogError) as caught:
        loads_treelog(text)
    assert words in str(caught.value)


def test_convert_from_the_shell_and_its_one_line_errors(tmp_path, capsys):
    tree = tmp_path / "tree.json"
    tree.write_text(dumps(fake_record()))
    assert main(["convert", str(tree), "--to", "treelog", str(tmp_path / "log.json")]) == 0
    assert main(["convert", str(tmp_path / "log.json"), "--from", "treelog", str(tmp_path / "back.json")]) == 0
    assert load(tmp_path / "back.json").nodes == fake_record().nodes
    capsys.readouterr()
    (tmp_path / "bad.json").write_text('{"logs": "no"}')
    for argv in (["convert", str(tmp_path / "missing.json"), "--to", "treelog", str(tmp_path / "x.json")],
                 ["convert", str(tmp_path / "bad.json"), "--from", "treelog", str(tmp_path / "x.json")],
                 ["convert", str(tmp_path / "log.json"), "--to", "treelog", str(tmp_path / "x.json")],
                 ["convert", str(tree), str(tmp_path / "x.json")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()
