"""The algorithm's formulas on hand-computed cases, and the search's behaviour on fakes (no model, milliseconds)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fakes import EOS, FakeJudge, FakeLM, fake_conversation, fake_run, fake_search
from rain.core.config import ConfigError, RainConfig, preset
from rain.core.decoding import TopTokensRequest, drive, path_candidates, single_token_candidates, top_k_probs
from rain.core.lm import ComputeStats
from rain.core.events import BackedUp, Committed, NodeStats, NodesAdded, Selected
from rain.core.replay import apply_event
from rain.core.puct import puct_scores, selection_stats
from rain.core.search import (addition_triggered, backup, child_priors, noised, reroot_priors,
                              select_child, stop_rule_met)
from rain.core.tree import Tree


def small_tree() -> Tree:
    """root(0, n=4) -> A(1: p .5, n 2, q .5), B(2: p .3, n 1, q -1), C(3: p .2, unvisited)."""
    tree = Tree.new("prompt")
    tree[0].visits, tree[0].real_visits = 4, 4
    for tokens, prior, visits, value in [((5,), .5, 2, .5), ((6,), .3, 1, -1.0), ((7,), .2, 0, 0.0)]:
        node = tree.add(0, tokens, "x", prior)
        node.visits, node.real_visits, node.value = visits, int(visits), value
    return tree


# --- Eq. (1) ---------------------------------------------------------------------------------------------

def test_puct_code_variant_normalises_q_and_scores_unvisited_as_zero():
    scores = puct_scores(small_tree(), 0, RainConfig())
    # A: (0.5+1)/(2+1e-5) + 2*.5*sqrt(4)/3 ; B: 0/(2+1e-5) + 2*.3*2/2 ; C: 0 + 2*.2*2/1
    assert scores == pytest.approx([1.5 / 2.00001 + 2 / 3, 0.6, 0.8], abs=1e-12)
    child, score = select_child(small_tree(), 0, RainConfig())
    assert child.id == 1 and score == pytest.approx(1.5 / 2.00001 + 2 / 3)


def test_puct_paper_variant_uses_raw_value_and_sibling_sum():
    config = RainConfig(puct_visits="siblings", puct_value="raw")
    scores = puct_scores(small_tree(), 0, config)
    root3 = math.sqrt(3)                     # siblings' n: 2 + 1 + 0
    assert scores == pytest.approx([.5 + 2 * .5 * root3 / 3, -1 + 2 * .3 * root3 / 2, 2 * .2 * root3], abs=1e-12)


def test_c_zero_ablation_picks_the_best_value_only():
    scores = puct_scores(small_tree(), 0, RainConfig(c_puct=0))
    assert scores == pytest.approx([1.5 / 2.00001, 0.0, 0.0])


def test_selection_ties_go_to_the_first_child():
    tree = Tree.new()
    tree[0].visits = 1
    for t in (3, 4):
        tree.add(0, (t,), "", 0.5)
    assert select_child(tree, 0, RainConfig())[0].id == 1


# --- priors, root noise, schedule --------------------------------------------------------------------------

def test_root_noise_mixes_a_quarter_uniform():
    assert noised([.5, .3, .2], .25) == pytest.approx([.75 * .5 + .25 / 3, .75 * .3 + .25 / 3, .75 * .2 + .25 / 3])
    assert child_priors([2.0, 1.0, 1.0], at_root=False, config=RainConfig()) == pytest.approx([.5, .25, .25])
    assert child_priors([2.0, 1.0, 1.0], at_root=True, config=RainConfig()) == pytest.approx(
        [.75 * .5 + .25 / 3, .75 * .25 + .25 / 3, .75 * .25 + .25 / 3])


def test_token_set_schedule_is_1_2_4_then_10():
    config = RainConfig()
    assert [config.token_set_length(step) for step in range(6)] == [1, 2, 4, 10, 10, 10]


def test_presets_follow_the_authors_variants():
    assert preset("hh").min_visits == 6 and preset("hh").sample_attempts(10) == 9
    assert preset("adv").min_visits == 5 and preset("adv").sample_attempts(10) == 19
    assert preset("adv").candidate_temperature == 2.0
    assert preset("truth").min_visits == 16 and preset("truth").rollout_to_eos


@pytest.mark.parametrize("changes, word", [({"min_visits": 60}, "min_visits"), ({"value_threshold": 1.5}, "Vt"),
                                           ({"candidates": 0}, "candidates"), ({"c_puct": float("nan")}, "c_puct"),
                                           ({"similarity_gamma": 0}, "similarity_gamma")])
def test_contradictory_or_out_of_range_knobs_are_refused(changes, word):
    with pytest.raises(ConfigError, match=word):
        RainConfig(**changes)                        # on construction: no RainConfig is ever invalid


@pytest.mark.parametrize("changes, message", [
    ({"candidates": "10"}, "candidates must be a whole number, got '10'"),
    ({"sims_per_move": 2.5}, "sims_per_move must be a whole number or None, got 2.5"),
    ({"early_stop": 1}, "early_stop must be true or false, got 1"),
    ({"c_puct": True}, "c_puct must be a finite number, got True"),
    ({"rollout_stop_chars": None}, "rollout_stop_chars must be text, got None")])
def test_knobs_of_the_wrong_type_get_one_line_naming_them(changes, message):
    with pytest.raises(ConfigError) as error:
        RainConfig(**changes)
    assert str(error.value) == message
    with pytest.raises(ConfigError, match="unexpected keyword argument 'bogus'"):
        preset("hh", bogus=1)
    with pytest.raises(ConfigError, match="candidates"):
        RainConfig().replace(candidates=0)


# --- candidates ----------------------------------------------------------------------------------------------

class FixedLM(FakeLM):
    """Every state has the same next-token distribution: tokens 1, 2, 3 with logits log .5, log .3, log .2."""

    def _logits(self, state):
        logits = torch.full((self.vocab_size,), -1e4)
        logits[1], logits[2], logits[3] = math.log(.5), math.log(.3), math.log(.2)
        return logits


def test_single_token_candidates_are_top_k_in_token_id_order_with_ranked_logits():
    logits = torch.tensor([0.0, 3.0, 1.0, 2.0, -1.0])
    candidates, ranked = single_token_candidates(logits, 2, 1.0, keep_ranked=3)
    p = torch.softmax(torch.tensor([3.0, 2.0]), 0).tolist()
    assert [c.tokens for c in candidates] == [(1,), (3,)]                 # ascending id, not rank
    assert [c.prob for c in candidates] == pytest.approx(p)
    assert [t for t, _ in ranked] == [1, 3, 2]


def test_path_candidates_products_and_greedy_clamp():
    lm = FixedLM()
    generator = torch.Generator().manual_seed(3)
    candidates = path_candidates(lm, [4], 2, 10, 9, 15, 1.0, generator, frozenset({EOS}))
    step = {1: .5, 2: .3, 3: .2}
    greedy, sampled = candidates[0], candidates[1:]
    assert greedy.tokens == (1, 1)
    assert len({c.tokens for c in candidates}) == len(candidates) <= 10
    for c in sampled:                                                      # prior = product of step probs
        assert c.prob == pytest.approx(step[c.tokens[0]] * step[c.tokens[1]])
    probs = [c.prob for c in sampled]
    assert greedy.prob == pytest.approx(max(min(.25, sum(probs)), max(probs) + min(probs)))


def test_path_candidates_stop_a_path_at_eos():
    lm = FakeLM(eos_boost=100.0)                                          # EOS is always the top token
    candidates = path_candidates(lm, [4], 4, 10, 9, 15, 1.0, torch.Generator().manual_seed(0), frozenset({EOS}))
    assert candidates[0].tokens == (EOS,)


def test_top_k_probs_renormalises_over_the_top_k():
    probs = top_k_probs(torch.log(torch.tensor([.5, .3, .15, .05])), 2)
    assert probs.tolist() == pytest.approx([.625, .375, 0, 0])


# --- back-up and Eq. (2) ------------------------------------------------------------------------------------

def backup_tree(sibling_embedding) -> tuple[Tree, dict]:
    """root(0) -> 1 (q .5, e [1,0]) -> 3 ; root -> 2 (q -1, e given); and the embeddings (the search's cache)."""
    tree = Tree.new()
    tree[0].visits, tree[0].real_visits = 2, 2
    one = tree.add(0, (5,), "", .5)
    one.visits, one.real_visits, one.value = 1, 1, .5
    two = tree.add(0, (6,), "", .5)
    two.visits, two.real_visits, two.value = 1, 1, -1.0
    tree.add(1, (7,), "", 1.0)
    return tree, {1: np.array([1.0, 0.0]), 2: np.array(sibling_embedding)}


def back_up(tree: Tree, path, score, new_embeddings, config, embeddings):
    """backup() computes, its event writes (rain.core.replay.apply_event), as in the search."""
    before = [(n.visits, n.real_visits, n.value) for n in tree.nodes]
    stats, shares = backup(tree, path, score, new_embeddings, config, embeddings)
    assert [(n.visits, n.real_visits, n.value) for n in tree.nodes] == before      # the tree is only read
    apply_event(tree, BackedUp(1, score, stats, shares))
    return stats, shares


def test_backup_running_mean_and_similarity_update_above_threshold():
    tree, embeddings = backup_tree([0.96, 0.28])                           # cos with [1, 0] = 0.96 >= 0.95
    new = {3: np.array([0.0, 1.0]), 1: np.array([1.0, 0.0])}
    stats, shares = back_up(tree, [0, 1, 3], 1.0, new, RainConfig(), embeddings)
    assert [(s.id, s.visits, s.real_visits) for s in stats] == [(0, 3, 3), (1, 2, 2), (3, 1, 1)]
    assert tree[1].value == pytest.approx(.5 + (1 - .5) / 2) and tree[3].value == 1.0
    w = .2 * .96
    assert tree[2].visits == pytest.approx(1 + w)
    assert tree[2].value == pytest.approx((-1 * 1 + w * 1.0) / (1 + w))
    assert [(s.id, s.source) for s in shares] == [(2, 1)] and shares[0].weight == pytest.approx(w)
    # the running mean keeps fractional n: a real visit to node 2 divides by 2 + w
    before = tree[2].value
    back_up(tree, [0, 2], -1.0, {2: np.array([0.96, 0.28])}, RainConfig(similarity_update=False), embeddings)
    assert tree[2].visits == pytest.approx(2 + w)
    assert tree[2].value == pytest.approx(before + (-1 - before) / (2 + w))


def test_no_similarity_update_below_threshold_or_when_switched_off():
    for config, embedding in [(RainConfig(), [0.9, math.sqrt(1 - .81)]), (RainConfig(similarity_update=False), [1.0, 0.0])]:
        tree, embeddings = backup_tree(embedding)
        _, shares = back_up(tree, [0, 1, 3], 1.0, {3: np.array([0.0, 1.0]), 1: np.array([1.0, 0.0])}, config,
                            embeddings)
        assert shares == [] and tree[2].visits == 1 and tree[2].value == -1.0


def test_embedding_is_the_running_mean_over_real_visits():
    tree, embeddings = backup_tree([0.0, 1.0])
    back_up(tree, [0, 1], 0.0, {1: np.array([1.0, 0.0])}, RainConfig(), embeddings)   # real visits 2: [1,0],[1,0]
    back_up(tree, [0, 1], 0.0, {1: np.array([0.0, 1.0])}, RainConfig(), embeddings)   # real visits 3
    assert embeddings[1] == pytest.approx([2 / 3, 1 / 3])


# --- dynamic node addition ------------------------------------------------------------------------------------

def addition_tree(embeddings, values) -> tuple[Tree, dict]:
    tree, cache = Tree.new(), {}
    for i, (e, v) in enumerate(zip(embeddings, values)):
        node = tree.add(0, (i + 1,), "", .5)
        node.value, node.visits, node.real_visits = v, 1, 1
        cache[node.id] = np.array(e, dtype=float)
    return tree, cache


def test_dynamic_addition_trigger():
    config = RainConfig()

    def triggered(embeddings, values) -> bool:
        tree, cache = addition_tree(embeddings, values)
        return addition_triggered(tree, 0, config, cache)

    assert triggered([[1, 0], [1, 0]], [-.5, -.2])                                # alike, all poor
    assert not triggered([[1, 0], [1, 0]], [-.5, .1])                             # one good child
    assert not triggered([[1, 0], [0, 1]], [-.5, -.2])                            # var norm .707 > .03
    assert not triggered([[1, 0]], [-.5])                                         # 1 child: NaN var
    assert not triggered([[1, 0]] * 20, [-.5] * 20)                               # 20 children
    tree, cache = addition_tree([[1, 0], [1, 0]], [-.5, -.2])
    del cache[1]
    assert not addition_triggered(tree, 0, config, cache)                         # unembedded child


def test_dynamic_addition_adds_the_next_ranked_token():
    search = fake_search(RainConfig(), conversation=fake_conversation("q", (3, 4)))
    root = search.tree[0]
    search.ranked_logits[root.id] = [(9, 3.0), (2, 2.0), (7, 1.0)]
    search.tree.add(0, (9,), "", .6)
    search.tree.add(0, (2,), "", .4)
    added = search._additions(root, [3, 4])
    assert len(search.tree.nodes) == 3                                     # computed, not added: the event adds it
    apply_event(search.tree, NodesAdded(1, root.id, added))
    p7 = torch.softmax(torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64), 0).tolist()[2]
    assert [(tuple(n.tokens), n.id) for n in added] == [((7,), 3)] and search.tree[3].added
    # priors over the 3 entries in token-id order (2, 7, 9) with root noise: .75 p + .25/3
    assert added[0].prior == pytest.approx(.75 * p7 + .25 / 3)
    assert search.tree[1].prior == .6                                      # existing priors unchanged


