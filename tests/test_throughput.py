"""`bench --concurrency`'s step figures: engine steps per simulation and tokens per step (rain/tools/throughput.py).

vLLM's come from its metrics snapshot (`step_totals`, checked here on a hand-made snapshot); the trie engine's from
each search's forward calls (checked on fake searches whose counts are known in advance).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fakes import EOS, FakeCodec, FakeEmbedder, FakeJudge, FakeLM

from rain.backends.vllm_runtime import STEP_TOKENS_METRIC, step_totals
from rain.core.config import RainConfig
from rain.core.prompts import Conversation
from rain.core.search import Backends, Search
from rain.tools.throughput import Level, engine_steps, throughput


@dataclass
class Histogram:                     # the fields vllm.v1.metrics.reader.Histogram has
    name: str
    labels: dict
    count: int
    sum: float


@dataclass
class Counter:
    name: str
    labels: dict
    value: int


def test_vllm_steps_are_the_iteration_histograms_count_and_sum_over_engines():
    snapshot = [Counter("vllm:generation_tokens", {}, 999),
                Histogram(STEP_TOKENS_METRIC, {"engine": "0"}, count=40, sum=1210.0),
                Histogram("vllm:time_to_first_token_seconds", {"engine": "0"}, count=7, sum=3.5),
                Histogram(STEP_TOKENS_METRIC, {"engine": "1"}, count=2, sum=30.0)]
    assert step_totals(snapshot) == (42, 1240)
    assert step_totals([]) == (0, 0)


class FakeServer:
    """A shared engine's cumulative counter, as `VllmEngine.steps` reports it."""

    def __init__(self):
        self.calls = [(100, 2000), (130, 2600)]

    def steps(self):
        return self.calls.pop(0)


class FakeRuntime:
    """Searches on FakeLM: each has its own counters, like the trie engine's one engine per search."""

    def __init__(self, server=None):
        if server is not None:
            self.server = server

    def conversation(self, question, config, prompt_format):
        return Conversation(question, (3, 4), ":", frozenset({EOS}), None, "fake")

    def search(self, conversation, config):
        return Search(Backends(FakeLM(), FakeCodec(), FakeJudge(), FakeEmbedder()), conversation, config)


CONFIG = RainConfig(sims_per_move=2, max_moves=1, max_new_tokens=4, seed=0)


def run_alone(runtime, seed):
    search = runtime.search(runtime.conversation("q", CONFIG, "fake"), RainConfig(**{**CONFIG.to_dict(), "seed": seed}))
    for _ in search.run():
        pass
    return search


def test_trie_steps_are_the_searches_forward_calls():
    runtime = FakeRuntime()
    level = throughput(runtime, CONFIG, 3, "fake", rounds=2)
    alone = [run_alone(runtime, seed).compute_stats() for seed in range(6)]         # 2 rounds of 3: seeds 0-5
    assert level.steps == sum(stats.forward_calls for stats in alone) > 0
    assert level.tokens == sum(stats.forwarded_tokens for stats in alone)
    assert (level.concurrency, level.answers, level.simulations) == (3, 6, 6 * 2)


def test_a_shared_engine_counts_the_steps_between_before_and_after():
    level = throughput(FakeRuntime(FakeServer()), CONFIG, 2, "fake")
    assert (level.steps, level.tokens) == (30, 600)
    assert engine_steps(FakeRuntime(), []) == (0, 0)


def test_the_throughput_line_keeps_its_fields_and_adds_the_step_figures():
    line = Level(concurrency=8, answers=16, simulations=48, steps=120, tokens=3000, seconds=24.0).line("vllm")
    assert line == ("throughput: backend=vllm concurrency=8 simulations_per_s=2.000 answers_per_min=40.000 "
                    "steps_per_simulation=2.500 tokens_per_step=25.00")
    assert re.fullmatch(r"throughput: backend=\w+ concurrency=\d+ simulations_per_s=[\d.]+ answers_per_min=[\d.]+ "
                        r"steps_per_simulation=[\d.]+ tokens_per_step=[\d.]+", line)


def test_a_batching_backend_serves_more_visitors_at_once(monkeypatch):
    """The app's defaults follow $RAIN_BACKEND: one vLLM engine batches its visitors into the same steps."""
    from rain.runs.runtimes import BACKEND_ENV, serving_defaults

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert serving_defaults() == serving_defaults("trie") == (2, 16)
    monkeypatch.setenv(BACKEND_ENV, "vllm")
    assert serving_defaults() == serving_defaults("vllm") == (16, 64)
