"""One run of one prompt as one typed stream: vanilla, RAIN, Best-of-N, then the record.

`run_session(runtime, request)` is what every front end consumes (the app, `generate`, `run`, `eval`, `bench`):
it yields `Prepared` (the record's metadata, before any compute), `VanillaText` per token and `VanillaDone`, the
search's own events (rain/core/events.py), `Sample` per Best-of-N answer and its `BestOfN`, and `Recorded` with the
run record: once after RAIN when Best-of-N follows (so a front end can keep it if the user stops), and once at
the end with `complete=True`. Each part runs on its own fresh engine, so its compute counters are its own.

The record's stats have one typed shape, `RunStats` (RAIN's `SearchCost`, the `EngineStats`, the divergence,
`VanillaCost`, `rain_over_vanilla` and the `BestOfN` result), written by `run_stats` and read back by the CLI, eval,
bench and the page with `RunStats.from_dict(record.stats)`; its `to_dict` is the JSON the record carries (bare
keys, `vanilla_*`, `divergence_*`, nested `best_of_n`). The request's `judge_logit_scale="auto"` is resolved first
(`Runtime.resolved`), so the record carries the number used. Closing the generator (Stop in the app) closes
whichever part is running.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping, Union

from rain.core.clock import ComputeClock, timed
from rain.core.config import ConfigError, RainConfig
from rain.core.events import Event, Finished
from rain.core.export import RunRecord, nodes_of
from rain.core.lm import Judge, LanguageModel
from rain.core.prompts import Conversation, PromptFormat
from rain.core.replay import rebuild
from rain.runs.best_of_n import DEFAULT_N, DEFAULT_TEMPERATURE, BestOfN, Sample, best_of_n
from rain.runs.runtimes import Runtime
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


# --- the record's stats: one typed shape, written here and read by every front end ------------------------------

@dataclass(frozen=True)
class Costs:
    """A group of the record's stats keys, `PREFIX + field`; a field left None was not recorded (older files) and
    is not written."""

    PREFIX: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(cls.PREFIX + f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        values = ((self.PREFIX + f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        return {key: value for key, value in values if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The group's keys in `data`, or None when it has none of them."""
        found = {f.name: data[cls.PREFIX + f.name] for f in dataclasses.fields(cls) if cls.PREFIX + f.name in data}
        return cls(**found) if found else None


@dataclass(frozen=True)
class SearchCost(Costs):
    """RAIN's lane: the search's `Finished.stats` (rain/core/search.py `Search.stats`, engine counters included)."""

    simulations: int | None = None
    moves: int | None = None
    answer_tokens: int | None = None
    nodes: int | None = None
    nodes_evicted: int | None = None
    evaluations: int | None = None
    eval_cache_hits: int | None = None
    seconds: float | None = None
    seconds_per_simulation: float | None = None
    forward_calls: int | None = None
    forwarded_tokens: int | None = None
    distinct_tokens: int | None = None
    recompute_ratio: float | None = None
    judge_prefix_hit_rate: float | None = None
    kv_bytes: int | None = None
    kv_peak_bytes: int | None = None
    evicted_tokens: int | None = None
    preloaded_tokens: int | None = None


@dataclass(frozen=True)
class EngineStats(Costs):
    """What served the run and the judge scale it used (`Runtime.engine_stats`)."""

    engine: str | None = None
    engine_note: str | None = None
    judge_logit_scale: float | str | None = None
    judge_scale_source: str | None = None
    judge_scale_quantile_gap: float | None = None
    judge_scale_exchanges: int | None = None


@dataclass(frozen=True)
class DivergenceStats(Costs):
    """Where RAIN's answer leaves vanilla's (rain/runs/teaching.py `divergence_stats`): both None when identical."""

    PREFIX: ClassVar[str] = "divergence_"
    token: int | None = None
    move: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"divergence_token": self.token, "divergence_move": self.move}     # None is a value here


@dataclass(frozen=True)
class VanillaCost(Costs):
    """Vanilla's lane: its decoding time (`VanillaDone.seconds`, rounded), answer tokens and engine counters."""

    PREFIX: ClassVar[str] = "vanilla_"
    seconds: float | None = None
    tokens: int | None = None
    forward_calls: int | None = None
    forwarded_tokens: int | None = None

    @classmethod
    def of(cls, done: VanillaDone) -> "VanillaCost":
        return cls(round(done.seconds, 3), done.tokens, done.stats.get("forward_calls", 0),
                   done.stats.get("forwarded_tokens", 0))


GROUPS = (SearchCost, EngineStats, DivergenceStats, VanillaCost)
RATIO_KEY = "rain_over_vanilla"


