"""Quick timings of the compute engines on the embedded model (CPU, a few seconds after loading).

    python scripts/engine_smoke.py [--threads 2]

Prints: load time, 1-token decode via TrieEngine vs plain HF KV-cached decode, 10 branching paths one step,
a 1,400-token prefix, a judge pair over a cached prefix, and the max abs logit difference to full forwards.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from rain.backends.engine import ReferenceEngine, TrieEngine
from rain.backends.models import load_causal_lm


def milliseconds(function, repeats: int) -> float:
    """Median wall time of `function()` in ms."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


@torch.no_grad()
def hf_decode_ms(model, prefix: list[int], steps: int) -> float:
    """Plain transformers decoding with its own DynamicCache, one token per forward."""
    output = model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1)
    cache, token = output.cache, output.logits[0, -1].argmax()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        output = model(input_ids=token.view(1, 1), cache=cache, use_cache=True, logits_to_keep=1)
        cache, token = output.cache, output.logits[0, -1].argmax()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def trie_decode_ms(engine: TrieEngine, prefix: list[int], steps: int) -> float:
    state = list(prefix)
    logits = engine.next_logits([state])
    times = []
    for _ in range(steps):
        state.append(int(logits[0].argmax()))
        started = time.perf_counter()
        logits = engine.next_logits([state])
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    started = time.perf_counter()
    model, _ = load_causal_lm(None, device="cpu", dtype="float32")
    print(f"load: {time.perf_counter() - started:.1f} s")
    tokens = torch.randint(3, 40000, (1600,), generator=torch.Generator().manual_seed(0)).tolist()

    for context in (100, 1400):
        prefix = tokens[:context]
        trie = trie_decode_ms(TrieEngine(model), prefix, 12)
        plain = hf_decode_ms(model, prefix, 12)
        print(f"1-token decode at {context} tokens: trie {trie:.1f} ms, plain HF KV cache {plain:.1f} ms")

    engine = TrieEngine(model)
    prefix = tokens[:1400]
    print(f"1,400-token prefix: {milliseconds(lambda: (engine.reset(), engine.next_logits([prefix])), 2):.0f} ms")
    paths = [prefix + [100 + index] for index in range(10)]
    engine.next_logits(paths)
    steps = iter(range(1000))

    def step() -> None:
        token = next(steps)
        for path in paths:
            path.append(200 + token)
        engine.next_logits(paths)
    print(f"10 branching paths, one step: {milliseconds(step, 3):.0f} ms")
    judge = [prefix + tokens[1400 + 60 * order: 1460 + 60 * order] for order in range(2)]
    judge_ms = milliseconds(lambda: engine.judge_logits([state + [9] for state in judge], 1400), 1)
    print(f"judge pair over a cached 1,400-token prefix (2 x 61 new tokens): {judge_ms:.0f} ms")

    states = [prefix[:500] + [7, 8], prefix[:500] + [7, 9], prefix[:800], prefix[:300] + [5]]
    fresh = TrieEngine(model)
    fresh.next_logits([prefix[:500]])
    tree = fresh.next_logits(states)
    full = torch.stack([model(input_ids=torch.tensor([state])).logits[0, -1].float() for state in states])
    print(f"max abs logit difference trie vs full forward: {float((tree - full).abs().max()):.2e}")

    trie, reference = TrieEngine(model), ReferenceEngine(model)
    root = tokens[:300]
    calls = [[root]] + [[root + [100 + index] + [7] * step for index in range(10)] for step in range(4)]
    for name, lm in (("trie", trie), ("reference", reference)):
        seconds = milliseconds(lambda lm=lm: [lm.next_logits(call) for call in calls], 1) / 1000
        print(f"{name}: 10 paths x 4 tokens after 300: {seconds:.2f} s, {lm.stats.as_dict()}")


if __name__ == "__main__":
    main()
