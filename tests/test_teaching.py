"""Teaching views on fakes: divergence, the why-table against the live Eq. (1), narration, live stats."""
from __future__ import annotations

import json

import pytest

import rain.core.search as search_module
from fakes import CONFIG, fake_record, fake_search as search_of
from rain.core.config import preset
from rain.core.events import BackedUp, Committed, Evaluated, Rewound, Selected
from rain.core.export import dumps, loads
from rain.core.replay import rebuild
from rain.core.search import Search
from rain.runs.teaching import (Divergence, TeachingError, committed_nodes, divergence_field, find_divergence,
                           format_why, latest_selection, narrate, why_table)


def fake_search(**overrides) -> Search:
    return search_of(CONFIG.replace(**overrides))


# --- divergence --------------------------------------------------------------------------------------------

def test_divergence_is_null_for_identical_answers_and_names_the_first_differing_token():
    tree = fake_record().tree()
    moves = committed_nodes(tree)
    tokens = [t for node in moves for t in node.tokens]
    assert len(moves) >= 3 and len(tokens) > 3
    assert find_divergence(tree, tokens) is None
    assert divergence_field(tree, tokens) == {"divergence": None}
    assert divergence_field(tree, None) == {}

    index = len(moves[0].tokens) + 1 if len(moves[1].tokens) > 1 else len(moves[0].tokens)
    changed = list(tokens)
    changed[index] = (changed[index] + 1) % 20
    found = find_divergence(tree, changed)
    owner = next(m for m, node in enumerate(moves, 1)
                 if sum(len(n.tokens) for n in moves[:m - 1]) <= index < sum(len(n.tokens) for n in moves[:m]))
    assert found == Divergence(index, owner, moves[owner - 1].id, tokens[index], changed[index])


def test_divergence_when_one_answer_is_a_prefix_of_the_other():
    tree = fake_record().tree()
    tokens = [t for node in committed_nodes(tree) for t in node.tokens]
    longer = find_divergence(tree, tokens + [3])                  # vanilla went on after RAIN stopped
    assert longer == Divergence(len(tokens), None, None, None, 3)
    shorter = find_divergence(tree, tokens[:-1])                  # RAIN's last token set went past vanilla's end
    moves = committed_nodes(tree)
    assert shorter == Divergence(len(tokens) - 1, len(moves), moves[-1].id, tokens[-1], None)


def test_divergence_survives_export_and_import():
    record = fake_record()
    tree = record.tree()
    tokens = [t for node in committed_nodes(tree) for t in node.tokens]
    record.extras.update(divergence_field(tree, [tokens[0] + 1] + tokens[1:]))
    data = json.loads(dumps(record))
    assert data["divergence"] == {"token": 0, "move": 1, "node": committed_nodes(tree)[0].id,
                                  "rain_token": tokens[0], "vanilla_token": tokens[0] + 1}
    assert loads(dumps(record)).extras == record.extras
    assert "divergence" not in json.loads(dumps(fake_record()))      # absent, not null, when vanilla is unknown


# --- why this child ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [{}, {"puct_visits": "siblings", "puct_value": "raw"}, {"c_puct": 0.0},
                                       {"similarity_update": False, "dynamic_addition": False},
                                       {"parallel_simulations": 4}])
def test_why_table_from_the_events_equals_puct_scores_on_the_live_tree(monkeypatch, overrides):
    """Every Eq. (1) evaluation of the live search, recomputed from the recorded events alone."""
    live: dict[int, dict[int, list[float]]] = {}     # simulation -> node -> Eq. (1) scores of its descent
    search = fake_search(**overrides)
    original, descend = search_module.puct_scores, search._descend

    def recording(tree, node_id, config):
        scores = original(tree, node_id, config)
        live[search.simulations][node_id] = scores
        return scores

    def descending(simulation):                        # a descent that meets a leaf in flight is dropped and
        live[simulation] = {}                          # its number taken by the next round's first descent
        return (yield from descend(simulation))

    search._descend = descending

    monkeypatch.setattr(search_module, "puct_scores", recording)
    events = list(search.run())
    monkeypatch.setattr(search_module, "puct_scores", original)
    record = loads(dumps(fake_record(**overrides)))                # the same run, through export and import
    assert [e.to_dict() for e in record.events if e.type == "select"] == \
        [e.to_dict() for e in events if e.type == "select"]
    assert len(live) > 10
    selects = {e.simulation: e for e in events if isinstance(e, Selected)}
    for simulation, node_id, scores in [(sim, node, scores) for sim, by_node in live.items()
                                         for node, scores in by_node.items()]:
        table = why_table(record.events, search.config, simulation, node_id)
        assert [row.score for row in table.rows] == scores                      # exactly, not approximately
        assert all(row.score == row.value_term + row.exploration_term for row in table.rows)
        chosen = [row for row in table.rows if row.selected]
        path = selects[simulation].path
        assert len(chosen) == 1 and chosen[0].id == path[path.index(node_id) + 1]
        assert chosen[0].score == table.recorded_score == max(scores)
        if overrides.get("c_puct") == 0.0:
            assert all(row.exploration_term == 0 for row in table.rows)


