"""The Best-of-N lane: N sampled answers under RAIN's own self-judge, the kept one, and its cost beside RAIN's.

It shows the paper's "repeated" baseline (Table 5), which spends compute on the same judge but never rewinds, so
the page can show what the search adds. The lane folds the library's progress items (`rain.best_of_n.Sample`,
then `BestOfN`) and the run record's stats; it never touches the search. Its result travels in the record's
free-form `stats["best_of_n"]` (the schema allows any object there), so an exported run carries it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Generator, Mapping

from rain.best_of_n import DEFAULT_N, DEFAULT_TEMPERATURE, BestOfN, BestOfNEvent, Sample, best_of_n
from rain.config import ConfigError, RainConfig
from ui.render import ESC, text_html, tone

N_RANGE = (1, 16)
TEMPERATURE_RANGE = (0.05, 3.0)
STATS_KEY = "best_of_n"


@dataclass(frozen=True)
class BonSettings:
    """The lane's switch and knobs, checked once so a bad API value is refused before any compute."""

    enabled: bool = False
    n: int = DEFAULT_N
    temperature: float = DEFAULT_TEMPERATURE

    @classmethod
    def parse(cls, enabled: Any, n: Any, temperature: Any) -> "BonSettings":
        """Raises ConfigError (with the knob's name) for values out of range; ignores them when off."""
        if not enabled:
            return cls(False)
        try:
            count, temp = float(DEFAULT_N if n is None else n), float(DEFAULT_TEMPERATURE if temperature is None
                                                                       else temperature)
        except (TypeError, ValueError):
            raise ConfigError(f"best-of-N n and temperature must be numbers, got {n!r} and {temperature!r}") from None
        if not math.isfinite(count) or count != int(count) or not N_RANGE[0] <= count <= N_RANGE[1]:
            raise ConfigError(f"best-of-N n must be a whole number from {N_RANGE[0]} to {N_RANGE[1]}, got {n!r}")
        if not math.isfinite(temp) or not TEMPERATURE_RANGE[0] <= temp <= TEMPERATURE_RANGE[1]:
            raise ConfigError(f"best-of-N temperature must be from {TEMPERATURE_RANGE[0]} to "
                              f"{TEMPERATURE_RANGE[1]}, got {temperature!r}")
        return cls(True, int(count), temp)


@dataclass
class Lane:
    """What the lane shows: the samples judged so far and, at the end, the library's `BestOfN`."""

    n: int
    temperature: float
    samples: list[Sample] = field(default_factory=list)
    result: BestOfN | None = None

    def apply(self, item: BestOfNEvent) -> None:
        if isinstance(item, BestOfN):
            self.result, self.samples = item, list(item.samples)
        else:
            self.samples.append(item)

    def to_stats(self) -> dict[str, Any]:
        """The finished lane as plain JSON for the record's stats."""
        if self.result is None:
            return {}
        result = self.result
        return {"n": self.n, "temperature": self.temperature, "answer": result.answer, "score": result.score,
                "index": result.index, "seconds": round(result.seconds, 3),
                "forward_calls": result.stats.get("forward_calls"),
                "forwarded_tokens": result.stats.get("forwarded_tokens"),
                "samples": [{"index": s.index, "text": s.text, "score": s.score, "tokens": s.tokens,
                             "seconds": round(s.seconds, 3)} for s in result.samples]}

    @classmethod
    def from_stats(cls, stats: Mapping[str, Any] | None) -> "Lane | None":
        """The lane of a recorded run (import, replay), or None when it has none or it is malformed."""
        data = (stats or {}).get(STATS_KEY)
        if not isinstance(data, Mapping):
            return None
        try:
            samples = [Sample(int(s["index"]), str(s["text"]), float(s["score"]), int(s["tokens"]),
                              float(s.get("seconds", 0.0))) for s in data["samples"]]
            result = BestOfN(str(data["answer"]), float(data["score"]), int(data["index"]), samples,
                             float(data["seconds"]), {k: data[k] for k in ("forward_calls", "forwarded_tokens")
                                                      if data.get(k) is not None})
            return cls(int(data["n"]), float(data["temperature"]), list(samples), result)
        except (KeyError, TypeError, ValueError):
            return None


def lane_items(runtime: Any, conversation: Any, config: RainConfig, settings: BonSettings
               ) -> Generator[BestOfNEvent, None, BestOfN]:
    """The library's Best-of-N on its own fresh engine (so its forward calls are its own) and RAIN's judge."""
    lm = runtime.engine(config)
    return best_of_n(lm, runtime.codec, runtime.judge(lm, config), conversation, config, settings.n,
                     settings.temperature)


# --- rendering ------------------------------------------------------------------------------------------

OFF_HINT = ('<div class="bon-off">Best-of-N lane: not run. Tick “Best-of-N lane” and Run to sample N answers '
            'and keep the one the model\'s own judge scores best.</div>')
WAITING = ('<div class="bon-samples"><div class="placeholder">Best-of-N samples N whole answers after RAIN, '
           'judges each with the same self-judge and keeps the best.</div></div>')


def _sample_html(sample: Sample, kept: bool) -> str:
    badge = '<span class="verdict done">kept</span> ' if kept else ""
    return (f'<li class="sample{" kept" if kept else ""}" data-index="{sample.index}" data-score="{sample.score!r}">'
            f'<span class="head">#{sample.index + 1} <span class="verdict {tone(sample.score)}">judge '
            f'{sample.score:+.2f}</span> {badge}<span class="meta">{sample.tokens} tokens · '
            f'{sample.seconds:.1f} s</span></span><span class="text">{text_html(sample.text)}</span></li>')


def _cost_rows(lane: Lane, stats: Mapping[str, Any]) -> str:
    """seconds and forward calls of vanilla, RAIN and Best-of-N, each also as a multiple of vanilla's time."""
    vanilla = stats.get("vanilla_seconds")
    bon = lane.result
    rows = [("vanilla", vanilla, stats.get("vanilla_forward_calls")),
            ("RAIN", stats.get("seconds"), stats.get("forward_calls")),
            (f"Best-of-{lane.n}", bon.seconds if bon else None, bon.stats.get("forward_calls") if bon else None)]
    cells = []
    for name, seconds, calls in rows:
        times = f"{seconds / vanilla:.1f}×" if seconds is not None and vanilla else "–"
        cells.append(f'<tr><td>{ESC(name)}</td><td>{f"{seconds:.1f} s" if seconds is not None else "…"}</td>'
                     f'<td>{calls if calls is not None else "…"}</td><td>{times}</td></tr>')
    return ('<table class="bon-cost"><tr><th>cost</th><th>time</th><th>forward calls</th><th>× vanilla</th>'
            '</tr>' + "".join(cells) + "</table>")


def bon_html(lane: Lane | None, stats: Mapping[str, Any] | None = None) -> str:
    """The samples as they finish (the kept one highlighted at the end) and the three methods' costs."""
    if lane is None:
        return OFF_HINT
    kept = lane.result.index if lane.result is not None else None
    items = [_sample_html(s, s.index == kept) for s in lane.samples]
    if lane.result is None and len(lane.samples) < lane.n:
        items.append(f'<li class="pending">sampling {len(lane.samples) + 1} of {lane.n} '
                     f'(temperature {lane.temperature:g}) …</li>')
    body = f'<ol class="bon-samples">{"".join(items)}</ol>'
    return body + _cost_rows(lane, stats or {})