@dataclass(frozen=True)
class RunStats:
    """The record's stats: RAIN's cost, the engine, the divergence, vanilla's cost, RAIN's time over vanilla's and
    the Best-of-N result, written under today's JSON keys (bare, `vanilla_*`, `divergence_*`, nested `best_of_n`)
    in that order; keys of no group (a newer writer's) are kept in `other` as they are."""

    rain: SearchCost | None = None
    engine: EngineStats | None = None
    divergence: DivergenceStats | None = None
    vanilla: VanillaCost | None = None
    rain_over_vanilla: float | None = None
    best_of_n: BestOfN | None = None
    other: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for group in (self.rain, self.engine, self.divergence, self.vanilla):
            data.update(group.to_dict() if group is not None else {})
        if self.rain_over_vanilla is not None:
            data[RATIO_KEY] = self.rain_over_vanilla
        if self.best_of_n is not None:
            data[BEST_OF_N_KEY] = self.best_of_n.to_dict()
        return {**data, **self.other}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "RunStats":
        """Any record's stats (every shipped version); a malformed `best_of_n` is kept in `other`, unread."""
        data = dict(data or {})
        known = {key for group in GROUPS for key in group.keys()} | {RATIO_KEY}
        other = {key: value for key, value in data.items() if key not in known}
        best = other.pop(BEST_OF_N_KEY, None)
        try:
            best_of_n = BestOfN.from_dict(best) if isinstance(best, Mapping) else None
        except (KeyError, TypeError, ValueError):
            best_of_n = None
        if best is not None and best_of_n is None:
            other[BEST_OF_N_KEY] = best
        return cls(*(group.from_dict(data) for group in GROUPS[:2]), DivergenceStats.from_dict(data),
                   VanillaCost.from_dict(data), data.get(RATIO_KEY), best_of_n, other)

    @property
    def seconds(self) -> float | None:
        """RAIN's time (None when it did not run)."""
        return self.rain.seconds if self.rain is not None else None


def run_stats(search_stats: dict[str, Any] | None, vanilla: VanillaDone | None, bon: BestOfN | None,
              engine_stats: dict[str, Any] | None = None) -> RunStats:
    """The record's stats from the search's, the engine's and the judge scale's (`Runtime.engine_stats`, with the
    divergence), vanilla's run and Best-of-N's result; RAIN's time over vanilla's when both ran."""
    stats = RunStats.from_dict({**(search_stats or {}), **(engine_stats or {})})
    ratio = None
    if vanilla is not None and stats.seconds is not None:
        ratio = round(stats.seconds / max(vanilla.seconds, 1e-9), 2)
    return dataclasses.replace(stats, vanilla=VanillaCost.of(vanilla) if vanilla is not None else None,
                               rain_over_vanilla=ratio, best_of_n=bon)


def new_record(runtime: Runtime, conversation: Conversation, config: RainConfig, judge: Judge | None = None,
               lm: LanguageModel | None = None) -> RunRecord:
    """A run's record before any compute: prompt, config (resolved), what the runtime says of its model, engine and
    judge, and the engine stats as its stats; the session (and `fork`) add the events, answers and costs."""
    stats = runtime.engine_stats(config, lm)
    return RunRecord(prompt=conversation.question, config=config.to_dict(), model=runtime.model_info(stats["engine"]),
                     judge=runtime.judge_info(config, judge), events=[], nodes=nodes_of(rebuild([])), stats=stats)


def _vanilla(runtime: Runtime, conversation: Conversation, config: RainConfig) -> Iterator[VanillaText | VanillaDone]:
    """Greedy vanilla on its own engine; its clock runs only while this generator computes."""
    lm, clock = runtime.engine(config), ComputeClock()
    text, tokens, ids = "", 0, []
    for text in timed(runtime.vanilla_stream(conversation, config, lm=lm, token_ids=ids), clock):
        tokens += 1
        yield VanillaText(text, tokens)
    yield VanillaDone(text, tokens, clock.seconds(), lm.stats.as_dict(), ids)


def run_session(runtime: Runtime, request: RunRequest) -> Iterator[SessionItem]:
    """Vanilla, then RAIN, then Best-of-N (each when asked), as one stream; see the module docstring."""
    config = runtime.resolved(request.config)      # judge_logit_scale "auto" -> this model's number, recorded
    conversation = runtime.conversation(request.question, config, request.prompt_format)
    search = runtime.search(conversation, config, reference=request.reference) if request.rain else None
    record = new_record(runtime, conversation, config, *((search.backends.judge, search.backends.lm) if search else ()))
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
                                     stats=run_stats(search_stats, vanilla, None, engine_stats).to_dict())
        if request.best_of_n is not None:
            yield Recorded(record, complete=False)

    bon: BestOfN | None = None
    if request.best_of_n is not None:
        lm = runtime.engine(config)        # its own engine: its forward calls are Best-of-N's
        lane = best_of_n(runtime, lm, runtime.judge(lm, config), conversation, config,
                         request.best_of_n.n, request.best_of_n.temperature)
        try:
            for item in lane:
                if isinstance(item, BestOfN):
                    bon = item
                yield item
        finally:
            lane.close()
    yield Recorded(dataclasses.replace(record, stats=run_stats(search_stats, vanilla, bon, engine_stats).to_dict()))


def final_record(items: Iterator[SessionItem]) -> RunRecord:
    """Drain a session and return its complete record (for callers that need no progress)."""
    record = None
    for item in items:
        if isinstance(item, Recorded) and item.complete:
            record = item.record
    assert record is not None, "a session always ends with a complete Recorded"
    return record