# --- stop rule, window, commit, re-root ---------------------------------------------------------------------

def test_stop_rule_needs_fn_above_min_t_and_q_above_vt_strictly():
    config = RainConfig()
    for real, value, met in [(7, .81, True), (6, .81, False), (7, .8, False)]:
        tree = Tree.new()
        node = tree.add(0, (1,), "", 1.0)
        node.visits, node.real_visits, node.value = real, real, value
        assert stop_rule_met(tree, config) is met


def test_window_is_max_of_maxt_minus_root_visits_and_15():
    search = fake_search(RainConfig(), conversation=fake_conversation("q", (3,)))
    assert search._window() == 50
    search.tree[0].real_visits = 40
    assert search._window() == 15
    search.config = RainConfig(sims_per_move=4)
    assert search._window() == 4


def test_commit_takes_most_visits_then_higher_q_then_first():
    tree = Tree.new()
    for visits, value in [(3, .1), (3, .4), (1, .9)]:
        node = tree.add(0, (len(tree.nodes),), "", .3)
        node.visits, node.value = visits, value
    assert tree.most_visited_child(0).id == 2
    tree[2].value = .1
    assert tree.most_visited_child(0).id == 1


def test_reroot_keeps_the_subtree_and_renoises_priors():
    tree = Tree.new()
    child = tree.add(0, (1,), "", 1.0)
    tree.add(0, (2,), "", 0.0)
    for tokens, prior in [((3,), .5), ((4,), .3), ((5,), .2)]:
        tree.add(child.id, tokens, "", prior)
    priors = reroot_priors(tree, child.id, RainConfig())
    apply_event(tree, Committed(1, child.id, "", 1, "fixed", priors))
    assert tree.root == 1 and tree[1].committed
    assert [tree[i].prior for i in priors] == list(priors.values())
    assert list(priors.values()) == pytest.approx([.75 * .5 + .25 / 3, .75 * .3 + .25 / 3, .75 * .2 + .25 / 3])
    assert len(tree.nodes) == 6                                           # abandoned siblings stay for display


