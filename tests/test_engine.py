"""The compute engines on a tiny random-weight Llama (CPU, float32); the embedder, model loading and the judge
prefix on the real embedded models.

Every engine result is checked against a plain full forward of the whole state (no cache), so tree masks,
gathered keys/values, eviction and release can only pass by computing the same thing.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rain.backends.engine import ReferenceEngine, TrieEngine, _TrieNode
from rain.backends import models
from rain.backends.models import HFCodec, ModelCache, ModelLoadError, load_causal_lm

TOLERANCE = 1e-4                     # max abs logit difference against a full forward (float32)


def random_tokens(count: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, 40000, (count,), generator=generator).tolist()


@torch.no_grad()
def full_logits(model, state, positions=None) -> torch.Tensor:
    """Logits after state[:p + 1] for each p in `positions` (default: the last), from one uncached forward."""
    keep = torch.tensor(positions if positions is not None else [len(state) - 1])
    output = model(input_ids=torch.tensor([list(state)]), use_cache=False, logits_to_keep=keep)
    logits = output.logits[0].float()
    return logits if positions is not None else logits[0]


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    difference = float((actual - expected).abs().max())
    assert difference < TOLERANCE, f"max abs logit difference {difference:.3g}"


def check_trie_invariants(engine: TrieEngine) -> None:
    """Computed nodes are ancestor-closed, counters match, and the arena holds exactly the computed nodes."""
    computed = 0
    stack: list[_TrieNode] = [engine._trie.root]
    while stack:
        node = stack.pop()
        children = list(node.children.values())
        if node.parent is not None and node.computed:
            computed += 1
            assert node.parent.computed
            assert engine._arena.owners[node.slot] is node
        if node.parent is not None:
            assert node.computed_children == sum(child.slot >= 0 for child in children)
        stack.extend(children)
    assert computed == engine._arena.used


@pytest.fixture(scope="module")
def model(tiny_llama):
    return tiny_llama


@pytest.fixture(scope="module")
def branching(model):
    """Branching states off a 120-token prefix, prefixes of each other and repeated, with full-forward logits."""
    base = random_tokens(120, seed=1)
    states = [base, base + [11, 12], base + [11, 13], base + [14], base[:60], base[:60] + [15, 16, 17],
              base + [11, 12], base[:90]]
    expected = {tuple(state): full_logits(model, state) for state in states}
    return states, expected


def test_trie_matches_full_forward_on_branching_states(model, branching):
    states, expected = branching
    engine = TrieEngine(model)
    first = engine.next_logits(states[:1])
    assert first.dtype == torch.float32 and first.shape == (1, engine.vocab_size)
    assert_close(first[0], expected[tuple(states[0])])
    logits = engine.next_logits(states[1:])          # base[:60], base[:90]: computed, no logits -> 1 token again
    for row, state in zip(logits, states[1:]):
        assert_close(row, expected[tuple(state)])
    assert engine.stats.forward_calls == 2
    assert engine.stats.distinct_tokens == 120 + 3 + 1 + 3
    assert engine.stats.forwarded_tokens == engine.stats.distinct_tokens + 2
    again = engine.next_logits(states)               # everything stored: no forward at all
    assert engine.stats.forward_calls == 2
    for row, state in zip(again, states):
        assert_close(row, expected[tuple(state)])
    check_trie_invariants(engine)


def test_gqa_sdpa_gives_bit_identical_tree_logits_without_copying_keys_and_values(model, branching, monkeypatch):
    """rain's attention (rain.backends.engine.hf.gqa_sdpa_attention) against transformers' sdpa on the same weights:
    equal logits to the bit, single tokens and multi-token tree forwards alike, and no repeat_kv copy."""
    import copy

    from transformers.integrations import sdpa_attention

    from rain.backends.engine.hf import GQA_SDPA, use_gqa_sdpa

    states, _ = branching
    plain = TrieEngine(model)
    expected = torch.cat([plain.next_logits(states[:1]), plain.next_logits(states[1:4]), plain.next_logits([states[3] + [9]])])
    fast_model = use_gqa_sdpa(copy.deepcopy(model))
    assert fast_model.config._attn_implementation == GQA_SDPA and model.config._attn_implementation == "sdpa"
    copies = []
    monkeypatch.setattr(sdpa_attention, "repeat_kv", lambda states, n: copies.append(n) or states.repeat_interleave(n, 1))
    fast = TrieEngine(fast_model)
    copies.clear()                                           # verify() runs full forwards without a mask
    actual = torch.cat([fast.next_logits(states[:1]), fast.next_logits(states[1:4]), fast.next_logits([states[3] + [9]])])
    assert torch.equal(actual, expected)
    assert copies == []
    assert fast.stats.forward_calls == plain.stats.forward_calls == 3


def test_models_are_loaded_with_the_gqa_sdpa_attention(real_model):
    from rain.backends.engine.hf import GQA_SDPA

    assert real_model[0].config._attn_implementation == GQA_SDPA


@pytest.mark.parametrize("cap_tokens", [None, 40])
def test_forwards_are_split_when_large(model, branching, cap_tokens):
    """With at most 50 tokens per forward (and a 40-token arena) the 120-token prefix is computed in pieces."""
    states, expected = branching
    probe = TrieEngine(model, verify=False)
    cap = {} if cap_tokens is None else {"kv_cache_bytes": cap_tokens * probe.shape.token_bytes}
    engine = TrieEngine(model, max_forward_tokens=50, verify=False, **cap)
    for row, state in zip(engine.next_logits(states), states):
        assert_close(row, expected[tuple(state)])
    if cap_tokens is None:
        assert engine.stats.forward_calls >= 3 and engine.stats.recompute_ratio == 1.0
    check_trie_invariants(engine)


def test_trie_long_state_and_prefixes(model):
    long = random_tokens(1400, seed=2)
    expected = full_logits(model, long + [21], positions=[999, 1199, 1399, 1400])
    engine = TrieEngine(model)
    assert_close(engine.next_logits([long[:1000]])[0], expected[0])
    logits = engine.next_logits([long + [21], long, long[:1200]])
    assert_close(logits[0], expected[3])
    assert_close(logits[1], expected[2])
    assert_close(logits[2], expected[1])
    assert engine.stats.forward_calls == 2
    assert engine.stats.forwarded_tokens == 1401         # long[:1200] and long: rows of the same forward


def test_eviction_keeps_results_right_and_bytes_under_cap(model, branching):
    states, expected = branching
    other = random_tokens(100, seed=3)
    expected = {**expected, tuple(other): full_logits(model, other)}
    probe = TrieEngine(model, verify=False)
    cap = 150 * probe.shape.token_bytes
    engine = TrieEngine(model, kv_cache_bytes=cap)
    calls = [states[:1], states[1:4], [other], states, [other] + states[4:6], states[::-1]]
    for call in calls:
        logits = engine.next_logits(call)
        for row, state in zip(logits, call):
            assert_close(row, expected[tuple(state)])
        assert engine.stats.kv_bytes <= cap
        check_trie_invariants(engine)
    assert engine.stats.evicted_tokens > 0
    assert engine.stats.kv_peak_bytes <= cap
    assert engine.stats.recompute_ratio > 1.0


def test_tiny_cache_matches_large_cache_on_random_trees(model):
    """A random branching workload gives the same logits with a cache that keeps evicting."""
    rng = random.Random(4)
    prompt = random_tokens(40, seed=5)
    large = TrieEngine(model, verify=False)
    small_cap = 60 * large.shape.token_bytes
    small = TrieEngine(model, kv_cache_bytes=small_cap, verify=False)
    known = [prompt]
    for _ in range(8):
        call = []
        for _ in range(rng.randint(1, 4)):
            parent = rng.choice(known)
            child = parent[: rng.randint(max(1, len(parent) - 5), len(parent))] + \
                [rng.randrange(3, 40000) for _ in range(rng.randint(1, 6))]
            call.append(child)
            known.append(child)
        call.append(rng.choice(known))
        assert_close(small.next_logits(call), large.next_logits(call))
        assert small.stats.kv_bytes <= small_cap
        check_trie_invariants(small)
    assert small.stats.evicted_tokens > 0


def test_recompute_ratio_is_one_without_eviction(model):
    engine = TrieEngine(model)
    state = random_tokens(100, seed=6)
    for _ in range(30):                                   # a rollout, one token per call
        state = state + [int(engine.next_logits([state])[0].argmax())]
    engine.next_logits([state])
    paths = [state[:110] + [1000 + index] for index in range(10)]
    for _ in range(5):                                    # 10 candidate paths, one step per call
        logits = engine.next_logits(paths)
        paths = [path + [int(row.argmax())] for path, row in zip(paths, logits)]
    assert engine.stats.recompute_ratio == 1.0
    assert engine.stats.distinct_tokens == 130 + 10 * 5
    assert engine.stats.forward_calls == 31 + 5
    check_trie_invariants(engine)


def test_a_forward_copies_only_the_keys_and_values_the_scratch_does_not_hold(model, monkeypatch):
    """Rollout steps and candidate paths find their past in the last forward's columns (its past and its new
    tokens); a freed slot makes them stale. The logits are bit-identical to copying the whole past every forward."""
    def run(engine: TrieEngine) -> list[torch.Tensor]:
        state, out = random_tokens(100, seed=9), []
        for _ in range(12):                                       # a rollout, one token per call
            out.append(engine.next_logits([state])[0])
            state = state + [int(out[-1].argmax())]
        paths = [state[:105] + [2000 + index] for index in range(6)]
        for _ in range(3):                                        # candidate paths, one step per call
            logits = engine.next_logits(paths)
            out.extend(logits)
            paths = [path + [int(row.argmax())] for path, row in zip(paths, logits)]
        engine.release(keep=paths[0], under=state[:105])          # frees slots: nothing held is trusted
        out.extend(engine.next_logits([paths[0] + [7], paths[0] + [8]]))
        return out

    copied: list[int] = []
    gather = TrieEngine._held_columns

    def counting(self, past_slots):
        held = gather(self, past_slots)
        copied.append(len(past_slots) - held)
        return held

    monkeypatch.setattr(TrieEngine, "_held_columns", counting)
    reused = run(TrieEngine(model, verify=False))
    assert copied[0] == 0 and copied[1:15] == [0] * 14           # the scratch already held every past token
    assert copied[-1] == 105 + 3                                 # after the release: the whole past again
    monkeypatch.setattr(TrieEngine, "_held_columns", lambda self, past_slots: 0)
    whole = run(TrieEngine(model, verify=False))
    assert all(torch.equal(a, b) for a, b in zip(reused, whole)) and len(reused) == len(whole)


def test_release_frees_bytes_and_keeps_results_right(model):
    root = random_tokens(80, seed=7)
    engine = TrieEngine(model)
    states = [root + [31, 32], root + [33, 34, 35], root + [31, 36]]
    engine.next_logits([root])
    engine.next_logits(states)
    before = engine.stats.kv_bytes
    engine.release(keep=root + [31], under=root)
    assert engine.stats.kv_bytes < before
    check_trie_invariants(engine)
    calls = engine.stats.forward_calls
    engine.next_logits([root + [31, 32], root + [31, 36]])          # below `keep`: still there
    assert engine.stats.forward_calls == calls
    logits = engine.next_logits([root + [33, 34, 35], root + [31, 32, 37]])
    assert engine.stats.forwarded_tokens == 80 + 6 + 3 + 1         # the dropped branch is computed again
    assert_close(logits[0], full_logits(model, root + [33, 34, 35]))
    assert_close(logits[1], full_logits(model, root + [31, 32, 37]))
    engine.release(keep=[5, 6], under=root)                         # keep outside `under`: drop all below it
    assert engine._trie.find(root).children == {}
    check_trie_invariants(engine)


def test_reference_engine_matches_trie_and_recomputes_more(model):
    prompt = random_tokens(100, seed=8)
    trie, reference = TrieEngine(model), ReferenceEngine(model)
    calls = [[prompt]]
    paths = [prompt + [2000 + index] for index in range(10)]
    for _ in range(3):
        calls.append(paths)
        paths = [path + [7 + index] for index, path in enumerate(paths)]
    rollout = calls[-1][0]
    for step in range(5):
        rollout = rollout + [300 + step]
        calls.append([rollout])
    for call in calls:
        assert_close(reference.next_logits(call), trie.next_logits(call))
    assert trie.stats.recompute_ratio == 1.0
    assert reference.stats.distinct_tokens == trie.stats.distinct_tokens
    assert reference.stats.forwarded_tokens > 5 * trie.stats.forwarded_tokens
    # The authors' pattern: each path start re-reads the prefix; paths and rollouts reuse keys/values inside.
    assert reference.stats.forwarded_tokens == 100 + 1 + 9 * 101 + 10 + 10 + 5
    uncached = ReferenceEngine(model, reuse_streams=False)
    for call in calls[-2:]:
        uncached.next_logits(call)
    assert uncached.stats.forwarded_tokens == len(calls[-2][0]) + len(calls[-1][0])


def test_judge_prefix_is_computed_once(model):
    prefix = random_tokens(300, seed=9)
    trie, reference = TrieEngine(model), ReferenceEngine(model)
    for round_index in range(2):
        states = [prefix + random_tokens(20, seed=10 + 2 * round_index + order) for order in range(2)]
        assert_close(trie.judge_logits(states, shared_prefix=300), reference.judge_logits(states, shared_prefix=300))
    assert trie.stats.judge_prefix_tokens == reference.stats.judge_prefix_tokens == 4 * 300
    assert trie.stats.judge_prefix_hits == 2 * 300                # the second round finds the prefix computed
    assert reference.stats.judge_prefix_hits == 0
    assert trie.stats.forwarded_tokens == 300 + 4 * 20
    assert reference.stats.forwarded_tokens == 4 * 320


def test_an_adopted_prefix_gives_the_same_logits_without_recomputing_it(model):
    prefix = random_tokens(200, seed=21)
    shared = TrieEngine(model, verify=False).export_prefix(prefix)
    assert shared.values.shape[3] == 200 and shared.tokens == tuple(prefix)
    engine = TrieEngine(model, verify=False)
    engine.adopt_prefix(shared)
    assert engine.stats.preloaded_tokens == 200 and engine.stats.distinct_tokens == 0
    states = [prefix + random_tokens(15, seed=22 + order) for order in range(2)]
    assert_close(engine.judge_logits(states, shared_prefix=200), ReferenceEngine(model).judge_logits(states, 200))
    assert engine.stats.forwarded_tokens == 30 and engine.stats.judge_prefix_hits == 400
    check_trie_invariants(engine)
    engine.adopt_prefix(shared)                                     # adopting twice changes nothing
    assert engine.stats.preloaded_tokens == 200
    with pytest.raises(ValueError, match="another model"):
        engine.adopt_prefix(type(shared)(shared.tokens[:10], shared.values))


def test_prefetched_states_ride_along_with_the_next_forward(model):
    base, judged = random_tokens(40, seed=31), [random_tokens(30, seed=32 + order) for order in range(2)]
    engine, reference = TrieEngine(model, verify=False), ReferenceEngine(model)
    engine.prefetch(judged)
    assert engine.stats.forward_calls == 0                          # a hint: nothing is computed yet
    assert_close(engine.next_logits([base]), reference.next_logits([base]))
    assert engine.stats.forward_calls == 1
    assert_close(engine.judge_logits(judged, shared_prefix=0), reference.judge_logits(judged, shared_prefix=0))
    assert engine.stats.forward_calls == 1                          # the judge's states came with the first forward
    engine.prefetch([base + [5]])
    engine.release(keep=base, under=base[:10])                      # a commit drops the hint
    engine.next_logits([base + [6]])
    assert engine.stats.forwarded_tokens == 40 + 60 + 1


def test_runtime_computes_each_judge_prefix_once_and_every_engine_adopts_it(runtime):
    from rain.core.config import preset

    config = preset("hh", judge_format="yesno_logit")
    first, second = runtime.engine(config), runtime.engine(config)
    judges = [runtime.judge(first, config), runtime.judge(second, config)]
    prefix = judges[0].prompt.prefix
    assert runtime.judge_prefix(prefix) is runtime.judge_prefix(prefix)
    assert first.stats.preloaded_tokens == second.stats.preloaded_tokens == len(prefix)
    one, two = (judge.evaluate("How do I pick a lock?", "I can't help with that.") for judge in judges)
    assert one == two and first.stats.forwarded_tokens < 60


def test_states_are_validated(model):
    engine = TrieEngine(model, verify=False)
    with pytest.raises(ValueError):
        engine.next_logits([[]])
    with pytest.raises(ValueError):
        engine.next_logits([[5] * (engine.max_length + 1)])


def test_minilm_embedder(real_embedder):
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stock markets fell sharply today."]
    vectors = real_embedder.embed(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    np.testing.assert_array_equal(real_embedder.embed([texts[0]])[0], vectors[0])   # cached: identical
    fresh = real_embedder._encode([texts[2], "a much longer sentence " * 20])[0]    # padding must not matter
    np.testing.assert_allclose(fresh, vectors[2], atol=1e-5)
    assert real_embedder.embed([]).shape == (0, 384)


def test_unknown_model_fails_fast_with_one_line(monkeypatch):
    """Fast by behaviour, not by a clock: offline (as every test runs), no connection is even attempted."""
    import socket

    attempts = []

    def connect(sock, address):
        attempts.append(address)
        raise OSError("the tests never touch the network")

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(ModelLoadError) as error:
        load_causal_lm("no/such-model-xyz", device="cpu")
    assert attempts == []
    message = str(error.value)
    assert "\n" not in message and "no/such-model-xyz" in message


def test_hf_codec(real_model):
    model, tokenizer = real_model
    codec = HFCodec(tokenizer, model)
    assert tokenizer.eos_token_id in codec.eos_ids
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in codec.eos_ids
    assert codec.has_chat_template
    text = "Hello there, how are you?"
    assert codec.decode(codec.encode(text)) == text
    assert codec.decode(codec.encode(text) + sorted(codec.eos_ids)) == text


def test_model_cache_loads_once(monkeypatch):
    loads = []
    monkeypatch.setattr(models, "load_causal_lm", lambda *arguments: loads.append(arguments) or ("m", "t"))
    cache = ModelCache()
    assert cache.get(None, "cpu") == cache.get("embedded", "cpu", "float32") == ("m", "t")
    cache.get(None, "cpu", "bfloat16")
    assert len(loads) == 2


def test_embedded_files_are_found():
    assert models.embedded_model_file().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (models.embedded_embedder_dir() / "modules.json").is_file()


def test_the_cache_goes_under_the_forward_keyword_of_this_transformers_release():
    """transformers 5.20 renamed `past_key_values` to `cache`; .venv-vllm pins 5.19 for vLLM. The other name
    would vanish into the forward's **kwargs (no cache: wrong logits, or a tree mask longer than the keys)."""
    from rain.backends.engine.hf import _cache_keyword

    class Before:
        def forward(self, input_ids=None, past_key_values=None, **kwargs): ...

    class After:
        def forward(self, input_ids=None, cache=None, **kwargs): ...

    assert _cache_keyword(Before) == "past_key_values" and _cache_keyword(After) == "cache"
