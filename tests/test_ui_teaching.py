"""The page's teaching views as pure functions (no browser, no model): divergence marks, steps, why-table, sweep."""
from __future__ import annotations

from pathlib import Path

from rain.export import load
from test_export import fake_record
from ui import runtimes
from ui.outputs import figure_of
from ui import teaching as teach
from ui.render import rain_html

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