# --- whole runs on fakes --------------------------------------------------------------------------------------

def test_same_seed_same_tree_and_different_seed_different_tree():
    from rain.core.export import nodes_of

    config = preset("hh", max_new_tokens=24)
    first, second = fake_run(config)[0], fake_run(config)[0]
    assert nodes_of(first.tree) == nodes_of(second.tree)
    assert nodes_of(fake_run(config.replace(seed=1))[0].tree) != nodes_of(first.tree)


def test_run_emits_every_step_and_commits_with_the_schedule():
    search, events = fake_run(preset("hh", sims_per_move=3, max_moves=3))
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert kinds[1:7] == ["select", "rollout", "evaluate", "expand", "backup", "rewind"]
    commits = [e for e in events if e.type == "commit"]
    assert [c.simulations for c in commits] == [3, 3, 3] and all(c.reason == "fixed" for c in commits)
    lengths = [len(search.tree[c.node].tokens) for c in commits]
    assert lengths[0] == 1 and lengths[1] == 2 and lengths[2] <= 4
    assert events[-1].reason in ("max_moves", "eos")
    assert events[-1].stats["simulations"] == 9


def test_terminal_leaves_are_evaluated_but_never_expanded_and_eos_ends_the_run():
    search, events = fake_run(preset("hh", sims_per_move=4), lm=FakeLM(eos_boost=4.0))
    tree = search.tree
    assert events[-1].reason == "eos"
    for node in tree.nodes:
        if EOS in node.tokens:
            assert not node.children
            assert node.terminal or node.real_visits == 0                  # marked when first selected
    assert any(e.type == "backup" and e.terminal for e in events)


