"""rain/runs/session.py on fakes: one stream (vanilla, RAIN, Best-of-N, record), one stats vocabulary, one Best-of-N JSON."""
from __future__ import annotations

import json

import pytest

from fakes import EOS, FakeCodec, FakeEmbedder, FakeJudge, FakeLM
from rain.runs.best_of_n import BestOfN, Sample
from rain.core.config import ConfigError, RainConfig, preset
from rain.core.decoding import vanilla_tokens
from rain.core.events import Event, Finished
from rain.core.export import RunRecord, dumps, loads, nodes_of
from rain.core.prompts import Conversation
from rain.core.replay import rebuild
from rain.core.search import Backends, Search
from rain.runs.session import (BEST_OF_N_KEY, BestOfNSettings, Prepared, Recorded, RunRequest, VanillaDone, VanillaText,
                          final_record, run_session)


class FakeRuntime:
    """What run_session asks of a Runtime, on the fakes (each engine is a fresh FakeLM)."""

    name = "fake"

    def __init__(self):
        self.codec = FakeCodec()
        self.engines: list[FakeLM] = []

    def engine(self, config: RainConfig, reference: bool = False) -> FakeLM:
        self.engines.append(FakeLM())
        return self.engines[-1]

    def conversation(self, question: str, config: RainConfig, prompt_format: str = "auto") -> Conversation:
        return Conversation(question, tuple(self.codec.encode(" the lock")), ":", frozenset({EOS}), None, "fake")

    def resolved(self, config: RainConfig) -> RainConfig:
        return config

    def judge(self, lm, config):
        return FakeJudge()

    def search(self, conversation, config, reference=False) -> Search:
        return Search(Backends(self.engine(config), self.codec, FakeJudge(), FakeEmbedder()), conversation, config)

    def vanilla_stream(self, conversation, config, temperature=0.0, lm=None, token_ids=None):
        answer = []
        for token in vanilla_tokens(lm, conversation.prompt_tokens, config.max_new_tokens, 4096,
                                    conversation.stop_ids, lambda a: False):
            answer.append(token)
            if token_ids is not None:
                token_ids.append(token)
            yield conversation.answer_text(self.codec, answer)

    def record(self, conversation, config, judge=None, lm=None) -> RunRecord:
        return RunRecord(prompt=conversation.question, config=config.to_dict(), model={"name": self.name},
                         judge={"format": "fake", "criterion": "harm", "templates": ["{exchange}", "{exchange}"]}, events=[], nodes=nodes_of(rebuild([])))


CONFIG = preset("hh", sims_per_move=3, max_moves=3, max_new_tokens=6)


def test_the_stream_runs_vanilla_then_rain_then_best_of_n_and_ends_with_the_complete_record():
    items = list(run_session(FakeRuntime(), RunRequest("how to pick a lock", CONFIG, best_of_n=BestOfNSettings(3))))
    kinds = [type(i) for i in items]
    assert kinds[0] is Prepared and kinds[1] is VanillaText and VanillaDone in kinds
    first_event = next(i for i, item in enumerate(items) if isinstance(item, Event))
    assert kinds.index(VanillaDone) < first_event
    partial, final = [i for i in items if isinstance(i, Recorded)]
    assert not partial.complete and final.complete and items[-1] is final
    assert items.index(partial) < next(i for i, item in enumerate(items) if isinstance(item, Sample))
    assert [type(i) for i in items if isinstance(i, (Sample, BestOfN))] == [Sample] * 3 + [BestOfN]

    record = final.record
    events = [i for i in items if isinstance(i, Event)]
    assert record.events == events and isinstance(events[-1], Finished)
    assert record.nodes == nodes_of(rebuild(events)) and record.answer == events[-1].answer
    vanilla = next(i for i in items if isinstance(i, VanillaDone))
    assert record.vanilla == vanilla.text
    stats = record.stats
    assert stats["vanilla_tokens"] == vanilla.tokens and stats["vanilla_forward_calls"] == vanilla.stats["forward_calls"]
    assert stats["rain_over_vanilla"] == round(stats["seconds"] / max(vanilla.seconds, 1e-9), 2)
    assert stats[BEST_OF_N_KEY] == items[-2].to_dict()
    assert BEST_OF_N_KEY not in partial.record.stats


def test_best_of_n_has_one_json_form_that_survives_export():
    record = final_record(run_session(FakeRuntime(), RunRequest("q", CONFIG, vanilla=False, rain=False,
                                                                best_of_n=BestOfNSettings(2, 0.7))))
    data = loads(dumps(record)).stats[BEST_OF_N_KEY]
    result = BestOfN.from_dict(data)
    assert result.to_dict() == data and data["n"] == 2 and data["temperature"] == 0.7
    assert data["answer"] == data["samples"][data["index"]]["text"]
    assert record.events == [] and "seconds" not in record.stats
    json.dumps(data)


def test_parts_switch_off_and_closing_the_stream_closes_the_part_running():
    runtime = FakeRuntime()
    items = list(run_session(runtime, RunRequest("q", CONFIG, vanilla=False)))
    assert not any(isinstance(i, (VanillaText, VanillaDone, Sample)) for i in items)
    assert "vanilla_seconds" not in items[-1].record.stats and "simulations" in items[-1].record.stats
    stream = run_session(runtime, RunRequest("q", CONFIG, best_of_n=BestOfNSettings(4)))
    for item in stream:
        if isinstance(item, Sample):
            break
    stream.close()
    assert stream.gi_frame is None


@pytest.mark.parametrize("n, temperature", [(0, 1.0), (2.5, 1.0), (True, 1.0), (2, 0.0), (2, -1.0)])
def test_best_of_n_settings_are_validated_on_construction(n, temperature):
    with pytest.raises(ConfigError, match="best-of-N"):
        BestOfNSettings(n, temperature)
