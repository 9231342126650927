"""The app's paper-budget time estimate (ui/estimate.py): measured on the real model, then from real runs."""
from __future__ import annotations

from rain.runs.session import RunStats
from ui import estimate


def test_estimate_comes_from_a_measured_probe_then_from_runs(runtime, monkeypatch):
    monkeypatch.setattr(estimate, "_MEASURED", {})
    assert "estimating" in estimate.estimate_text("probe-test")
    measured = estimate.probe("probe-test", runtime)
    assert measured.seconds_per_simulation > 0 and measured.source == "probe"
    text = estimate.estimate_text("probe-test")
    minutes = measured.seconds_per_simulation * estimate.TYPICAL_SIMULATIONS / 60
    most = measured.seconds_per_simulation * estimate.PAPER_SIMULATIONS / 60
    assert f"about {minutes:.1f} min" in text and f"at most {most:.1f} min" in text and "probe" in text
    estimate.record_run("probe-test", RunStats.from_dict({"seconds_per_simulation": 0.3}))
    assert f"about {0.3 * estimate.TYPICAL_SIMULATIONS / 60:.1f} min" in estimate.estimate_text("probe-test")
    assert "fits in about two minutes" in estimate.estimate_text("probe-test")
    assert "last run" in estimate.estimate_text("probe-test")


def test_a_budget_button_says_what_it_chose_beside_the_estimate(monkeypatch):
    from ui import knobs

    monkeypatch.setattr(estimate, "_MEASURED", {"m": estimate.Measured(0.5, "last run")})
    paper = estimate.budget_text("paper", knobs.PAPER_BUDGET, "m")
    assert paper.startswith("**Paper budget chosen**: the authors' window of 15 to 50 simulations per move, up to "
                            "128 tokens.") and "last run" in paper
    quick = estimate.budget_text("quick", knobs.QUICK_BUDGET, "m")
    assert quick.startswith("**Quick budget chosen**: 5 simulations per move, at most 48 tokens.")
