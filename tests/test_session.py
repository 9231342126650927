"""rain/runs/session.py on fakes: one stream (vanilla, RAIN, Best-of-N, record), one stats vocabulary, one Best-of-N JSON."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from fakes import FakeRuntime
from rain.runs import session as session_module
from rain.runs.best_of_n import BestOfN, Sample
from rain.core.config import ConfigError, preset
from rain.core.events import Event, Finished
from rain.core.export import dumps, loads, nodes_of
from rain.core.replay import rebuild
from rain.core.search import Search
from rain.runs.session import (BEST_OF_N_KEY, BestOfNSettings, DivergenceStats, Prepared, Recorded, RunRequest,
                               RunStats, SearchCost, VanillaCost, VanillaDone, VanillaText, final_record, run_session)


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


def test_parts_switch_off():
    runtime = FakeRuntime()
    items = list(run_session(runtime, RunRequest("q", CONFIG, vanilla=False)))
    assert not any(isinstance(i, (VanillaText, VanillaDone, Sample)) for i in items)
    assert "vanilla_seconds" not in items[-1].record.stats and "simulations" in items[-1].record.stats


def kept_generators(monkeypatch, runtime):
    """Keep a reference to every inner generator the session starts (RAIN's `Search.run`, the Best-of-N lane) and
    mark when vanilla's stream ends: a generator the session only drops would stay open while referenced."""
    inner: dict[str, list] = {"rain": [], "best_of_n": [], "vanilla_ended": []}
    real_search, real_lane, real_vanilla = runtime.search, session_module.best_of_n, runtime.vanilla_stream

    def search(*args, **kwargs):
        found = real_search(*args, **kwargs)
        found.run = lambda: inner["rain"].append(Search.run(found)) or inner["rain"][-1]
        return found

    def lane(*args):
        inner["best_of_n"].append(real_lane(*args))
        return inner["best_of_n"][-1]

    def vanilla(*args, **kwargs):
        try:
            yield from real_vanilla(*args, **kwargs)
        finally:
            inner["vanilla_ended"].append(True)

    monkeypatch.setattr(runtime, "search", search)
    monkeypatch.setattr(runtime, "vanilla_stream", vanilla)
    monkeypatch.setattr(session_module, "best_of_n", lane)
    return inner


@pytest.mark.parametrize("part", [VanillaText, Event, Sample])
def test_closing_the_stream_closes_the_part_running(monkeypatch, part):
    """Stop in the app closes the session's stream; the part it is in (vanilla, RAIN's search, the Best-of-N lane)
    is closed with it, not left suspended."""
    runtime = FakeRuntime()
    inner = kept_generators(monkeypatch, runtime)
    stream = run_session(runtime, RunRequest("q", CONFIG, best_of_n=BestOfNSettings(4)))
    for item in stream:
        if isinstance(item, part):
            break
    running = {VanillaText: None, Event: "rain", Sample: "best_of_n"}[part]
    if running:
        assert inspect.getgeneratorstate(inner[running][0]) == inspect.GEN_SUSPENDED
    else:
        assert inner["vanilla_ended"] == [] and inner["rain"] == []
    stream.close()
    if running:
        assert inspect.getgeneratorstate(inner[running][0]) == inspect.GEN_CLOSED
    else:
        assert inner["vanilla_ended"] == [True] and inner["rain"] == []


@pytest.mark.parametrize("n, temperature", [(0, 1.0), (2.5, 1.0), (True, 1.0), (2, 0.0), (2, -1.0)])
def test_best_of_n_settings_are_validated_on_construction(n, temperature):
    with pytest.raises(ConfigError, match="best-of-N"):
        BestOfNSettings(n, temperature)


# --- the record's stats: one typed shape (RunStats) under today's JSON keys ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent
STORED = sorted((ROOT / "assets" / "trees").glob("*.json")) + sorted((ROOT / "tests" / "golden").glob("*.json"))


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.name)
def test_every_shipped_and_golden_tree_s_stats_round_trip_through_run_stats(path):
    data = json.loads(path.read_text()).get("stats", {})
    stats = RunStats.from_dict(data)
    assert stats.to_dict() == data and json.dumps(stats.to_dict(), sort_keys=True) == json.dumps(data, sort_keys=True)
    assert RunStats.from_dict(stats.to_dict()) == stats
    assert stats.other == {}                       # every key of every shipped file has its typed field
    if "vanilla_seconds" in data:
        assert (stats.vanilla.seconds, stats.vanilla.tokens, stats.rain_over_vanilla) == \
            (data["vanilla_seconds"], data["vanilla_tokens"], data["rain_over_vanilla"])
    if data:
        assert (stats.rain.simulations, stats.rain.forward_calls) == (data["simulations"], data["forward_calls"])


def test_a_session_s_stats_are_typed_and_keep_today_s_keys_in_today_s_order():
    items = list(run_session(FakeRuntime(), RunRequest("how to pick a lock", CONFIG, best_of_n=BestOfNSettings(2))))
    data = items[-1].record.stats
    vanilla, search, best = (next(i for i in items if isinstance(i, kind)) for kind in (VanillaDone, Finished, BestOfN))
    stats = RunStats.from_dict(data)
    assert stats.other == {} and stats.engine.engine == "fake" and stats.divergence is not None
    assert stats.rain == SearchCost(**search.stats) and stats.best_of_n.to_dict() == best.to_dict()
    assert stats.vanilla == VanillaCost(round(vanilla.seconds, 3), vanilla.tokens, vanilla.stats["forward_calls"],
                                        vanilla.stats["forwarded_tokens"])
    assert list(data) == [*search.stats, "engine", "engine_note", "divergence_token", "divergence_move", "vanilla_seconds", "vanilla_tokens",
                          "vanilla_forward_calls", "vanilla_forwarded_tokens", "rain_over_vanilla", BEST_OF_N_KEY]
    assert RunStats.from_dict(stats.to_dict()) == RunStats.from_dict(loads(dumps(items[-1].record)).stats)


def test_run_stats_keep_what_they_do_not_know_and_a_malformed_best_of_n_as_it_is():
    data = {"simulations": 3, "engine": "trie", "divergence_token": None, "divergence_move": None,
            "a_newer_key": [1], BEST_OF_N_KEY: {"samples": "junk"}}
    stats = RunStats.from_dict(data)
    assert stats.best_of_n is None and stats.other == {"a_newer_key": [1], BEST_OF_N_KEY: {"samples": "junk"}}
    assert stats.divergence == DivergenceStats(None, None) and stats.to_dict() == data
    assert RunStats.from_dict({}).to_dict() == {} and RunStats.from_dict({"divergence_token": 4}).divergence.token == 4
