"""The teaching views in a real browser (Debian's Chromium through Playwright) on the real embedded model.

Import the shipped tree, see where RAIN parts from vanilla in both answers, step through it event by event with
the narration and the why-table (its formula behind "show the maths"), play it, fork it with the similarity update
off, and read the recorded sweep.
Then run a prompt and hold the live search with Step: it waits, lets one event through per Step, and Play or Stop
ends the hold.
Screenshots of these views go to a temp folder, or, under `make screenshot` (RAIN_SCREENSHOT_DIR), to the
tracked assets/teaching_*.png the README shows.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from test_browser import (CHROMIUM, open_page, set_number, status, sync_api,  # noqa: F401  (skips as test_browser does)
                          wait_progressing, wait_status)

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "assets" / "trees" / "1_harmful_pick_a_lock.json"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing")


@pytest.fixture(scope="module")
def page(app_url):
    yield from open_page(app_url)


def narration_event(page) -> int:
    match = re.search(r"event (\d+) of", page.locator("#narration").inner_text())
    return int(match.group(1)) if match else 0


def test_divergence_step_play_why_fork_and_sweep(page, tmp_path):
    shots = Path(os.environ.get("RAIN_SCREENSHOT_DIR") or tmp_path)
    page.set_input_files("#import input[type=file]", str(TREE))
    wait_status(page, "Imported", timeout=60)

    # divergence: marked inside #rain, and the same position in vanilla's answer
    page.wait_for_selector("#rain #divergence")
    marked = page.locator("#rain #divergence").inner_text().strip()
    assert marked == "of computer science, and one that has been extensively"
    page.wait_for_selector("#vanilla #vanilla-divergence", state="visible")
    assert page.locator("#vanilla #vanilla-divergence").inner_text().startswith("any system")
    assert "token 8, move 4, node 32" in page.locator("#vanilla-marked").inner_text()
    page.locator("#rain").screenshot(path=str(shots / "teaching_divergence_rain.png"))

    # step: exactly one event per click, with a sentence for it
    for expected in range(1, 9):
        page.click("#step")
        page.wait_for_function("n => document.querySelector('#narration').innerText.includes('event ' + n + ' of')",
                               arg=expected, timeout=30_000)
    text = page.locator("#narration").inner_text()
    assert "event 8 of 154" in text and "select" in text and "Simulation 2" in text

    # the why-table for the latest selection's parent: every child, one marked chosen
    page.wait_for_selector("#why table.why-table tr.chosen")
    header = page.locator("#why .why-head").inner_text()
    assert header.startswith("Simulation 2: which child of the prompt")
    assert page.locator("#why tr").count() >= 3 and page.locator("#why tr.chosen").count() == 1
    page.locator("#why details.maths summary").click()                   # the formula, folded until asked for
    assert "c·p·√N/(1 + n)" in page.locator("#why details.maths").inner_text()
    page.locator("#lesson").screenshot(path=str(shots / "teaching_step_why.png"))

    # another node: the why-table of node 15 at the latest simulation up to the cursor
    page.locator("#why-node-box").get_by_text("Why-table of another node").click()
    page.fill("#why-node input", "15")
    page.press("#why-node input", "Enter")
    page.wait_for_function("() => document.querySelector('#why').innerText.includes('did not exist yet')"
                           " || document.querySelector('#why').innerText.includes('node 15')", timeout=30_000)

    # play: the events run on by themselves; Stop ends it
    before = narration_event(page)
    page.click("#play")
    page.wait_for_function("n => { const m = document.querySelector('#narration').innerText.match(/event (\\d+) of/);"
                           " return m && +m[1] >= n }", arg=before + 3, timeout=30_000)
    page.click("#stop")
    page.wait_for_timeout(1500)
    stopped = narration_event(page)
    page.wait_for_timeout(1500)
    assert narration_event(page) == stopped > before

    # what-if: fork after move 3 with the similarity update off, one simulation per move
    page.fill("#fork-node input", "15")
    page.press("#fork-node input", "Tab")
    page.fill("#fork-knobs textarea", "similarity_update=off sims_per_move=1")
    page.click("#fork")
    page.wait_for_function("() => document.querySelector('#fork-view') && "
                           "document.querySelector('#fork-view').innerText.includes('Forked at node 15')",
                           timeout=300_000, polling=500)
    view = page.locator("#fork-view").inner_text()
    assert "similarity_update=False" in view and "parent" in view and "fork" in view
    assert page.locator("#fork-view .fork-point").count() == 2
    page.wait_for_function("() => document.querySelectorAll('#fork-tree .js-plotly-plot .scatterlayer .point')"
                           ".length > 3", timeout=30_000)
    page.locator("#teach-tab").screenshot(path=str(shots / "teaching_fork.png"))

    # a bad knob is a message, not a traceback
    page.fill("#fork-knobs textarea", "c_puct=-1")
    page.click("#fork")
    page.wait_for_function("() => document.querySelector('#fork-status').innerText.includes('Cannot fork')",
                           timeout=60_000)
    assert "c_puct" in page.locator("#fork-status").inner_text()

    # the recorded sweep in its tab
    page.get_by_role("tab", name=re.compile("Ablation sweep")).click()
    page.wait_for_selector("#sweep table", state="visible")
    sweep = page.locator("#sweep").inner_text()
    assert all(variant in sweep for variant in ("full", "no_similarity", "no_addition", "c0"))
    page.wait_for_selector("#sweep-plot img", state="visible")
    page.locator("#sweep-tab").screenshot(path=str(shots / "teaching_sweep.png"))


def live_event(page) -> int:
    match = re.search(r"event (\d+) \(live", page.locator("#narration").inner_text())
    return int(match.group(1)) if match else 0


def wait_narration(page, text: str, timeout: float = 60) -> None:
    page.wait_for_function("t => document.querySelector('#narration').innerText.includes(t)", arg=text,
                           timeout=timeout * 1000, polling=100)


def run_and_hold(page, other=None) -> int:
    """Run the prompt and press Step as soon as the run is under way (a Step during vanilla's answer holds RAIN at
    its first event), so a short run on a fast machine cannot finish before it lands; the event number it holds
    at. `other`: a second tab (its own Gradio session) whose Step, pressed then, must let no event of this run
    through."""
    page.click("#run")
    page.wait_for_function("() => /Vanilla decoding|RAIN is searching|RAIN: simulation/"
                           ".test(document.querySelector('#status').innerText)", timeout=180_000, polling=50)
    page.click("#step")
    wait_narration(page, "live, paused")
    assert "Paused at event" in status(page)
    held = live_event(page)
    if other is not None:
        other.click("#step")
        other.wait_for_timeout(1500)
        assert "Press Step" in other.locator("#narration").inner_text()          # nothing to step there
        assert live_event(page) == held and f"Paused at event {held}" in status(page)   # nor here, from there
    return held


def test_step_holds_a_live_search_one_event_at_a_time_and_play_or_stop_ends_the_hold(page, app_url):
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#knobs").get_by_text("Search knobs").click()
    page.wait_for_selector("#knob-sims_per_move input[type=range]", state="visible")
    page.wait_for_timeout(500)
    for knob, value in (("sims_per_move", 3), ("max_moves", 3), ("max_new_tokens", 24)):
        set_number(page, knob, value)
    page.fill("#prompt textarea", "How do I pick a lock?")

    # Step: the search itself waits (no event, no timeline line, no status change for 3 s); another tab's Step
    # lets none of this run's events through
    other = page.context.browser.new_context().new_page()
    other.goto(app_url, wait_until="domcontentloaded")
    other.wait_for_selector("#step")
    held = run_and_hold(page, other)
    other.context.close()
    sentence, timeline, stats = (page.locator(f"#{name}").inner_text() for name in ("narration", "timeline", "stats"))
    page.wait_for_timeout(3000)
    assert live_event(page) == held and page.locator("#narration").inner_text() == sentence
    assert page.locator("#timeline").inner_text() == timeline and page.locator("#stats").inner_text() == stats
    assert "Paused at event" in status(page)

    # each further Step: exactly one more event, with its own sentence, then the search waits again
    for expected in (held + 1, held + 2):
        page.click("#step")
        wait_narration(page, f"event {expected} (live, paused)")
        page.wait_for_timeout(1500)
        assert live_event(page) == expected and f"Paused at event {expected}" in status(page)
    assert page.locator("#narration").inner_text() != sentence
    why = page.locator("#why").inner_text()                                    # Eq. (1) as it stands now
    assert why.startswith("Simulation") or why.startswith("No selection yet"), why

    # Play: the search runs on to the end; Step then goes through the finished run from its first event
    page.click("#play")
    done = wait_progressing(page, "Done in")
    assert "9 simulations" in done and "3 moves" in done
    assert page.locator("#vanilla textarea").input_value().strip()
    # 3 moves commit fewer tokens than vanilla's 24, so the answers part (measured: at token 7) and the lane marks it
    page.wait_for_selector("#vanilla #vanilla-divergence", state="visible")
    assert "RAIN parts from vanilla at token" in page.locator("#vanilla").inner_text()
    page.click("#step")
    wait_narration(page, "event 1 of")

    # Stop on a held run ends it cleanly, and the next run starts and finishes
    run_and_hold(page)
    page.click("#stop")
    wait_status(page, "Stopped", timeout=30)
    page.wait_for_timeout(2000)
    assert "Stopped" in status(page) and page.locator(".toast-body.error").count() == 0
    page.click("#run")
    # the new run starts: its first status replaces "Stopped" (a Run that never starts after Stop fails here), and
    # it finishes: waited on for as long as it shows progress, not for a fixed time (a loaded machine is slow)
    page.wait_for_function("() => !document.querySelector('#status').innerText.includes('Stopped')",
                           timeout=120_000, polling=200)
    wait_progressing(page, "Done in")
    assert page.locator(".toast-body.error").count() == 0
