"""How long a paper-budget answer would take on this machine, shown next to the budget buttons before Run, and
whether the paper budget is the app's default.

The figure is measured, not assumed, and comes from the library: the precision probe that chose the generation
mode at the model's first start on this machine (rain/precision.py `SpeedProbe`, stored on disk) estimates a
simulation's seconds (`Runtime.simulation_estimate`); every finished run replaces it with its own seconds per
simulation. It is multiplied by the simulations a paper-budget answer takes: typically `TYPICAL_SIMULATIONS`, what
`bench --paper` counted for the embedded model's whole answer (a re-rooted move keeps its subtree's visits, so a
move seldom needs its whole 15-simulation window), at most `paper_simulations()`: moves to reach 128 tokens with
the 1, 2, 4, 10 token-set schedule, times that window. The text gives both. Where the estimate is at most
`DEFAULT_SECONDS`, the page opens with the paper budget; elsewhere it is one click away.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from rain.config import preset
from rain.runtime import PAPER_SIMULATIONS as TYPICAL_SIMULATIONS

DEFAULT_SECONDS = 60             # a paper-budget answer this fast (estimated) makes the paper budget the default


def paper_simulations(config=None) -> int:
    """Moves a full-length answer needs under the token-set schedule, times the minimum window per move."""
    config = config or preset("hh")
    tokens = moves = 0
    while tokens < config.max_new_tokens:
        tokens += config.token_set_length(moves)
        moves += 1
    return moves * config.min_window


PAPER_SIMULATIONS = paper_simulations()   # 16 moves x 15 = 240 for the hh preset: the most


@dataclass
class Measured:
    seconds_per_simulation: float
    source: str                  # "probe" or "last run"


_MEASURED: dict[str, Measured] = {}   # model spec -> latest figure (the app's per-process state, as its runtimes)
_LOCK = threading.Lock()


def probe(spec: str, runtime) -> Measured | None:
    """The library's estimate for `runtime` (its stored precision probe; None where it has none, e.g. a GPU)."""
    seconds = runtime.simulation_estimate()
    if seconds is None:
        return None
    measured = Measured(seconds, "probe")
    with _LOCK:
        _MEASURED.setdefault(spec, measured)
    return measured


def record_run(spec: str, stats: dict) -> None:
    """A finished run's own speed replaces the probe's."""
    seconds = stats.get("seconds_per_simulation")
    if seconds:
        with _LOCK:
            _MEASURED[spec] = Measured(float(seconds), "last run")


def paper_seconds(spec: str) -> float | None:
    """Estimated seconds of a typical paper-budget answer, or None while nothing is measured."""
    with _LOCK:
        measured = _MEASURED.get(spec)
    if measured is None or measured.seconds_per_simulation <= 0:
        return None
    return measured.seconds_per_simulation * TYPICAL_SIMULATIONS


def paper_is_default(spec: str) -> bool:
    """The paper budget opens the page where its answer is estimated at DEFAULT_SECONDS or less."""
    seconds = paper_seconds(spec)
    return seconds is not None and seconds <= DEFAULT_SECONDS


def estimate_text(spec: str) -> str:
    """One line for the app: the estimated paper-budget time, or that it is still being measured."""
    seconds = paper_seconds(spec)
    if seconds is None:
        return "Paper budget: estimating the time on this machine ..."
    with _LOCK:
        measured = _MEASURED[spec]
    each = measured.seconds_per_simulation
    verdict = (f"the default here: {DEFAULT_SECONDS} s or less" if seconds <= DEFAULT_SECONDS
               else f"over {DEFAULT_SECONDS} s here, so one click away")
    return (f"Paper budget: about {seconds / 60:.1f} min here ({verdict}): ~{TYPICAL_SIMULATIONS} simulations x "
            f"{each:.2f} s each (measured: {measured.source}); at most {each * PAPER_SIMULATIONS / 60:.1f} min "
            f"if every move needs its full window ({PAPER_SIMULATIONS} simulations).")
