"""The page's teaching views (no browser, no model): divergence marks, the one cursor (Step, Play, the scrubber:
every panel at one moment), the why-table, forks, the sweep, step mode on a live run (the Run handler on a fake
runtime, held by its gate), and a new Run ending the one before."""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from rain.core.export import RunRecord, load
from fakes import fake_record
from ui import cursor, outputs, runtimes
from ui import run as ui_run
from ui import teaching as teach
from ui.outputs import OUTPUTS, figure_of
from ui.step_gate import Next, StepGate
from ui.view import RunView

TREE = Path(__file__).resolve().parent.parent / "assets" / "trees" / "1_harmful_pick_a_lock.json"


def named(update: tuple) -> dict:
    return dict(zip(OUTPUTS, update))


def test_divergence_is_marked_in_both_answers():
    record = load(TREE)
    before, at, after = teach.split_at_divergence(record)
    assert before + at + after == record.answer and at == " of computer science, and one that has been extensively"
    page = teach.vanilla_html(record)
    assert '<mark id="vanilla-divergence"' in page and "token 8, move 4, node 32" in page
    assert page.index("aspect of ") < page.index("<mark")                # the common text stays unmarked
    last = named(cursor.step(record, len(record.events) - 1, None, True))
    assert last["cursor"] == len(record.events) and '<span id="divergence"' in last["rain"]
    assert "event 154 of 154, simulation 25" in last["narration"]
    unknown = fake_record()
    assert teach.split_at_divergence(unknown) is None and "does not record" in teach.vanilla_html(unknown)


def test_steps_narrate_one_event_each_and_the_why_table_ranks_by_score_and_marks_the_choice():
    record = fake_record()
    steps = [named(cursor.step(record, n, None, True)) for n in range(0, 9)]
    assert [s["cursor"] for s in steps] == list(range(1, 10))
    assert all(f"event {n} of {len(record.events)}" in s["narration"] for n, s in enumerate(steps, 1))
    why = steps[-1]["why"]
    assert why.count('class="chosen"') == 1 and "show the maths" in why and "c·p·√N/(1+n)" in why
    scores = [float(x) for x in re.findall(r"<td><b>([0-9.]+)</b></td>", why)]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 2           # ordered by Eq. (1)'s score
    visits = re.findall(r'class="text">[^<]*</td><td>[0-9.]+</td><td>([^<]+)</td>', why)
    assert visits and all(v.isdigit() for v in visits)                             # whole visit counts: "8", not "8.00"
    assert "node 10000 did not exist yet at simulation 2" in cursor.why(record, 9, 10_000)
    leaf = next(n.id for n in record.tree().nodes if n.parent == 0 and not n.children)    # never expanded
    assert f"node {leaf} had no children at simulation 2" in cursor.why(record, 9, leaf)
    frames = [named(f) for f in cursor.play(record, len(record.events) - 2, None, True)]
    assert [f["cursor"] for f in frames] == [len(record.events) - 1, len(record.events)]
    assert "event 1 of" in named(cursor.step(record, len(record.events), None, True))["narration"]   # from the start


def test_every_panel_shows_the_scrubbed_moment():
    """The scrubber moves the one cursor: the narration, the why-table, the timeline, the judge panel and the tree
    all show the end of that simulation, as Step there would."""
    record = load(TREE)
    moment = named(cursor.scrub(record, 18, True))
    at = moment["cursor"]
    assert 0 < at < len(record.events) and moment["scrub"]["value"] == 18
    assert f"event {at} of 154, simulation 18 · rewind" in moment["narration"]
    assert moment["why"].startswith('<div class="why-head">Simulation 18:')
    assert "sim 18" in moment["timeline"] and "sim 19" not in moment["timeline"]
    assert "simulation 18" in moment["judge_info"] or "simulation 17" in moment["judge_info"]
    stepped = named(cursor.step(record, at - 1, None, True))
    assert stepped["narration"] == moment["narration"] and stepped["why"] == moment["why"]
    node_15 = cursor.why(record, at, 15)
    assert "Simulation 18: which child of node #15" in node_15 and "#32" in node_15 and "#24" in node_15
    assert "did not exist" in cursor.why(record, at, 999)


