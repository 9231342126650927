"""The three places where a differential test against the authors' code found our trees different (issue #14),
each pinned on a hand-made case with the authors' numbers: ties in 1-token dynamic addition, the length cap
`len(state) > maxlen`, and TruthfulQA's judged text (spec §1.3 checkadd, §1.3 gmeval/simg, §1.6 "eval text")."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fakes import FakeCodec, FakeLM, fake_conversation, fake_search
from rain.core.config import RainConfig, preset
from rain.core.events import NodesAdded
from rain.core.decoding import RolloutRules, drive, rollout_program, single_token_candidates, tied_top
from rain.core.judge import WORDINGS, judged_exchange
from rain.core.replay import apply_event
from rain.core.search import Search, addition_triggered

ISSUE_LOGITS = [10, 9.5, 9, 8.5, 8, 7.5, 7, 6.5, 6, 5.5, 5, 5, 1]     # issue #14's example


def search_on_fakes(config: RainConfig | None = None, prompt=(3, 4), lm: FakeLM | None = None) -> Search:
    return fake_search(config or RainConfig(), lm=lm, conversation=fake_conversation("q", prompt))


# --- 1. dynamic addition of 1-token children keeps every token tied with the (nc+1)-th logit ----------------

def test_addition_adds_every_token_tied_for_the_next_rank_with_the_authors_prior():
    """Ten children (tokens 0-9), alike and poor; tokens 10 and 11 tie at logit 5 for rank 11.

    TopKLogitsWarper(11) keeps both, so the authors add both, each with 0.75·p + 0.25/12, p the softmax over the
    12 kept logits: 0.022825 (taking exactly 11 entries gave token 10 alone, 0.75·p' + 0.25/11 = 0.024724).
    """
    logits = torch.tensor(ISSUE_LOGITS, dtype=torch.float32)
    candidates, ranked = single_token_candidates(logits, 10, 1.0, keep_ranked=20)
    assert [c.tokens for c in candidates] == [(t,) for t in range(10)]
    assert [t for t, _ in ranked] == list(range(13))                        # all 13 (fewer than 20)
    search = search_on_fakes()
    root = search.tree[0]
    search.ranked_logits[root.id] = ranked
    for candidate in candidates:
        child = search.tree.add(0, candidate.tokens, "", candidate.prob)
        child.value, child.visits, child.real_visits = -0.5, 1, 1
        search.embeddings[child.id] = np.array([1.0, 0.0])
    assert addition_triggered(search.tree, 0, search.config, search.embeddings)   # alike (zero variance), poor
    added = search._additions(root, [3, 4])
    assert [(tuple(n.tokens), n.id) for n in added] == [((10,), 11), ((11,), 12)]
    apply_event(search.tree, NodesAdded(1, root.id, added))
    assert search.tree[11].added and search.tree[12].added
    assert [n.prior for n in added] == pytest.approx([0.022825, 0.022825], abs=5e-7)
    kept = np.array(ISSUE_LOGITS[:12], dtype=np.float64)
    p = np.exp(kept[10] - kept.max()) / np.exp(kept - kept.max()).sum()
    assert added[0].prior == pytest.approx(0.75 * p + 0.25 / 12, rel=1e-12)
    assert [search.tree[i].prior for i in range(1, 11)] == [c.prob for c in candidates]   # existing priors kept


def test_tied_top_is_top_k_with_ties_and_the_ranked_list_keeps_ties_with_its_last_entry():
    ranked = [(0, 3.0), (4, 2.0), (1, 1.0), (2, 1.0), (3, 1.0), (5, 0.0)]
    assert tied_top(ranked, 2) == ranked[:2]
    assert tied_top(ranked, 3) == ranked[:5]                               # the 3rd ties with two more
    assert tied_top(ranked, 9) == ranked
    _, kept = single_token_candidates(torch.tensor([1.0, 3.0, 1.0, 2.0, 1.0, 0.0]), 1, 1.0, keep_ranked=3)
    assert kept == [(1, 3.0), (3, 2.0), (0, 1.0), (2, 1.0), (4, 1.0)]      # ties with the 3rd, in id order


def test_expansion_keeps_tokens_tied_with_the_kth_as_top_k_logits_warper_does():
    logits = torch.tensor([5.0, 4.0, 4.0, 1.0])
    candidates, _ = single_token_candidates(logits, 2, 1.0, keep_ranked=20)
    assert [c.tokens for c in candidates] == [(0,), (1,), (2,)]


# --- 2. the length cap is len(state) > max_length in the terminal test, the stop and the rollout -----------

def test_terminal_test_and_stop_use_len_greater_than_max_length():
    search = search_on_fakes(preset("hh", max_length=6, max_new_tokens=100), prompt=(3, 4))
    node = search.tree.add(0, (5,), " door", 1.0)
    assert not search._is_terminal(node, [3, 4, 5, 6, 7, 8])               # len 6 == max_length: expanded
    assert search._is_terminal(node, [3, 4, 5, 6, 7, 8, 9])                # len 7 > 6: terminal
    search.root_state = [3, 4, 5, 6, 7, 8]
    assert search._finish_reason(node, 1) is None
    search.root_state.append(9)
    assert search._finish_reason(node, 1) == "max_length"


def test_rollout_stops_only_past_max_length():
    codec = FakeCodec()
    rules = RolloutRules(",.?:;\n", to_eos=True, max_tokens=100, max_length=6)
    program = rollout_program(codec, [3, 4, 5, 6, 7], 2, ":", rules, torch.Generator().manual_seed(0),
                              lambda answer: False)
    sampled = drive(FakeLM(), [program])[0]
    assert len(sampled) == 2                                                # 5 -> 6 -> 7 > 6: stop


def test_the_cap_stays_a_token_set_inside_the_models_context():
    lm = FakeLM()
    lm.max_length = 64
    assert search_on_fakes(RainConfig(max_length=2048), lm=lm).max_length == 64 - 10
    assert search_on_fakes(RainConfig(max_length=32), lm=lm).max_length == 32


# --- 3. TruthfulQA judges "Q: ...\nA: ..." cut after its last '.', stripped (truth/main.py getv) -----------

def test_truth_judges_the_exchange_cut_after_its_last_period():
    truth = WORDINGS["truth"]
    assert judged_exchange(truth, "Who wrote Hamlet?", " Shakespeare did. He also wrote") == \
        "Q: Who wrote Hamlet?\nA:  Shakespeare did."
    # the cut runs over the whole exchange, as remove_after_last_period does: a period in the question counts
    assert judged_exchange(truth, "Is the U.S. large?", " Yes, it is") == "Q: Is the U.S."
    assert judged_exchange(truth, "Why?", " because  ") == "Q: Why?\nA:  because"   # no period: whole, stripped
    harm = WORDINGS["harm"]
    assert judged_exchange(harm, "q", " one. two") == "Human: q\nAssistant:  one. two"   # HH: the whole answer
