"""The Best-of-N lane: N sampled answers under RAIN's own self-judge, the kept one, and its cost beside RAIN's.

It shows the paper's "repeated" baseline (Table 5), which spends compute on the same judge but never rewinds, so
the page can show what the search adds. The lane folds the library's progress items (`rain.runs.best_of_n.Sample`,
then `BestOfN`) from the run's session and the record's stats; it never runs anything. Its result travels in the
record's free-form `stats["best_of_n"]` (`BestOfN.to_dict`; the schema allows any object there), so an exported
run carries it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rain.runs.best_of_n import DEFAULT_N, DEFAULT_TEMPERATURE, BestOfN, BestOfNEvent, Sample
from rain.core.config import ConfigError
from rain.runs.session import BestOfNSettings, RunStats
from ui.render import ESC, text_html, tone

N_RANGE = (1, 16)
TEMPERATURE_RANGE = (0.05, 3.0)


def parse_best_of_n(enabled: Any, n: Any, temperature: Any) -> BestOfNSettings | None:
    """The lane's switch and knobs from the page or the API, checked before any compute; None when off.

    Raises ConfigError (naming the knob) for values out of the page's ranges; ignores them when the lane is off.
    """
    if not enabled:
        return None
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
    return BestOfNSettings(int(count), temp)


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

    @classmethod
    def from_stats(cls, stats: RunStats) -> "Lane | None":
        """The lane of a recorded run (import, replay), or None when it has none or it is malformed."""
        result = stats.best_of_n
        return cls(len(result.samples), result.temperature, list(result.samples), result) if result else None


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


def _cost_rows(lane: Lane, stats: RunStats) -> str:
    """seconds and forward calls of vanilla, RAIN and Best-of-N, each also as a multiple of vanilla's time."""
    vanilla = stats.vanilla.seconds if stats.vanilla else None
    bon = lane.result
    rows = [("vanilla", vanilla, stats.vanilla.forward_calls if stats.vanilla else None),
            ("RAIN", stats.seconds, stats.rain.forward_calls if stats.rain else None),
            (f"Best-of-{lane.n}", bon.seconds if bon else None, bon.stats.get("forward_calls") if bon else None)]
    cells = []
    for name, seconds, calls in rows:
        times = f"{seconds / vanilla:.1f}×" if seconds is not None and vanilla else "–"
        cells.append(f'<tr><td>{ESC(name)}</td><td>{f"{seconds:.1f} s" if seconds is not None else "…"}</td>'
                     f'<td>{calls if calls is not None else "…"}</td><td>{times}</td></tr>')
    return ('<table class="bon-cost"><tr><th>cost</th><th>time</th><th>forward calls</th><th>× vanilla</th>'
            '</tr>' + "".join(cells) + "</table>")


def bon_html(lane: Lane | None, stats: RunStats | None = None) -> str:
    """The samples as they finish (the kept one highlighted at the end) and the three methods' costs."""
    if lane is None:
        return OFF_HINT
    kept = lane.result.index if lane.result is not None else None
    items = [_sample_html(s, s.index == kept) for s in lane.samples]
    if lane.result is None and len(lane.samples) < lane.n:
        items.append(f'<li class="pending">sampling {len(lane.samples) + 1} of {lane.n} '
                     f'(temperature {lane.temperature:g}) …</li>')
    body = f'<ol class="bon-samples">{"".join(items)}</ol>'
    return body + _cost_rows(lane, stats or RunStats())