def test_why_table_shows_the_virtual_loss_while_it_applies():
    """k = 4: a selection made while others of its round await their back-up reads n + m and (q·n - m)/(n + m)."""
    events = list(fake_search(parallel_simulations=4).run())
    index = next(i for i, e in enumerate(events) if isinstance(e, Selected) and isinstance(events[i - 1], Selected))
    simulation = events[index].simulation
    before = rebuild([e for e in events[:index] if not isinstance(e, Selected)])    # no path in flight
    flying = [e.path for e in events[:index] if isinstance(e, Selected)
              and not any(isinstance(b, BackedUp) and b.simulation == e.simulation for b in events[:index])]
    assert flying
    table = why_table(events, preset("hh"), simulation, 0)
    assert table.in_flight == len(flying) and "virtual loss" in table.formula
    for row in table.rows:
        node, m = before[row.id], sum(row.id in path for path in flying)
        assert row.in_flight == m
        assert row.visits == node.visits + m
        assert row.value == pytest.approx((node.value * node.visits - m) / (node.visits + m) if m else node.value)
    assert any(row.in_flight for row in table.rows) and "(in flight: " in format_why(table)
    assert "virtual loss" in narrate(events)[index]
    assert "virtual loss" not in why_table(events, preset("hh"), 2, 0).formula     # simulation 2: nothing in flight


def test_why_table_terms_by_hand_and_the_formula_names_the_variant():
    search = fake_search()
    events = list(search.run())
    simulation, node_id = 3, 0
    table = why_table(events, search.config, simulation, node_id)
    tree = __import__("rain.runs.teaching", fromlist=["tree_at_selection"]).tree_at_selection(events, simulation)[0]
    parent = tree[node_id]
    for row in table.rows:
        child = tree[row.id]
        value = 0.0 if child.visits == 0 else (child.value + 1) / (2 + 1e-5)
        assert row.value_term == pytest.approx(value, abs=1e-12)
        assert row.exploration_term == pytest.approx(2.0 * child.prior * parent.visits ** 0.5 / (1 + child.visits))
    assert "[(q − min)/(max − min + 1e-05), or 0 if n = 0]" in table.formula and "N = the node's n" in table.formula
    paper = why_table(events, preset("hh", puct_value="raw", puct_visits="siblings"), simulation, node_id)
    assert paper.formula.startswith("score = q + c·p·√N/(1 + n)") and "Σ of the children's n" in paper.formula
    assert "> " in format_why(table) and latest_selection(events)[0] == search.simulations


def test_why_table_refuses_questions_the_run_cannot_answer():
    search = fake_search()
    events = list(search.run())
    with pytest.raises(TeachingError, match="no simulation 999"):
        why_table(events, search.config, 999, 0)
    with pytest.raises(TeachingError, match="did not exist yet"):
        why_table(events, search.config, 1, 5)
    leaf = next(e for e in events if isinstance(e, Selected) and e.simulation == 2).path[-1]
    with pytest.raises(TeachingError, match="had no children"):
        why_table(events, search.config, 2, leaf)


# --- narration ------------------------------------------------------------------------------------------------

def test_one_sentence_per_event_and_the_rewind_says_what_the_judge_did_to_the_branch():
    search = fake_search()
    events = list(search.run())
    sentences = narrate(events, search.config)
    assert len(sentences) == len(events)
    assert all(s and s.endswith(".") and "\n" not in s for s in sentences)
    kinds = {e.type for e in events}
    assert {"select", "rollout", "evaluate", "expand", "backup", "rewind", "commit"} <= kinds
    tree = fake_record().tree()
    for index, event in enumerate(events):
        if isinstance(event, Rewound) and event.simulation > 1:
            score = next(e.score for e in reversed(events[:index]) if isinstance(e, Evaluated))
            path = next(e.path for e in reversed(events[:index]) if isinstance(e, Selected))
            assert sentences[index].startswith("Rewound to the root: the judge scored the clause")
            assert f"at {score:+.2f}" in sentences[index]
            if len(path) > 1:
                branch = path[1]
                value = next(s.value for s in next(e for e in reversed(events[:index]) if e.type == "backup").path
                             if s.id == branch)
                assert f"{value:+.2f}." in sentences[index] and repr(tree[branch].text.strip()) in sentences[index]
        if isinstance(event, Committed):
            assert sentences[index].startswith(f"Committed move {event.move}:")