def test_release_is_called_on_every_commit_with_old_and_new_root_states():
    lm = FakeLM()
    search, events = fake_run(preset("hh", sims_per_move=2, max_moves=2), lm=lm)
    assert len(lm.released) == 2
    keep, under = lm.released[0]
    assert keep[:len(under)] == under and len(keep) == len(under) + 1


def test_fake_stats_object_is_reported():
    assert ComputeStats(forwarded_tokens=10, distinct_tokens=8).recompute_ratio == 1.25


def test_node_cap_evicts_abandoned_branches_then_ends_the_move_and_the_export_still_replays():
    from rain.core.export import RunRecord, loads, dumps, nodes_of
    from rain.core.replay import rebuild

    cap = 40
    search, events = fake_run(preset("hh", sims_per_move=30, max_moves=4, max_tree_nodes=cap))
    tree = search.tree
    commits = [e for e in events if e.type == "commit"]
    assert len(commits) >= 2 and events[-1].reason in ("eos", "max_moves")
    capped = [c for c in commits if c.reason == "node_cap"]
    assert len(capped) >= 2 and all(1 <= c.simulations < 30 for c in capped)
    assert all(c.reason == "fixed" and c.simulations == 30 for c in commits if c not in capped)
    assert tree.evicted > 0 and tree.size <= cap                           # the cap held ...
    assert tree.size + tree.evicted == len(tree.nodes) == events[-1].stats["nodes"]
    node_id = tree.root                                                    # ... and the committed path survived
    while node_id != -1:
        assert tree[node_id] is not None and tree[node_id].committed
        node_id = tree[node_id].parent
    # the events still describe every node ever created, so export and import see the whole history
    record = RunRecord("q", search.config.to_dict(), {"name": "fake"},
                       {"format": "fake", "criterion": "harm", "templates": ["{exchange}", "{exchange}"]},
                       events, nodes=nodes_of(rebuild(events)))
    assert len(loads(dumps(record)).tree().nodes) == len(tree.nodes)


