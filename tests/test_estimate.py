"""The app's paper-budget time estimate (ui/estimate.py): the library's stored speed probe, then real runs; and the
paper budget as the default where it is estimated at a minute or less."""
from __future__ import annotations

from rain.backends.precision import PaperEstimate
from rain.core.config import PAPER_TYPICAL_SIMULATIONS as PAPER_SIMULATIONS
from rain.runs.session import RunStats
from ui import estimate


class Probed:
    """A runtime whose stored probe estimates `seconds` per simulation (Runtime.paper_estimate)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds

    def paper_estimate(self) -> PaperEstimate | None:
        return None if self.seconds is None else PaperEstimate(self.seconds)


def test_estimate_comes_from_the_library_probe_then_from_runs(monkeypatch):
    monkeypatch.setattr(estimate, "_MEASURED", {})
    monkeypatch.setattr(estimate, "DEFAULT_SECONDS", 60)     # the rule's own number (the app fixture pins it to 0)
    assert "estimating" in estimate.estimate_text("probe-test") and not estimate.paper_is_default("probe-test")
    assert estimate.probe("probe-test", Probed(None)) is None                  # a GPU: nothing probed
    assert "estimating" in estimate.estimate_text("probe-test")
    estimate.record_run("early", RunStats.from_dict({"seconds_per_simulation": 0.3}))    # a run before the probe
    estimate.probe("early", Probed(0.9))                                        # arrives later: the run stays
    assert "0.30 s each (measured: last run)" in estimate.estimate_text("early")
    assert f"~{PAPER_SIMULATIONS} simulations" in estimate.estimate_text("early")
    measured = estimate.probe("probe-test", Probed(0.9))
    assert (measured.seconds_per_simulation, measured.simulations, measured.source) == (0.9, PAPER_SIMULATIONS, "probe")
    text = estimate.estimate_text("probe-test")
    assert f"about {0.9 * PAPER_SIMULATIONS / 60:.1f} min" in text and f"~{PAPER_SIMULATIONS} simulations" in text
    assert f"at most {0.9 * estimate.PAPER_SIMULATIONS / 60:.1f} min" in text
    assert "one click away" in text and not estimate.paper_is_default("probe-test")
    fast = RunStats.from_dict({"seconds_per_simulation": estimate.DEFAULT_SECONDS / PAPER_SIMULATIONS})
    estimate.record_run("probe-test", fast)
    assert estimate.paper_is_default("probe-test") and "the default here" in estimate.estimate_text("probe-test")
    assert "last run" in estimate.estimate_text("probe-test")


def test_the_runtime_estimate_is_the_stored_probe_of_its_mode(runtime):
    estimate_ = runtime.paper_estimate()
    assert estimate_ is not None and estimate_.seconds_per_simulation > 0
    assert estimate_.seconds == estimate_.seconds_per_simulation * PAPER_SIMULATIONS
    assert runtime.precision.probe is None                     # float32 asked: the probe is read for the estimate


def test_a_budget_button_says_what_it_chose_beside_the_estimate(monkeypatch):
    from ui import knobs

    monkeypatch.setattr(estimate, "_MEASURED", {"m": estimate.Measured(0.5, 97, "last run")})
    paper = estimate.budget_text("paper", knobs.PAPER_BUDGET, "m")
    assert paper.startswith("**Paper budget chosen**: the authors' window of 15 to 50 simulations per move, up to "
                            "128 tokens.") and "last run" in paper
    quick = estimate.budget_text("quick", knobs.QUICK_BUDGET, "m")
    assert quick.startswith("**Quick budget chosen**: 5 simulations per move, at most 48 tokens.")
