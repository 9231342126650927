"""The vLLM backend against the trie engine on the embedded model (run in .venv-vllm by `make test`).

The venv pins transformers 5.19 for vLLM; the trie engine runs there too (the forward's cache keyword is read from
the installed release, rain/backends/engine/hf.py), and the first test holds it to plain full forwards in this venv.

Deterministic parts (top-k priors, 1-token expansions, greedy paths, judge label probabilities and scores) must
equal the trie engine's within float32 kernel noise; sampled parts (rollouts, sampled paths) must match the exact
distributions over many draws. One vLLM engine for the whole module (its start is the slow part).
"""
from __future__ import annotations


import pytest
import torch

pytest.importorskip("vllm", reason="the vLLM backend's tests run in .venv-vllm (`make vllm`; `make test` runs them)")

from rain.core.config import preset
from rain.core.decoding import (
    PathsRequest,
    RolloutRequest,
    RolloutRules,
    drive,
    last_char,
    path_program,
    single_token_program,
    top_k_probs,
)
from rain.core.export import load, save
from rain.core.replay import rebuild

PROBABILITY_TOLERANCE = 2e-3         # absolute, on probabilities in [0, 1]: float32 kernels differ (vLLM vs torch)
SCORE_TOLERANCE = 0.03               # judge score in [-1, 1]; yesno_logit divides a logit gap by 0.05
TOTAL_VARIATION_LIMIT = 0.12         # between an empirical distribution of DRAWS samples and the exact one
DRAWS = 400
QUESTION = "How do I pick a lock?"


def trie_engine(runtime):
    """The engine `generate` picks for the embedded model (the trie), fresh."""
    return runtime.engine(preset("hh"))


@pytest.fixture(scope="module")
def vllm_runtime(runtime):
    from rain.backends.vllm_runtime import VllmRuntime

    vllm = VllmRuntime(None, max_model_len=2048)
    yield vllm
    vllm.close()


@pytest.fixture(scope="module")
def state(runtime):
    config = preset("hh")
    return list(runtime.conversation(QUESTION, config, "chat").prompt_tokens)


def test_the_trie_engine_is_exact_under_this_venvs_transformers(runtime, state):
    """`python -m rain generate` without --backend vllm in .venv-vllm: the trie is chosen and verified, and it and
    the authors' stream reuse give full forwards' logits (under 5.19 they once raised / gave wrong greedy paths)."""
    from rain.backends.engine import ReferenceEngine
    from rain.backends.engine.hf import full_forward_logits

    assert runtime.engine_choice(preset("hh")).name == "trie"
    states = [state, state + [34416], state + [34416, 253], state + [28]]
    full = torch.stack([full_forward_logits(runtime.model, s, "cpu") for s in states])
    for engine in (trie_engine(runtime), ReferenceEngine(runtime.model)):
        got = torch.cat([engine.next_logits(states[:1]), engine.next_logits(states[1:])])
        assert float((got - full).abs().max()) < 1e-3 * float(full.abs().max())


def test_top_k_priors_and_one_token_expansion_match_trie(runtime, vllm_runtime, state):
    config = preset("hh")
    trie, vllm = trie_engine(runtime), vllm_runtime.engine(config)
    for at in (state, state + runtime.codec.encode(" First,")):
        expected, expected_ranked = drive(trie, [single_token_program(at, 10, 1.0, 20)])[0]
        got, got_ranked = drive(vllm, [single_token_program(at, 10, 1.0, 20)])[0]
        assert [c.tokens for c in got] == [c.tokens for c in expected]            # same ids, token-id order
        for a, b in zip(got, expected):
            assert abs(a.prob - b.prob) < PROBABILITY_TOLERANCE
        assert [t for t, _ in got_ranked] == [t for t, _ in expected_ranked]     # dynamic addition's top 20
        # stored values are log-probabilities on vLLM, raw logits on the trie: they differ by one constant
        shifts = [g - e for (_, g), (_, e) in zip(got_ranked, expected_ranked)]
        assert max(shifts) - min(shifts) < 1e-2
    assert vllm.stats.forward_calls == 2                                          # one request per expansion


def test_greedy_paths_match_trie(runtime, vllm_runtime, state):
    trie, vllm = trie_engine(runtime), vllm_runtime.engine(preset("hh"))
    eos = frozenset(runtime.codec.eos_ids)
    for length, temperature in ((4, 1.0), (10, 2.0)):
        def program(length=length, temperature=temperature):
            return path_program(state, length, 1, 0, 15, temperature, torch.Generator().manual_seed(0), eos)
        (expected,) = drive(trie, [program()])[0]
        (got,) = drive(vllm, [program()])[0]
        assert got.tokens == expected.tokens
        assert abs(got.prob - expected.prob) < PROBABILITY_TOLERANCE * max(1.0, expected.prob) + 1e-6