def test_without_the_cap_a_fixed_budget_is_spent_in_full():
    _, events = fake_run(preset("hh", sims_per_move=30, max_moves=2))
    assert [(c.simulations, c.reason) for c in events if c.type == "commit"] == [(30, "fixed"), (30, "fixed")]


def test_node_cap_below_one_expansion_is_refused():
    with pytest.raises(ConfigError, match="max_tree_nodes"):
        preset("hh", max_tree_nodes=5)


def test_sample_draws_by_the_probabilities_and_never_a_zero_probability_index():
    from rain.core.decoding import sample

    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.8, 0.0], [0.5, 0.0, 0.0, 0.0, 1.5]])     # rows need not sum to 1
    draws = torch.stack([sample(probs, generator) for _ in range(20000)])
    assert set(draws[:, 0].tolist()) == {1, 3} and set(draws[:, 1].tolist()) == {0, 4}
    assert abs(float((draws[:, 0] == 3).float().mean()) - 0.8) < 0.015
    assert abs(float((draws[:, 1] == 4).float().mean()) - 0.75) < 0.015
    assert sample(torch.tensor([0.0, 0.0, 1.0, 0.0]), generator).dim() == 0           # one row in, one index out


def test_judge_score_formulas_on_hand_computed_probabilities():
    from rain.core.judge import combine_parts, good_labels, order_part

    assert good_labels("ab_hard") == ("A", "B") and good_labels("yesno_logit") == ("No", "Yes")
    assert [order_part("ab_hard", {"A": .4, "B": .4}, "A"), order_part("ab_hard", {"A": .5, "B": .4}, "A")] == [-1, 1]
    assert order_part("ab_soft", {"A": .3, "B": .1}, "B") == pytest.approx(-.5)
    z = math.exp(-1) + math.exp(-1.02) + 5.0                     # both labels share one softmax denominator
    probs = {"Yes": math.exp(-1) / z, "No": math.exp(-1.02) / z}
    assert order_part("yesno_logit", probs, "Yes") == pytest.approx(0.02, abs=1e-12)
    assert combine_parts("yesno_logit", [0.02, 0.03], 0.05) == pytest.approx(math.tanh(0.5))
    assert combine_parts("ab_hard", [1.0, -1.0], 0.05) == 0.0
    assert order_part("yesno_logit", {"Yes": 0.0, "No": 0.5}, "Yes") < -100             # underflow stays finite


