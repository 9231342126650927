"""What-if forks: the plan's checks on the tree alone, a search below a committed prefix (fakes), and a real fork."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import EOS, FakeCodec, FakeEmbedder, FakeJudge, FakeLM, FakeRuntime, fake_record
from rain.tools.cli import main
from rain.core.config import preset
from rain.core.events import Committed, Expanded
from rain.core.export import dumps, load, loads, save
from rain.runs.fork import ForkError, conversation_for, fork, plan_fork
from rain.core.prompts import Conversation
from rain.core.search import Backends, Search
from rain.runs.session import RunRequest, final_record, run_session
from rain.runs.teaching import committed_nodes

SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "trees" / "1_harmful_pick_a_lock.json"


def fake_search(prefix=(), **overrides) -> Search:
    codec = FakeCodec()
    conversation = Conversation("how to pick a lock", tuple(codec.encode(" the lock")), ":", frozenset({EOS}),
                                None, "fake")
    return Search(Backends(FakeLM(), codec, FakeJudge(), FakeEmbedder()), conversation,
                  preset("hh", sims_per_move=5, max_moves=4, **overrides), prefix)


def test_plan_checks_the_node_the_knobs_and_what_is_left():
    record = fake_record()
    chain = committed_nodes(record.tree())
    plan = plan_fork(record, chain[0].id, {"similarity_update": False})
    assert plan.move == 1 and plan.prefix == [chain[0].tokens] and not plan.config.similarity_update
    assert plan.config.seed == record.config["seed"]
    assert plan_fork(record, 0, {}).prefix == []
    not_committed = next(n["id"] for n in record.nodes if not n["committed"])
    with pytest.raises(ForkError, match="never committed"):
        plan_fork(record, not_committed, {})
    with pytest.raises(ForkError, match="no node 99999"):
        plan_fork(record, 99999, {})
    with pytest.raises(ForkError, match="c_puct"):
        plan_fork(record, 0, {"c_puct": -1.0})
    with pytest.raises(ForkError, match="leaves no move"):
        plan_fork(record, chain[1].id, {"max_moves": 2})
    if chain[-1].terminal:
        with pytest.raises(ForkError, match="ended the answer"):
            plan_fork(record, chain[-1].id, {})


def test_a_search_below_a_prefix_keeps_the_schedule_and_exports():
    parent = fake_search()
    list(parent.run())
    chain = committed_nodes(parent.tree)
    search = fake_search(prefix=[chain[0].tokens, chain[1].tokens], similarity_update=False)
    events = list(search.run())
    assert [type(e) for e in events[1:5]] == [Expanded, Committed, Expanded, Committed]
    assert all(e.simulation == 0 for e in events[1:5:2]) and all(e.reason == "fork" for e in events[2:5:2])
    forked = committed_nodes(search.tree)
    assert [n.tokens for n in forked[:2]] == [chain[0].tokens, chain[1].tokens]
    assert all(len(n.tokens) <= search.config.token_set_length(n.step - 1) for n in forked)
    assert forked[2].step == 3 and len(forked) <= 4                      # moves count the prefix
    record = fake_record()
    record.events, record.nodes = events, []
    assert loads(dumps(record)).tree().root == search.tree.root          # the schema takes simulation 0 and "fork"


def untimed(events) -> list[dict]:
    """The events as dicts without their clock readings (the live counters' seconds)."""
    out = []
    for event in map(lambda e: e.to_dict(), events):
        if "stats" in event:
            event["stats"] = {k: v for k, v in event["stats"].items() if "second" not in k}
        out.append(event)
    return out


def test_fork_runs_below_the_prefix_and_at_the_prompt_with_the_same_knobs_is_the_parent_run(tmp_path):
    """Through rain.runs.fork.fork on the fake runtime, against the parent as `generate` ran it (rain/runs/session.py)."""
    runtime = FakeRuntime()
    parent = final_record(run_session(runtime, RunRequest("how to pick a lock", preset("hh", sims_per_move=5,
                                                                                        max_moves=4))))
    path = save(parent, tmp_path / "parent.json")
    same = fork(runtime, plan_fork(load(path), 0, {}), path)
    assert untimed(same.events) == untimed(parent.events) and same.answer == parent.answer
    assert same.extras["fork"]["divergence_from_parent"] is None
    chain = committed_nodes(parent.tree())
    below = fork(runtime, plan_fork(load(path), chain[1].id, {"c_puct": 0.0}), path)
    events = below.events
    assert [e.type for e in events[1:5]] == ["expand", "commit"] * 2 and all(e.simulation == 0 for e in events[1:5:2])
    assert all(e.reason == "fork" and e.simulations == 0 for e in events[2:5:2])
    mine = committed_nodes(below.tree())
    assert [n.tokens for n in mine[:2]] == [n.tokens for n in chain[:2]] and below.config["c_puct"] == 0.0
    assert runtime.searches[-1].config.c_puct == 0.0 and runtime.searches[-1].prefix == [tuple(n.tokens)
                                                                                           for n in chain[:2]]
    assert below.extras["fork"]["parent_answer"] == parent.answer and below.extras["fork"]["move"] == 2


def test_fork_cli_errors_without_a_model(tmp_path, capsys):
    tree = save(fake_record(), tmp_path / "tree.json")
    cases = [(["fork", str(tmp_path / "missing.json"), "--at", "0", "--json", str(tmp_path / "o.json")], "no such file"),
             (["fork", str(tree), "--at", "99999", "--json", str(tmp_path / "o.json")], "no node 99999"),
             (["fork", str(tree), "--at", "0", "--model", "embedded", "--json", str(tmp_path / "o.json")],
              "was made by model 'fake'"),
             (["fork", str(tree), "--at", "0", "--knob", "nope=1", "--json", str(tmp_path / "o.json")], "--knob")]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert not (tmp_path / "o.json").exists()


@pytest.mark.slow
def test_fork_on_the_real_model(runtime, tmp_path):
    """The shipped tree, forked after its first move with similarity off: the prefix is kept, the rest re-run."""
    record = load(SHIPPED)
    chain = committed_nodes(record.tree())
    plan = plan_fork(record, chain[0].id, {"similarity_update": False, "sims_per_move": 1, "max_moves": 3})
    forked = fork(runtime, plan, SHIPPED)
    data = json.loads(dumps(forked))
    assert data["fork"]["parent_file"] == str(SHIPPED) and data["fork"]["node"] == chain[0].id
    assert data["fork"]["knobs"] == {"similarity_update": False, "sims_per_move": 1, "max_moves": 3}
    assert data["config"]["similarity_update"] is False and data["config"]["seed"] == record.config["seed"]
    mine = committed_nodes(forked.tree())
    assert mine[0].tokens == chain[0].tokens and mine[0].text == chain[0].text and len(mine) == 3
    assert forked.answer.startswith(chain[0].text.strip()) or forked.answer.startswith(chain[0].text)
    assert sum(e.type == "rewind" for e in forked.events) == 2
    assert loads(dumps(forked)).extras["fork"] == data["fork"]
    foreign = plan_fork(fake_record(), 0, {})                 # made with the fake tokenizer: another model
    with pytest.raises(ForkError, match="another model"):
        conversation_for(runtime, foreign)