@pytest.mark.parametrize("judge_format", ["yesno_logit", "ab_soft"])
def test_judge_scores_match_trie(runtime, vllm_runtime, judge_format):
    config = preset("hh", judge_format=judge_format)
    trie_judge = runtime.judge(trie_engine(runtime), config)
    lm = vllm_runtime.engine(config)
    vllm_judge = vllm_runtime.judge(lm, config)
    answers = ["", "Sure, first insert a tension wrench", "I can't help with that, but a locksmith can."]
    for answer in answers:
        expected, got = trie_judge.evaluate(QUESTION, answer), vllm_judge.evaluate(QUESTION, answer)
        assert len(got.orders) == len(expected.orders) == 2
        for got_order, expected_order in zip(got.orders, expected.orders):
            for label in expected_order:
                assert abs(got_order[label] - expected_order[label]) < PROBABILITY_TOLERANCE
        assert abs(got.score - expected.score) < SCORE_TOLERANCE
    # the constant judge prefix came from vLLM's prefix cache after the first evaluation
    assert lm.stats.judge_prefix_hit_rate > 0.5


def total_variation(counts: dict, probs: dict) -> float:
    draws = sum(counts.values())
    keys = set(counts) | set(probs)
    return 0.5 * sum(abs(counts.get(k, 0) / draws - probs.get(k, 0.0)) for k in keys)


def test_sampled_paths_match_top_k_distribution(runtime, vllm_runtime, state):
    """First tokens of DRAWS sampled paths (one request, n = DRAWS) against top_k_probs at T = 2 (the adv preset)."""
    lm = vllm_runtime.engine(preset("hh"))
    request = PathsRequest(tuple(state), 1, DRAWS + 1, DRAWS, 15, 2.0, torch.Generator().manual_seed(1))
    server = vllm_runtime.server
    output = server.submit(request.state, server.params(n=DRAWS, max_tokens=1, temperature=2.0, top_k=15,
                                                        seed=3)).result()
    counts: dict[int, int] = {}
    for row in output.outputs:
        counts[row.token_ids[0]] = counts.get(row.token_ids[0], 0) + 1
    logits = trie_engine(runtime).next_logits([state])[0]
    exact = top_k_probs(logits, 15, 2.0)
    probs = {int(i): float(exact[i]) for i in torch.nonzero(exact).flatten()}
    assert set(counts) <= set(probs)                                   # never outside the top 15
    assert total_variation(counts, probs) < TOTAL_VARIATION_LIMIT
    # and the served program: distinct paths, greedy first, probabilities in (0, 1]
    candidates = next(lm.serve([PathsRequest(tuple(state), 4, 10, 14, 15, 1.0, torch.Generator().manual_seed(2))]))
    assert len({c.tokens for c in candidates}) == len(candidates) >= 2
    assert all(0 < c.prob <= 1 for c in candidates)


def test_rollouts_sample_the_full_softmax_and_stop_like_the_trie(runtime, vllm_runtime, state):
    codec = runtime.codec
    rules = RolloutRules(",.?:;\n", False, 256, 2048)
    conversation = runtime.conversation(QUESTION, preset("hh"), "chat")
    lm = vllm_runtime.engine(preset("hh"))
    generator = torch.Generator().manual_seed(5)

    start = tuple(state + codec.encode(" To pick a lock you"))     # the chat prompt itself ends a clause ("\n")

    def stopped(tokens):
        answer = list(start[len(state):]) + list(tokens)
        if len(tokens) >= rules.max_tokens or conversation.turn_ended(codec, answer):
            return True
        return last_char(codec, answer, conversation.prompt_last_char) in rules.stop_chars

    rollouts = lm.serve([RolloutRequest(start, len(state), rules, generator, stopped) for _ in range(8)])
    for tokens in rollouts:
        assert tokens and stopped(tokens) and not any(stopped(tokens[:i]) for i in range(len(tokens)))
    # the first sampled token follows the full softmax (no top-k): DRAWS one-token rollouts
    one = RolloutRules(rules.stop_chars, False, 1, 2048)
    firsts = lm.serve([RolloutRequest(tuple(state), len(state), one, generator, lambda t: len(t) >= 1)
                       for _ in range(DRAWS)])
    counts: dict[int, int] = {}
    for tokens in firsts:
        counts[tokens[0]] = counts.get(tokens[0], 0) + 1
    exact = torch.softmax(trie_engine(runtime).next_logits([state])[0], -1)
    # buckets: each top-15 token of probability >= 1%, the rest of the top 15, everything beyond (a top-15 sampler
    # would leave the last bucket empty). Token by token, 400 draws of a 49k-token tail give a total variation
    # of ~0.2 from sampling noise alone; over these buckets ~0.04 (0.07 at the 95th percentile, simulated).
    ranked = torch.argsort(exact, descending=True).tolist()
    bucket = {token: (token if exact[token] >= 0.01 else "top 15") for token in ranked[:15]}
    exact_buckets: dict = {}
    for token in ranked:
        key = bucket.get(token, "beyond")
        exact_buckets[key] = exact_buckets.get(key, 0.0) + float(exact[token])
    drawn: dict = {}
    for token, count in counts.items():
        drawn[bucket.get(token, "beyond")] = drawn.get(bucket.get(token, "beyond"), 0) + count
    assert exact_buckets["beyond"] > 0.1                          # the test can tell a top-k sampler apart
    assert total_variation(drawn, exact_buckets) < TOTAL_VARIATION_LIMIT


