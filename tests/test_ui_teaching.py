"""The page's teaching views (no browser, no model): divergence marks, steps, why-table, sweep, and step mode on a
live run (the Run handler on a fake runtime, held by its gate)."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from pathlib import Path

import gradio as gr
import pytest

from rain.core.export import load
from test_export import fake_record
from ui import outputs, runtimes
from ui import run as ui_run
from ui import teaching as teach
from ui.outputs import figure_of
from ui.render import rain_html
from ui.step_gate import StepGate

TREE = Path(__file__).resolve().parent.parent / "assets" / "trees" / "1_harmful_pick_a_lock.json"


def test_divergence_is_marked_in_both_answers():
    record = load(TREE)
    before, at, after = teach.split_at_divergence(record)
    assert before + at + after == record.answer and at == " of computer science, and one that has been extensively"
    page = teach.vanilla_html(record)
    assert '<mark id="vanilla-divergence"' in page and "token 8, move 4, node 32" in page
    assert page.index("aspect of ") < page.index("<mark")                # the common text stays unmarked
    figure, rain, narration, why, cursor = teach.step(record, len(record.events) - 1, None, True, figure_of,
                                                      rain_html)
    assert cursor == len(record.events) and '<span id="divergence"' in rain and "event 154 of 154" in narration
    unknown = fake_record()
    assert teach.split_at_divergence(unknown) is None and "does not record" in teach.vanilla_html(unknown)


def test_steps_narrate_one_event_each_and_the_why_table_marks_the_choice():
    record = fake_record()
    outputs = [teach.step(record, n, None, True, figure_of, rain_html) for n in range(0, 9)]
    assert [o[4] for o in outputs] == list(range(1, 10))
    assert all(f"event {n} of {len(record.events)}" in o[2] for n, o in enumerate(outputs, 1))
    why = outputs[-1][3]
    assert why.count('class="chosen"') == 1 and "c·p·√N/(1+n)" in why
    assert "had no children" in teach.why_html(record, 9, 10_000) or "did not exist" in teach.why_html(record, 9,
                                                                                                        10_000)
    frames = list(teach.play(record, len(record.events) - 2, None, True, figure_of, rain_html))
    assert [f[4] for f in frames] == [len(record.events) - 1, len(record.events)]


def test_fork_needs_a_record_and_valid_knobs_and_the_sweep_tab_reads_the_recorded_sweep():
    assert "Nothing to fork" in teach.run_fork(None, 0, "", True, runtimes.get_runtime, figure_of)[2]
    assert "Cannot fork" in teach.run_fork(fake_record(), 0, "c_puct=-1", True, runtimes.get_runtime, figure_of)[2]
    assert teach.fork_knobs("similarity_update=off  sims_per_move=1") == {"similarity_update": False,
                                                                           "sims_per_move": 1}
    assert "| full |" in teach.sweep_markdown() and teach.sweep_image().endswith("summary.png")


# --- step mode on a live run: the gate between the Run handler and Step/Play/Stop ----------------------------

NARRATION, GATE, STATUS = (outputs.OUTPUTS.index(name) for name in ("narration", "gate", "status"))
PAGE = dict(model=runtimes.EMBEDDED, custom_model="", preset="hh", judge_format="yesno_logit", show_unvisited=True,
            sims_per_move=3, max_moves=3, max_new_tokens=6)


def test_the_gate_lets_one_event_through_per_step_and_ends_on_stop_or_a_long_pause():
    gate = StepGate()
    assert gate.wait() and gate.wait()                          # free-running: never holds
    assert gate.step() and gate.stepping and gate.allowed == 0   # the first Step pauses after the current event
    assert gate.step() and gate.allowed == 1 and gate.wait() and gate.allowed == 0
    assert gate.play() and gate.wait() and gate.wait()
    gate.finish()
    assert not gate.step() and not gate.play()                   # after RAIN, Step goes back to the record
    short = StepGate(pause_limit=0.2)
    short.step()
    started = time.perf_counter()
    assert not short.wait() and 0.15 < time.perf_counter() - started < 2 and short.stopped
    stopped = StepGate()
    stopped.step()
    threading.Timer(0.2, stopped.stop).start()
    assert not stopped.wait() and not stopped.live


@pytest.fixture
def fake_runs(monkeypatch):
    """The Run handler on a fake runtime; the list of sessions that were closed."""
    from test_session import FakeRuntime

    fake, closed = FakeRuntime(), []
    monkeypatch.setattr(runtimes, "get_runtime", lambda spec: fake)
    monkeypatch.setattr(runtimes, "cached_runtime", lambda spec: fake)
    real = ui_run.run_session

    def tracked(*args):
        try:
            yield from real(*args)
        finally:
            closed.append(True)

    monkeypatch.setattr(ui_run, "run_session", tracked)
    return closed


def paused_update(updates) -> tuple:
    for update in updates:
        if "live, paused" in str(update[NARRATION]):
            return update
    raise AssertionError("the run never paused")


def test_step_holds_the_live_search_one_event_at_a_time_play_lets_it_finish(fake_runs):
    updates = ui_run.run("how to pick a lock", **PAGE)
    gate = next(updates)[GATE]
    assert isinstance(gate, StepGate) and gate.live
    gate.step()                                                  # pressed before RAIN starts: it holds at its first event
    first = paused_update(updates)
    assert "event 1 (live, paused) · start" in first[NARRATION] and "Paused at event 1" in first[STATUS]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, updates, None)
        with pytest.raises(FutureTimeout):
            pending.result(timeout=0.5)                          # the search does not advance
        assert teach.step(None, 0, None, True, figure_of, rain_html, gate) == (gr.skip(),) * 5
        second = pending.result(timeout=10)
        assert "event 2 (live, paused) · select" in second[NARRATION]
        assert "Simulation 1" in second[NARRATION]               # rain.runs.teaching.Narrator's sentence for it
        assert "<table" in second[outputs.OUTPUTS.index("why")] or "No selection" in second[outputs.OUTPUTS.index("why")]
        pending = pool.submit(next, updates, None)
        with pytest.raises(FutureTimeout):
            pending.result(timeout=0.3)
        assert list(teach.play(None, 0, None, True, figure_of, rain_html, gate)) == [(gr.skip(),) * 5]
        rest = [pending.result(timeout=10), *updates]
    assert "Done in" in rest[-1][STATUS] and not gate.live and fake_runs == [True]
    assert not any("paused" in str(u[NARRATION]) for u in rest[1:])


def test_stop_ends_a_paused_run_and_closes_its_session(fake_runs):
    updates = ui_run.run("how to pick a lock", **PAGE)
    gate = next(updates)[GATE]
    gate.step()
    paused_update(updates)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, updates, None)
        with pytest.raises(FutureTimeout):
            pending.result(timeout=0.3)
        gate.stop()
        assert pending.result(timeout=5) is None                 # the generator ended, no traceback, no hang
    assert fake_runs == [True] and not gate.live
    record = load(TREE)                                          # Step on a finished run replays the record
    assert teach.step(record, 0, None, True, figure_of, rain_html, gate)[4] == 1