def test_the_root_reads_as_the_question_and_the_judge_says_what_it_is():
    record = load(TREE)
    view = RunView.at(record, 12)                 # simulation 1 rolled out from the root
    assert "trained by Hugging Face" not in view.sentence and "How do I pick a lock?" in "".join(
        line.text for line in view.timeline)
    figure = figure_of(RunView.at(record), "x", True)
    labels = [row[0] for trace in figure.data if trace.customdata is not None for row in trace.customdata]
    assert "#0 the question “How do I pick a lock?”" in labels and not any("SmolLM" in label for label in labels)
    rain = named(cursor.step(record, 0, None, True))["rain"]
    assert 'id="judge-note"' in rain and "78%" in rain and "stronger judge" in rain


def test_another_evaluator_is_named_beside_the_answer_in_the_judge_panel_and_in_the_why_table():
    """A run judged by another evaluator (--evaluator vader) is not RAIN's self-evaluation: each panel says so."""
    record = load(TREE.parent / "5_imdb_negative_vader.json")
    shown = named(cursor.scrub(record, 10, True))
    assert "evaluator vader, not the model judging itself" in shown["rain"]
    assert "evaluator <code>vader</code>" in shown["judge_info"]
    assert "scores of the evaluator vader, not the model&#x27;s self-evaluation" in shown["why"]
    assert "evaluator" not in named(cursor.scrub(load(TREE), 10, True))["why"]


def test_fork_needs_a_record_and_valid_knobs_and_the_sweep_tab_reads_the_recorded_sweep():
    assert "Nothing to fork" in teach.run_fork(None, 0, "", True, runtimes.get_runtime, figure_of)[2]
    assert "Cannot fork" in teach.run_fork(fake_record(), 0, "c_puct=-1", True, runtimes.get_runtime, figure_of)[2]
    unknown = teach.run_fork(fake_record(), 0, "foo=1", True, runtimes.get_runtime, figure_of)[2]
    assert unknown.startswith("Cannot fork: “foo=1” is not a setting") and "addition_candidates" not in unknown
    assert teach.run_fork(fake_record(), 0, "c_puct=x", True, runtimes.get_runtime, figure_of)[2] == \
        "Cannot fork: c_puct cannot be “x”."
    assert teach.fork_knobs("similarity_update=off  sims_per_move=1") == {"similarity_update": False,
                                                                           "sims_per_move": 1}
    assert "| full |" in teach.sweep_markdown() and teach.sweep_image().endswith("summary.png")


# --- step mode on a live run: the gate between the Run handler and Step/Play/Stop ----------------------------

NARRATION, GATE, STATUS = (outputs.OUTPUTS.index(name) for name in ("narration", "gate", "status"))
PAGE = dict(model=runtimes.EMBEDDED, custom_model="", preset="hh", judge_format="yesno_logit", show_unvisited=True,
            sims_per_move=3, max_moves=3, max_new_tokens=6)


def test_the_gate_lets_one_event_through_per_step_and_ends_on_stop_or_a_long_pause():
    gate = StepGate()
    assert gate.wait() is gate.wait() is Next.PULL              # free-running: never holds
    assert gate.step() and gate.stepping and gate.allowed == 0   # the first Step pauses after the current event
    assert gate.wait(shown_paused=False) is Next.SHOW_PAUSE      # ... which the page shows as running: say so first
    assert gate.step() and gate.allowed == 1 and gate.wait() is Next.PULL and gate.allowed == 0
    assert gate.play() and gate.wait() is gate.wait(shown_paused=False) is Next.PULL
    gate.finish()
    assert not gate.step() and not gate.play()                   # after RAIN, Step goes back to the record
    short = StepGate(pause_limit=0.2)
    short.step()
    started = time.monotonic()                                   # the gate's own clock: no machine speed in it
    assert short.wait() is Next.END and short.stopped and time.monotonic() - started >= 0.2   # by the limit, not before
    stopped = StepGate()
    stopped.step()
    threading.Timer(0.2, stopped.stop).start()
    assert stopped.wait() is Next.END and not stopped.live


def test_a_step_after_an_event_was_drawn_running_redraws_it_paused_before_the_search_waits(fake_runs):
    """Step lands while the Run handler is suspended at the yield of an event drawn as running (the page shows
    "(live)"): the next update is that same event shown paused, and the search does not move on."""
    updates = ui_run.run("how to pick a lock", **PAGE)
    gate = next(updates)[GATE]
    for update in updates:
        if "(live)" in str(update[NARRATION]):
            break
    shown = int(re.search(r"event (\d+) \(live\)", update[NARRATION]).group(1))
    gate.step()                                                  # the generator is suspended at that yield
    with ThreadPoolExecutor(1) as pool:
        try:
            held = pool.submit(next, updates, None).result(timeout=10)
        except FutureTimeout:
            gate.stop()
            raise AssertionError("the search waits behind a page that shows it running") from None
        assert f"event {shown} (live, paused)" in held[NARRATION] and f"Paused at event {shown}" in held[STATUS]
        pending = pool.submit(next, updates, None)
        with pytest.raises(FutureTimeout):
            pending.result(timeout=0.3)                          # held: no further update
        gate.stop()
        assert pending.result(timeout=5) is None
    assert fake_runs == [True]