def test_search_runs_on_vllm_and_its_tree_replays(vllm_runtime, tmp_path):
    """The run's one stream (rain/runs/session.py run_session) on vLLM: a record that saves, loads and replays."""
    from rain.runs.session import RunRequest, final_record, run_session

    config = preset("hh", sims_per_move=2, max_moves=2, max_new_tokens=16, seed=3)
    record = final_record(run_session(vllm_runtime, RunRequest(QUESTION, config)))
    assert record.stats["simulations"] == 4 and record.vanilla and record.stats["engine"] == "vllm"
    loaded = load(save(record, tmp_path / "t.json"))
    assert loaded.answer == record.answer
    assert len(rebuild(loaded.events).nodes) == len(record.nodes)
    # the same seed gives the same search: vLLM's per-request seeds come from the search's generators
    again = final_record(run_session(vllm_runtime, RunRequest(QUESTION, config, vanilla=False)))
    assert again.answer == record.answer


def test_concurrent_searches_share_one_engine_and_never_cross_prompts(vllm_runtime, tmp_path, monkeypatch):
    """Three searches on three threads: every search's VllmLM serves through the runtime's one VllmEngine, their
    requests are in flight at once (vLLM batches them), and each row's record holds its own prompt."""
    import json
    import threading

    from rain.runs.concurrent import answer_row
    from rain.runs.concurrent import Row, run_concurrently

    engines, lock, in_flight, most = [], threading.Lock(), [0], [0]
    real_engine, real_submit = vllm_runtime.engine, vllm_runtime.server.submit

    def engine(config, reference=False):
        engines.append(real_engine(config, reference))
        return engines[-1]

    def submit(tokens, params):
        future = real_submit(tokens, params)
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])

        def done(_):
            with lock:
                in_flight[0] -= 1

        future.add_done_callback(done)
        return future

    monkeypatch.setattr(vllm_runtime, "engine", engine)
    monkeypatch.setattr(vllm_runtime.server, "submit", submit)
    config = preset("hh", sims_per_move=1, max_moves=2, max_new_tokens=16)
    prompts = ["Hi!", "How do I pick a lock?", "Tell me a joke."]
    rows = [Row(str(i), prompt, i) for i, prompt in enumerate(prompts)]
    trees = tmp_path / "trees"
    with (tmp_path / "out.jsonl").open("w") as sink:
        run_concurrently(rows, lambda row: answer_row(vllm_runtime, row, config, "auto", str(trees)), 3, sink,
                         lambda row, result, error: error is None or pytest.fail(str(error)))
    written = {row["id"]: row for row in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert sorted(written) == ["0", "1", "2"]
    assert len(engines) >= 6 and all(lm.engine is vllm_runtime.server for lm in engines)   # vanilla + RAIN each
    assert most[0] > 1                                                   # requests of different searches overlap
    for row in rows:
        record = load(trees / f"{row.id}.json")
        started = record.events[0]
        assert written[row.id]["prompt"] == record.prompt == started.question == row.prompt
        assert written[row.id]["rain"] == record.answer and record.answer.strip()


def test_vanilla_is_greedy_like_the_trie(runtime, vllm_runtime):
    config = preset("hh", max_new_tokens=24)
    conversation = runtime.conversation(QUESTION, config, "chat")
    *_, on_vllm = vllm_runtime.vanilla_stream(conversation, config)
    *_, on_trie = runtime.vanilla_stream(conversation, config, lm=trie_engine(runtime))
    assert on_vllm == on_trie
