"""The app's paper-budget time estimate (ui/estimate.py): the library's stored speed probe, then real runs; and the
paper budget as the default where it is estimated at a minute or less."""
from __future__ import annotations

from ui import estimate


class Probed:
    """A runtime whose stored probe estimates `seconds` per simulation (Runtime.simulation_estimate)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds

    def simulation_estimate(self) -> float | None:
        return self.seconds


def test_estimate_comes_from_the_library_probe_then_from_runs(monkeypatch):
    monkeypatch.setattr(estimate, "_MEASURED", {})
    assert "estimating" in estimate.estimate_text("probe-test") and not estimate.paper_is_default("probe-test")
    assert estimate.probe("probe-test", Probed(None)) is None                  # a GPU: nothing probed
    measured = estimate.probe("probe-test", Probed(0.9))
    assert measured.seconds_per_simulation == 0.9 and measured.source == "probe"
    text = estimate.estimate_text("probe-test")
    minutes = 0.9 * estimate.TYPICAL_SIMULATIONS / 60
    assert f"about {minutes:.1f} min" in text and f"at most {0.9 * estimate.PAPER_SIMULATIONS / 60:.1f} min" in text
    assert "one click away" in text and not estimate.paper_is_default("probe-test")
    fast = 0.9 * estimate.DEFAULT_SECONDS / estimate.TYPICAL_SIMULATIONS / 0.9     # exactly 60 s: the default
    estimate.record_run("probe-test", {"seconds_per_simulation": fast})
    assert estimate.paper_is_default("probe-test") and "the default here" in estimate.estimate_text("probe-test")
    assert "last run" in estimate.estimate_text("probe-test")


def test_the_runtime_estimate_is_the_stored_probe_of_its_mode(runtime):
    each = runtime.simulation_estimate()
    assert each is not None and each > 0
    assert runtime.precision.probe is None                     # float32 asked: the probe is read for the estimate