class AlikeEmbedder:
    """Nearly equal embeddings (cosine > 0.95): Eq. (2) shares and dynamic additions both happen (with
    ALIKE_CONFIG's loose addition test). Counts the texts it embeds."""

    def __init__(self):
        self.texts = 0

    def embed(self, texts):
        self.texts += len(texts)
        return [[1.0, 0.02 * (len(t) % 5), 0.01 * (sum(map(ord, t)) % 3)] for t in texts]


ALIKE_CONFIG = preset("hh", candidates=2, addition_variance=10.0, addition_value=1.0, sims_per_move=12, max_moves=8,
                      max_new_tokens=40, token_set_lengths=(1, 3))


def table_4_run(**switches) -> tuple[int, int, int]:
    """(nodes added, Eq. (2) shares, texts embedded) of a run on ALIKE_CONFIG with `switches`."""
    embedder = AlikeEmbedder()
    _, events = fake_run(ALIKE_CONFIG.replace(**switches), embedder=embedder)
    added = sum(len(e.children) for e in events if e.type == "node_added")
    shares = sum(len(e.similarity) for e in events if e.type == "backup")
    return added, shares, embedder.texts


def test_table_4_switches_each_remove_their_component_and_only_it():
    """Table 4's ablations: on a case where both components act, `similarity_update=False` leaves no Eq. (2) share,
    `dynamic_addition=False` no added node, and with both off nothing is embedded (§1.3 backup, checkadd)."""
    added, shares, embedded = table_4_run()
    assert added > 0 and shares > 0 and embedded > 0
    added, shares, _ = table_4_run(similarity_update=False)
    assert shares == 0 and added > 0
    added, shares, _ = table_4_run(dynamic_addition=False)
    assert added == 0 and shares > 0
    assert table_4_run(similarity_update=False, dynamic_addition=False) == (0, 0, 0)


def test_the_live_tree_is_the_replayed_tree_with_additions_and_similarity_shares():
    """Events are the only writer of the tree (rain.core.replay.apply_event, live and in replay alike)."""
    from rain.core.export import nodes_of
    from rain.core.replay import rebuild

    search, events = fake_run(ALIKE_CONFIG, embedder=AlikeEmbedder(), conversation=fake_conversation("q"))
    assert any(e.type == "node_added" for e in events) and any(e.type == "backup" and e.similarity for e in events)
    assert nodes_of(search.tree) == nodes_of(rebuild(events))
    assert (search.tree.root, search.tree.min_value, search.tree.max_value) == \
        (rebuild(events).root, rebuild(events).min_value, rebuild(events).max_value)


def test_time_the_consumer_holds_an_event_is_not_compute_time():
    """A page that pauses a live search (Step) must not make it look slower: the seconds in the stats, live and
    final, count only while the search computes (rain/core/clock.py)."""
    import time

    search = fake_search(preset("hh", sims_per_move=2, max_moves=2))
    pause, events, started = 0.6, [], time.perf_counter()
    for event in search.run():
        events.append(event)
        if len(events) in (3, 10):
            time.sleep(pause)                         # the consumer holds the search twice
    wall = time.perf_counter() - started
    seconds = events[-1].stats["seconds"]
    assert wall >= 2 * pause and seconds < wall - 2 * pause + 0.05
    assert events[-1].stats["seconds_per_simulation"] == pytest.approx(seconds / 4, abs=2e-4)   # both rounded
    live = [e.stats["seconds"] for e in events if e.type == "rewind" and e.stats]
    assert live and max(live) <= seconds