# --- live stats ---------------------------------------------------------------------------------------------

def test_rewind_and_commit_events_carry_the_counters_so_far():
    events = list(fake_search().run())
    live = [e for e in events if isinstance(e, (Rewound, Committed))]
    assert live and all(e.stats is not None for e in live)
    calls = [e.stats["forward_calls"] for e in live]
    assert calls == sorted(calls) and calls[-1] <= events[-1].stats["forward_calls"] and calls[0] > 0
    for event in live:
        assert set(event.stats) == {"simulations", "forward_calls", "forwarded_tokens", "seconds",
                                    "simulations_per_second"}
        if isinstance(event, Rewound):
            assert event.stats["simulations"] == event.simulation


def test_a_tree_recorded_before_live_stats_replays_byte_identically():
    data = json.loads(dumps(fake_record()))
    for event in data["events"]:
        if event["type"] in ("rewind", "commit"):
            del event["stats"]
    old = json.dumps(data, ensure_ascii=False, allow_nan=False)
    assert dumps(loads(old)) == old


# --- the explain command (no model) ----------------------------------------------------------------------------

def test_explain_prints_one_sentence_per_event_and_the_why_table(tmp_path, capsys):
    from rain.tools.cli import main
    from rain.core.export import save

    record = fake_record()
    path = save(record, tmp_path / "tree.json")
    assert main(["explain", str(path), "--from", "2", "--to", "9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == [str(i) for i in range(2, 10)]
    assert lines[0].split()[1] == "select" and lines[-1].startswith("divergence: unknown")
    simulation, node = latest_selection(record.events)
    assert main(["explain", str(path), "--why", str(simulation)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"simulation {simulation}, node {node} ") and out.count("\n> ") == 1
    for argv, words in ((["--why", "x:y"], "--why takes"), (["--why", "999"], "no descent"),
                        (["--why", "1:99999"], "did not exist yet")):
        assert main(["explain", str(path), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_a_live_fold_reads_the_why_table_from_its_own_tree_as_a_replay_would():
    """why_table_at on a tree folded up to (not including) a select event gives the replayed why_table, row for row
    (the page's live view uses it instead of replaying the run on every tick)."""
    from rain.core.config import RainConfig
    from rain.core.export import load
    from rain.core.replay import apply_event
    from rain.runs.teaching import why_table, why_table_at
    from rain.core.tree import Tree

    record = load("assets/trees/1_harmful_pick_a_lock.json")
    config = RainConfig.from_dict(record.config)
    tree = Tree.new()
    checked = 0
    for event in record.events:
        if isinstance(event, Selected) and len(event.path) > 1:     # the tree as the descent read it: before
            live = why_table_at(tree, event, config, event.path[-2])   # the selection is in flight itself
            assert live == why_table(record.events, config, event.simulation, event.path[-2])
            checked += 1
        apply_event(tree, event)
    assert checked >= 20


def test_the_narration_says_the_question_for_the_prompt_node_and_whole_counts_as_integers():
    from rain.core.export import load
    from rain.runs.teaching import count, narrate

    record = load("assets/trees/1_harmful_pick_a_lock.json")
    sentences = narrate(record.events)
    assert not any("trained by Hugging Face" in s for s in sentences)
    assert count(8.0) == "8" and count(8.375) == "8.38" and count(0) == "0"
    assert "(n = 1)" in sentences[11] and "n = 1.00" not in " ".join(sentences)


def test_the_judge_check_accuracy_is_known_only_for_what_was_measured():
    from rain.runs.teaching import judge_check_accuracy

    embedded = {"name": "embedded", "dtype": "float32", "judge_dtype": "float32"}
    assert judge_check_accuracy(embedded, {"criterion": "harm", "judge_format": "yesno_logit"}) == 0.78
    assert judge_check_accuracy(embedded, {"criterion": "sentiment", "judge_format": "ab_soft"}) == 0.733
    assert judge_check_accuracy({**embedded, "judge_dtype": "bfloat16"}, {"criterion": "harm"}) == 0.58
    assert judge_check_accuracy({"name": "other/model"}, {"criterion": "harm"}) is None
    assert judge_check_accuracy(embedded, {"criterion": "harm", "principle": "Is it polite?"}) is None
