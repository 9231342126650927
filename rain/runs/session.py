"""One run of one prompt as one typed stream: vanilla, RAIN, Best-of-N, then the record.

`run_session(runtime, request)` is what every front end consumes (the app, `generate`, `run`, `eval`, `bench`):
it yields `Prepared` (the record's metadata, before any compute), `VanillaText` per token and `VanillaDone`, the
search's own events (rain/core/events.py), `Sample` per Best-of-N answer and its `BestOfN`, and `Recorded` with the
run record: once after RAIN when Best-of-N follows (so a front end can keep it if the user stops), and once at
the end with `complete=True`. Each part runs on its own fresh engine, so its compute counters are its own.

The record's stats use one vocabulary (`run_stats`): the search's `Finished.stats`, the engine and judge scale
(`Runtime.engine_stats`), `vanilla_*`, `rain_over_vanilla` and `best_of_n` (`BestOfN.to_dict`). The request's
`judge_logit_scale="auto"` is resolved first (`Runtime.resolved`), so the record carries the number used. Closing the generator (Stop in the app) closes whichever part is running.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from rain.runs.best_of_n import DEFAULT_N, DEFAULT_TEMPERATURE, BestOfN, Sample, best_of_n
from rain.core.clock import ComputeClock, timed
from rain.core.config import ConfigError, RainConfig
from rain.core.events import Event, Finished
from rain.core.export import RunRecord, nodes_of
from rain.core.prompts import PromptFormat
from rain.core.replay import rebuild
from rain.runs.teaching import divergence_field, divergence_stats

BEST_OF_N_KEY = "best_of_n"        # the record's stats key of the Best-of-N result


@dataclass(frozen=True)
class BestOfNSettings:
    """Best-of-N after RAIN: N answers sampled at `temperature`, each judged by the run's self-judge."""

    n: int = DEFAULT_N
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"best-of-N n must be a whole number >= 1, got {self.n!r}")
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ConfigError(f"best-of-N temperature must be > 0, got {self.temperature!r}")


@dataclass(frozen=True)
class RunRequest:
    """What to run on one prompt. `vanilla`/`rain` switch those parts; `best_of_n` None skips that lane."""

    question: str
    config: RainConfig
    prompt_format: PromptFormat = "auto"
    best_of_n: BestOfNSettings | None = None
    vanilla: bool = True
    rain: bool = True
    reference: bool = False        # RAIN on the reference engine (the authors' compute pattern; `bench`)


# --- the stream's items (the search's events pass through as they are) ----------------------------------

@dataclass(frozen=True)
class Prepared:
    """The run is set up (prompt tokenised, judge built): `record` holds its metadata and no events yet."""

    record: RunRecord


@dataclass(frozen=True)
class VanillaText:
    """The vanilla answer so far (one more token)."""

    text: str
    tokens: int


@dataclass(frozen=True)
class VanillaDone:
    text: str
    tokens: int
    seconds: float                 # decoding time only (time spent by the consumer between tokens excluded)
    stats: dict[str, Any] = field(default_factory=dict)     # the vanilla engine's ComputeStats.as_dict()
    token_ids: list[int] = field(default_factory=list)      # the answer's tokens (rain/runs/teaching.py divergence)


@dataclass(frozen=True)
class Recorded:
    """The run record so far; `complete` is False only for the copy sent between RAIN and Best-of-N."""

    record: RunRecord
    complete: bool = True


SessionItem = Union[Prepared, VanillaText, VanillaDone, Event, Sample, BestOfN, Recorded]


def run_stats(search_stats: dict[str, Any] | None, vanilla: VanillaDone | None, bon: BestOfN | None,
              engine_stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record's stats: the search's, the engine's and the judge scale's (`Runtime.engine_stats`), then
    vanilla's (prefixed `vanilla_`) and the ratio, then Best-of-N."""
    stats = {**(search_stats or {}), **(engine_stats or {})}
    if vanilla is not None:
        stats.update(vanilla_seconds=round(vanilla.seconds, 3), vanilla_tokens=vanilla.tokens,
                     vanilla_forward_calls=vanilla.stats.get("forward_calls", 0),
                     vanilla_forwarded_tokens=vanilla.stats.get("forwarded_tokens", 0))
        if "seconds" in stats:
            stats["rain_over_vanilla"] = round(stats["seconds"] / max(vanilla.seconds, 1e-9), 2)
    if bon is not None:
        stats[BEST_OF_N_KEY] = bon.to_dict()
    return stats


def _vanilla(runtime, conversation, config: RainConfig) -> Iterator[VanillaText | VanillaDone]:
    """Greedy vanilla on its own engine; its clock runs only while this generator computes."""
    lm, clock = runtime.engine(config), ComputeClock()
    text, tokens, ids = "", 0, []
    for text in timed(runtime.vanilla_stream(conversation, config, lm=lm, token_ids=ids), clock):
        tokens += 1
        yield VanillaText(text, tokens)
    yield VanillaDone(text, tokens, clock.seconds(), lm.stats.as_dict(), ids)


def run_session(runtime, request: RunRequest) -> Iterator[SessionItem]:
    """Vanilla, then RAIN, then Best-of-N (each when asked), as one stream; see the module docstring."""
    config = runtime.resolved(request.config)      # judge_logit_scale "auto" -> this model's number, recorded
    conversation = runtime.conversation(request.question, config, request.prompt_format)
    search = runtime.search(conversation, config, reference=request.reference) if request.rain else None
    record = runtime.record(conversation, config, *((search.backends.judge, search.backends.lm) if search else ()))
    engine_stats = record.stats
    yield Prepared(record)

    vanilla: VanillaDone | None = None
    if request.vanilla:
        for item in _vanilla(runtime, conversation, config):
            if isinstance(item, VanillaDone):
                vanilla = item
            yield item
        record = dataclasses.replace(record, vanilla=vanilla.text)

    search_stats: dict[str, Any] | None = None
    if search is not None:
        events: list[Event] = []
        stream = search.run()
        try:
            for event in stream:
                events.append(event)
                yield event
        finally:
            stream.close()
        finished = events[-1] if events and isinstance(events[-1], Finished) else None
        search_stats = finished.stats if finished else None
        tree = rebuild(events)
        extras = divergence_field(tree, vanilla.token_ids if vanilla is not None else None)
        engine_stats = {**engine_stats, **divergence_stats(extras)}
        record = dataclasses.replace(record, events=events, nodes=nodes_of(tree), answer=search.answer(),
                                     extras={**record.extras, **extras},
                                     stats=run_stats(search_stats, vanilla, None, engine_stats))
        if request.best_of_n is not None:
            yield Recorded(record, complete=False)

    bon: BestOfN | None = None
    if request.best_of_n is not None:
        lm = runtime.engine(config)        # its own engine: its forward calls are Best-of-N's
        lane = best_of_n(lm, runtime.codec, runtime.judge(lm, config), conversation, config,
                         request.best_of_n.n, request.best_of_n.temperature)
        try:
            for item in lane:
                if isinstance(item, BestOfN):
                    bon = item
                yield item
        finally:
            lane.close()
    yield Recorded(dataclasses.replace(record, stats=run_stats(search_stats, vanilla, bon, engine_stats)))


def final_record(items: Iterator[SessionItem]) -> RunRecord:
    """Drain a session and return its complete record (for callers that need no progress)."""
    record = None
    for item in items:
        if isinstance(item, Recorded) and item.complete:
            record = item.record
    assert record is not None, "a session always ends with a complete Recorded"
    return record
