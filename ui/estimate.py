"""How long a paper-budget answer would take on this machine, shown next to the budget buttons before Run, and
whether the paper budget is the app's default.

The figure is measured, not assumed, and comes from the library: the precision probe that chose the generation
mode at the model's first start on this machine (rain/backends/precision.py `SpeedProbe`, stored on disk) estimates a
simulation's seconds and the simulations of a typical answer (`Runtime.paper_estimate`: what `bench --paper`
counted for the embedded model; a re-rooted move keeps its subtree's visits, so a move seldom needs its whole
15-simulation window); every finished run replaces the seconds with its own per simulation. At most
`paper_simulations()`: moves to reach 128 tokens with the 1, 2, 4, 10 token-set schedule, times that window. The text gives both. Where the estimate is at most
`DEFAULT_SECONDS`, the page opens with the paper budget; elsewhere it is one click away.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from rain.core.config import PAPER_TYPICAL_SIMULATIONS, preset
from rain.runs.session import RunStats

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
    simulations: int             # of a typical paper-budget answer
    source: str                  # "probe" or "last run"


_MEASURED: dict[str, Measured] = {}   # model spec -> latest figure (the app's per-process state, as its runtimes)
_LOCK = threading.Lock()


def probe(spec: str, runtime) -> Measured | None:
    """The library's estimate for `runtime` (its stored precision probe; None where it has none, e.g. a GPU)."""
    estimate = runtime.paper_estimate()
    if estimate is None:
        return None
    measured = Measured(estimate.seconds_per_simulation, estimate.simulations, "probe")
    with _LOCK:
        _MEASURED.setdefault(spec, measured)
    return measured


def record_run(spec: str, stats: RunStats) -> None:
    """A finished run's own speed replaces the probe's, before or after the probe arrives (the probe is measured
    in the background at the model's first start; a run may finish first)."""
    seconds = stats.rain.seconds_per_simulation if stats.rain else None
    with _LOCK:
        earlier = _MEASURED.get(spec)
        if seconds:
            simulations = earlier.simulations if earlier is not None else PAPER_TYPICAL_SIMULATIONS
            _MEASURED[spec] = Measured(float(seconds), simulations, "last run")


def _measured(spec: str) -> Measured | None:
    with _LOCK:
        measured = _MEASURED.get(spec)
    return measured if measured is not None and measured.seconds_per_simulation > 0 else None


def paper_is_default(spec: str) -> bool:
    """The paper budget opens the page where its answer is estimated at DEFAULT_SECONDS or less."""
    measured = _measured(spec)
    return measured is not None and measured.seconds_per_simulation * measured.simulations <= DEFAULT_SECONDS


def estimate_text(spec: str) -> str:
    """One line for the app: the estimated paper-budget time, or that it is still being measured."""
    measured = _measured(spec)
    if measured is None:
        return "Paper budget: estimating the time on this machine ..."
    each, typical = measured.seconds_per_simulation, measured.simulations
    seconds = each * typical
    verdict = (f"the default here: {DEFAULT_SECONDS} s or less" if seconds <= DEFAULT_SECONDS
               else f"over {DEFAULT_SECONDS} s here, so one click away")
    return (f"Paper budget: about {seconds / 60:.1f} min here ({verdict}): ~{typical} simulations x "
            f"{each:.2f} s each (measured: {measured.source}); at most {each * PAPER_SIMULATIONS / 60:.1f} min "
            f"if every move needs its full window ({PAPER_SIMULATIONS} simulations).")


def budget_text(name: str, budget: dict, spec: str) -> str:
    """What a budget button chose (ui/knobs.py's budget), said where it was chosen, with the paper estimate."""
    if budget.get("sims_per_move"):
        chosen = (f"**{name.capitalize()} budget chosen**: {budget['sims_per_move']} simulations per move, at most "
                  f"{budget['max_new_tokens']} tokens. ")
    else:
        chosen = (f"**{name.capitalize()} budget chosen**: the authors' window of {preset('hh').min_window} to "
                  f"{budget['max_simulations']} simulations per move, up to {budget['max_new_tokens']} tokens. ")
    return chosen + estimate_text(spec)