@pytest.fixture
def fake_runs(monkeypatch):
    """The Run handler on a fake runtime; the list of sessions that were closed."""
    from fakes import FakeRuntime

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
    started = time.perf_counter()
    updates = ui_run.run("how to pick a lock", **PAGE)
    gate = next(updates)[GATE]
    assert isinstance(gate, StepGate) and gate.live
    gate.step()                                                  # pressed before RAIN starts: it holds at its first event
    first = paused_update(updates)
    assert "event 1 (live, paused), simulation 0 · started" in first[NARRATION] and "Paused at event 1" in first[STATUS]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(next, updates, None)
        with pytest.raises(FutureTimeout):
            pending.result(timeout=0.5)                          # the search does not advance
        assert cursor.step(None, 0, None, True, gate) == outputs.pack()
        second = pending.result(timeout=10)
        assert "event 2 (live, paused), simulation 1 · select" in second[NARRATION]
        assert "Simulation 1" in second[NARRATION]               # rain.runs.teaching.Narrator's sentence for it
        assert "No selection yet" in second[outputs.OUTPUTS.index("why")]     # simulation 1 selects the root
        pending = pool.submit(next, updates, None)
        with pytest.raises(FutureTimeout):
            pending.result(timeout=0.3)
        assert list(cursor.play(None, 0, None, True, gate)) == [outputs.pack()]
        rest = [pending.result(timeout=10), *updates]
    wall = time.perf_counter() - started
    assert "Done in" in rest[-1][STATUS] and not gate.live and fake_runs == [True]
    assert not any("paused" in str(u[NARRATION]) for u in rest[1:])
    # the run was held for at least 0.8 s (the two waits above): its reported time is compute, without them
    seconds = float(re.search(r"Done in ([0-9.]+) s of compute", rest[-1][STATUS]).group(1))
    records = [u[outputs.OUTPUTS.index("record")] for u in rest]
    record = next(r for r in reversed(records) if isinstance(r, RunRecord))
    assert record.stats["seconds"] <= wall - 0.8 and seconds <= round(wall - 0.8, 1) + 0.05


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
    assert named(cursor.step(record, 0, None, True, gate))["cursor"] == 1


def test_a_new_run_ends_the_current_one_before_its_next_item_and_shows_nothing_more(fake_runs):
    """Run pressed during a run (ui/run.py new_gate): the running one stops before its next item, paused or not,
    its session is closed, and it writes nothing more into the page, so the new run's answers stand alone."""
    gate = StepGate()
    updates = ui_run.run("how to pick a lock", gate=gate, **PAGE)
    for update in updates:
        if "(live)" in str(update[NARRATION]):
            break
    fresh = ui_run.new_gate(gate)
    assert list(updates) == [] and gate.stopped and fake_runs == [True]
    assert isinstance(fresh, StepGate) and fresh.live and not fresh.stopped

    held = StepGate()
    updates = ui_run.run("how to pick a lock", gate=held, **PAGE)
    held.step()
    paused_update(updates)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(list, updates)
        with pytest.raises(FutureTimeout):
            pending.result(timeout=0.3)                          # held by Step
        ui_run.new_gate(held)
        assert pending.result(timeout=5) == []                   # woke, ended, said nothing
    assert fake_runs == [True, True]

    finished = StepGate()
    finished.finish()                                            # an API session's state: the last run's gate
    assert "Done in" in str(list(ui_run.run("how to pick a lock", gate=finished, **PAGE))[-1][STATUS])

    stale = StepGate()
    stale.stop()                                                 # a run queued behind a newer Run never starts
    assert [u for u in ui_run.run("how to pick a lock", gate=stale, **PAGE) if u[STATUS] is not None
            and "Done" in str(u[STATUS])] == []


def test_a_refused_prompt_clears_the_previous_answers():
    update = named(ui_run.run("", **PAGE).__next__())
    assert "prompt is empty" in update["status"] and update["vanilla"] == "" and update["record"] is None
    assert "grows here" in update["rain"] and update["cursor"] == 0
