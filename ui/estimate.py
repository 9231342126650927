"""How long a paper-budget answer would take on this machine, shown next to the budget buttons before Run.

The figure is measured, not assumed: a short probe search after the model loads (two simulations per move for
five moves, so the last move expands with the 10-token sets that dominate a 128-token answer) times a
simulation here, and every finished run replaces it with its own seconds per simulation. It is multiplied by
the simulations a paper-budget answer takes: typically `TYPICAL_SIMULATIONS`, what `bench --paper` counted for
the embedded model's whole answer (a re-rooted move keeps its subtree's visits, so a move seldom needs its whole
15-simulation window), at most `paper_simulations()`: moves to reach 128 tokens with the 1, 2, 4, 10 token-set
schedule, times that window. The text gives both.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rain.core.config import preset
from rain.core.events import Committed
from rain.runs.session import RunRequest, RunStats, run_session

FITS_SECONDS = 150               # "about two minutes": the paper budget is the suggested one below this
PROBE_QUESTION = "How do I pick a lock?"


def paper_simulations(config=None) -> int:
    """Moves a full-length answer needs under the token-set schedule, times the minimum window per move."""
    config = config or preset("hh")
    tokens = moves = 0
    while tokens < config.max_new_tokens:
        tokens += config.token_set_length(moves)
        moves += 1
    return moves * config.min_window


PAPER_SIMULATIONS = paper_simulations()   # 16 moves x 15 = 240 for the hh preset: the most
TYPICAL_SIMULATIONS = 97                  # bench --paper, embedded model, 2026-12-02: 97 simulations, 137 tokens


@dataclass
class Measured:
    seconds_per_simulation: float
    source: str                  # "probe" or "last run"


_MEASURED: dict[str, Measured] = {}   # model spec -> latest figure (the app's per-process state, as its runtimes)
_LOCK = threading.Lock()


def probe(spec: str, runtime) -> Measured:
    """Time simulations at the 10-token depth of a small search (~10 simulations; a few seconds)."""
    config = preset("hh", sims_per_move=2, max_moves=5, max_new_tokens=128)
    last, timings = time.perf_counter(), []
    for item in run_session(runtime, RunRequest(PROBE_QUESTION, config, vanilla=False)):
        if isinstance(item, Committed):
            now = time.perf_counter()
            timings.append((now - last) / max(item.simulations, 1))
            last = now
    measured = Measured(timings[-1] if timings else 0.0, "probe")
    with _LOCK:
        _MEASURED.setdefault(spec, measured)
    return measured


def record_run(spec: str, stats: RunStats) -> None:
    """A finished run's own speed replaces the probe's."""
    seconds = stats.rain.seconds_per_simulation if stats.rain else None
    if seconds:
        with _LOCK:
            _MEASURED[spec] = Measured(float(seconds), "last run")


def estimate_text(spec: str) -> str:
    """One line for the app: the estimated paper-budget time, or that it is still being measured."""
    with _LOCK:
        measured = _MEASURED.get(spec)
    if measured is None or measured.seconds_per_simulation <= 0:
        return "Paper budget: estimating the time on this machine ..."
    each = measured.seconds_per_simulation
    seconds = each * TYPICAL_SIMULATIONS
    verdict = "fits in about two minutes here" if seconds <= FITS_SECONDS else "long on this machine"
    return (f"Paper budget: about {seconds / 60:.1f} min here ({verdict}): ~{TYPICAL_SIMULATIONS} simulations x "
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