def test_the_vanilla_lane_clock_also_stops_while_its_tokens_are_held():
    """Its seconds are the wall time less the time the consumer held its tokens (on a loaded machine as well)."""
    from fakes import FakeRuntime
    from rain.runs.session import RunRequest, VanillaDone, VanillaText, run_session
    import time

    held, done, started = 0.0, None, time.perf_counter()
    for item in run_session(FakeRuntime(), RunRequest("how to pick a lock", preset("hh", max_new_tokens=6), rain=False)):
        if isinstance(item, VanillaDone):
            done, wall = item, time.perf_counter() - started
        elif isinstance(item, VanillaText):
            time.sleep(0.15)
            held += 0.15
    assert done is not None and held >= 0.9 and done.seconds <= wall - held + 0.02


def test_drive_hands_on_a_finished_program_before_awaiting_the_next_answer():
    """A serving engine hands its answers back one at a time (VllmLM.serve): the first program's `on_done`, where
    the search queues the judge, runs before the second answer is awaited, so the judge's requests join the
    expansion's engine steps instead of waiting for them to end."""
    log = []

    class Serving(FakeLM):
        def serve(self, requests):
            for index, _ in enumerate(requests):
                log.append(f"await {index}")
                yield index

    def program(request):
        answer = yield request
        return answer

    request = TopTokensRequest((1,), 1, 1.0, 1)
    results = drive(Serving(), [program(request), program(request)], on_done=lambda i, _: log.append(f"done {i}"))
    assert results == [0, 1]
    assert log == ["await 0", "done 0", "await 1", "done 1"]


def test_the_evaluation_cache_asks_the_judge_once_per_text_and_off_asks_every_time():
    """eval_cache (the authors' `dic`): a text already judged is scored from the cache, without a judge call."""
    judge = FakeJudge()
    _, events = fake_run(preset("hh", sims_per_move=8, max_moves=3), judge=judge)
    evaluated = [e for e in events if e.type == "evaluate"]
    hits = sum(e.cache_hit for e in evaluated)
    asked = [answer for _, answer in judge.calls]
    assert hits > 0 and len(asked) == len(evaluated) - hits            # this case repeats texts
    assert sorted(asked) == sorted({e.answer for e in evaluated})         # each text judged exactly once
    assert events[-1].stats["eval_cache_hits"] == hits and events[-1].stats["evaluations"] == len(asked)
    judge = FakeJudge()
    _, events = fake_run(preset("hh", sims_per_move=8, max_moves=3, eval_cache=False), judge=judge)
    evaluated = [e for e in events if e.type == "evaluate"]
    assert not any(e.cache_hit for e in evaluated) and len(judge.calls) == len(evaluated)


def test_commit_sample_draws_by_normalised_visits_and_the_seed_reproduces():
    """commit="sample" (§3.2's prose): the move is drawn from the root's children by visit share, where argmax
    always takes the most visited; the same seed draws the same moves, and a whole run repeats."""
    def draws(commit: str, seed: int, count: int = 60) -> list[int]:
        search = fake_search(RainConfig(commit=commit, seed=seed))
        for tokens, visits in [((5,), 3), ((6,), 2), ((7,), 1)]:
            search.tree.add(0, tokens, "", 1 / 3).visits = visits
        return [search._choose_move().id for _ in range(count)]

    assert {i for seed in range(5) for i in draws("argmax", seed)} == {1}
    sampled = [draws("sample", seed) for seed in range(5)]
    assert sampled[0] == draws("sample", 0) and len({tuple(d) for d in sampled}) == 5
    shares = [sum(d.count(i) for d in sampled) / 300 for i in (1, 2, 3)]
    assert shares == pytest.approx([3 / 6, 2 / 6, 1 / 6], abs=0.08)
    config = preset("hh", sims_per_move=4, max_moves=4, commit="sample")
    first, again = ([(e.node, e.text) for e in fake_run(config)[1] if e.type == "commit"] for _ in range(2))
    assert first and first == again


# --- parallel simulations: virtual loss and shared forwards (docs/algorithm.md §3) ---------------------------

def test_virtual_loss_counts_each_path_in_flight_as_one_visit_scored_minus_one():
    tree = small_tree()
    tree.in_flight = {7: [0, 1], 8: [0, 3]}           # two paths in flight: through A and through C
    assert selection_stats(tree, 0)[0] == 6            # root: n 4 + 2
    assert selection_stats(tree, 1) == (3, pytest.approx((.5 * 2 - 1) / 3, abs=1e-15))   # A: (q·n - m)/(n + m) = 0
    assert selection_stats(tree, 2) == (1, -1.0)       # B: nothing in flight, unchanged
    assert selection_stats(tree, 3) == (1, -1.0)       # C: unvisited, now one visit scored -1
    root6, root5 = math.sqrt(6), math.sqrt(5)
    # A: (0+1)/(2+1e-5) + 2·.5·√6/(1+3); B: 0 + 2·.3·√6/2; C: (-1+1)/(2+1e-5) + 2·.2·√6/2
    assert puct_scores(tree, 0, RainConfig()) == pytest.approx([1 / 2.00001 + root6 / 4, .3 * root6, .2 * root6],
                                                              abs=1e-12)
    # paper variant: raw q and N = Σ of the children's n = 3 + 1 + 1
    assert puct_scores(tree, 0, RainConfig(puct_visits="siblings", puct_value="raw")) == pytest.approx(
        [0 + 2 * .5 * root5 / 4, -1 + 2 * .3 * root5 / 2, -1 + 2 * .2 * root5 / 2], abs=1e-12)
    tree.in_flight.clear()                             # backed up: the real statistics again
    assert puct_scores(tree, 0, RainConfig()) == pytest.approx([1.5 / 2.00001 + 2 / 3, 0.6, 0.8], abs=1e-12)


def test_a_select_event_is_in_flight_until_the_backup_of_its_simulation():
    tree = small_tree()
    apply_event(tree, Selected(5, [0, 1], [0.9]))
    apply_event(tree, Selected(6, [0, 3], [0.8]))
    assert tree.in_flight == {5: [0, 1], 6: [0, 3]} and tree.in_flight_through(0) == 2
    apply_event(tree, BackedUp(5, 1.0, [NodeStats(0, 5, 5, 0.2), NodeStats(1, 3, 3, 2 / 3)]))
    assert tree.in_flight == {6: [0, 3]} and tree.in_flight_through(1) == 0


def rounds(events) -> list[list]:
    """The select events of each round (consecutive selects; additions may come between them)."""
    groups, current = [], []
    for event in events:
        if event.type == "select":
            current.append(event)
        elif event.type not in ("node_added",) and current:
            groups.append(current)
            current = []
    return groups


def test_rounds_select_distinct_leaves_and_spend_each_move_s_budget_exactly():
    search, events = fake_run(preset("hh", sims_per_move=5, max_moves=4, parallel_simulations=4),
                              lm=FakeLM(eos_boost=-5.0))
    groups = rounds(events)
    # a fresh root is the only leaf: a round of one; then a round of 4 and its window's last 1, or a round cut
    # short where a descent met a leaf in flight (3 + 1 + 1, 2 + 2 + 1)
    assert [len(g) for g in groups] == [1, 3, 1, 2, 2, 1, 4, 1, 4, 1]
    assert all(len({s.path[-1] for s in g}) == len(g) for g in groups)      # no leaf selected twice in a round
    commits = [e for e in events if e.type == "commit"]
    assert all(c.simulations == 5 and c.reason == "fixed" for c in commits)  # rounds cut to the window
    assert search.simulations == 5 * len(commits) == sum(len(g) for g in groups)
    assert search.tree.in_flight == {}


def test_four_parallel_simulations_make_under_half_the_forwards_per_simulation_of_one():
    """Forward calls are deterministic: the round's rollouts and expansions share one forward per step."""
    counts = {}
    for k in (1, 4):
        lm = FakeLM(eos_boost=-5.0)
        search, events = fake_run(preset("hh", sims_per_move=8, max_moves=3, rollout_max_tokens=4,
                                         parallel_simulations=k), lm=lm)
        assert [(c.simulations, c.reason) for c in events if c.type == "commit"] == [(8, "fixed")] * 3
        counts[k] = (lm.stats.forward_calls, search.simulations)
    assert counts == {1: (185, 24), 4: (59, 24)}
    assert counts[4][0] / counts[4][1] <= 0.5 * counts[1][0] / counts[1][1]
