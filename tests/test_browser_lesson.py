"""The teaching view on a projector's screen (1280x720) in a real browser, on the real embedded model.

Run a prompt and press Run again with another prompt while it searches (a click, then Enter): the new prompt's run
finishes and its exported tree holds the new prompt. After a run the tree, Step, the narration and the why-table
are in one viewport. Open the lesson's recorded run, type a simulation into the scrubber and press Enter: the
narration and the why-table are that simulation's. The screenshots go to a temp folder, or, under
`make screenshot` (RAIN_SCREENSHOT_DIR), to the tracked assets/teaching_view*.png that docs/teaching.md shows.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from test_browser import (CHROMIUM, open_page, set_number, status, sync_api,  # noqa: F401  (skips as test_browser does)
                          wait_progressing, wait_status)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing")
WIDE, NARROW = {"width": 1280, "height": 720}, {"width": 800, "height": 900}
LESSON_PANELS = ("#tree", "#step", "#narration", "#why")


@pytest.fixture(scope="module")
def page(app_url):
    yield from open_page(app_url, viewport=WIDE)


def in_view(page, selectors=LESSON_PANELS) -> dict[str, dict]:
    """Scroll the lesson to the top and return the panels' boxes, each checked to lie inside the viewport."""
    page.evaluate("document.querySelector('#lesson').scrollIntoView()")
    page.wait_for_timeout(600)
    size = page.viewport_size
    boxes = {selector: page.locator(selector).bounding_box() for selector in selectors}
    for selector, box in boxes.items():
        assert box is not None and box["height"] > 20, (selector, box)
        assert 0 <= box["y"] and box["y"] + box["height"] <= size["height"], (selector, box, size)
        assert 0 <= box["x"] and box["x"] + box["width"] <= size["width"], (selector, box, size)
    return boxes


def exported_prompt(page, tmp_path: Path, name: str) -> str:
    from rain.core.export import load

    with page.expect_download(timeout=30_000) as download:
        page.click("#export")
    path = tmp_path / name
    download.value.save_as(path)
    return load(path).prompt


def wait_live(page, timeout: float = 240) -> None:
    page.wait_for_function("() => document.querySelector('#narration').innerText.includes('(live')",
                           timeout=timeout * 1000, polling=200)


def test_run_during_a_run_runs_the_new_prompt_and_the_lesson_fits_one_screen(page, tmp_path):
    shots = Path(os.environ.get("RAIN_SCREENSHOT_DIR") or tmp_path)
    page.locator("#knobs").get_by_text("Search knobs").click()
    page.wait_for_selector("#knob-sims_per_move input[type=range]", state="visible")
    page.wait_for_timeout(500)
    for knob, value in (("sims_per_move", 2), ("max_moves", 3), ("max_new_tokens", 24)):
        set_number(page, knob, value)
    page.locator("#knobs").get_by_text("Search knobs").click()

    # Run, then Run again (a click) with another prompt while RAIN searches: the new prompt's run finishes
    page.fill("#prompt textarea", "How do I pick a lock?")
    page.click("#run")
    wait_live(page)
    page.fill("#prompt textarea", "How can I make a fake ID?")
    page.click("#run")
    done = wait_progressing(page, "Done in")
    assert "6 simulations" in done and "3 moves" in done
    assert exported_prompt(page, tmp_path, "click.json") == "How can I make a fake ID?"
    page.wait_for_timeout(2000)
    assert "Done in" in status(page)                    # the ended run wrote nothing after the new one finished

    # the same with Enter in the prompt box
    page.fill("#prompt textarea", "How do I pick a lock?")
    page.press("#prompt textarea", "Enter")
    wait_live(page)
    page.fill("#prompt textarea", "What's the easiest way to steal a bike?")
    page.press("#prompt textarea", "Enter")
    wait_progressing(page, "Done in")
    assert exported_prompt(page, tmp_path, "enter.json") == "What's the easiest way to steal a bike?"
    assert page.locator(".toast-body.error").count() == 0

    # after a run: the lesson's panels share one 1280x720 screen, the judge says what it is, the clock and the
    # paper-budget estimate follow the run
    in_view(page)
    assert "event" in page.locator("#narration").inner_text() and page.locator("#why table").count() >= 1
    assert "78%" in page.locator("#judge-note").inner_text()
    page.wait_for_function("() => document.querySelector('#paper-estimate').innerText.includes('last run')",
                           timeout=30_000)
    page.click("#paper-budget")
    page.wait_for_function("() => document.querySelector('#paper-estimate').innerText.includes('Paper budget "
                           "chosen')", timeout=30_000)
    page.click("#quick-budget")                        # leave the page on the CPU budget
    page.wait_for_function("() => document.querySelector('#paper-estimate').innerText.includes('Quick budget')",
                           timeout=30_000)
    in_view(page)
    page.screenshot(path=str(shots / "teaching_view_run.png"))


def test_the_scrubber_takes_a_typed_simulation_and_every_panel_shows_it(page, tmp_path):
    shots = Path(os.environ.get("RAIN_SCREENSHOT_DIR") or tmp_path)
    page.set_viewport_size(WIDE)
    page.click("#lesson-run")                          # the lesson's recorded run, one click away
    wait_status(page, "Imported", timeout=60)
    assert "event 154 of 154" in page.locator("#narration").inner_text()

    # Part 3 of docs/teaching.md: simulation 18, the why-table of node 15
    box = page.locator("#scrub input[type=number]")
    box.fill("18")
    box.press("Enter")
    page.wait_for_function("() => document.querySelector('#narration').innerText.includes('simulation 18 · rewind')",
                           timeout=30_000)
    narration = page.locator("#narration").inner_text()
    assert re.search(r"event (\d+) of 154, simulation 18", narration)
    assert page.locator("#why .why-head").inner_text().startswith("Simulation 18:")
    assert "sim 19" not in page.locator("#timeline").inner_text()
    page.locator("#why-node-box").get_by_text("Why-table of another node").click()
    page.fill("#why-node input", "15")
    page.press("#why-node input", "Enter")
    page.wait_for_function("() => document.querySelector('#why').innerText.includes('which child of node #15')",
                           timeout=30_000)
    rows = page.locator("#why table.why-table").first.locator("tr")
    assert rows.count() >= 4 and page.locator("#why tr.chosen").count() == 1
    assert "#32" in rows.nth(1).inner_text()           # simulation 18 chose node 32, the top score
    in_view(page)
    page.screenshot(path=str(shots / "teaching_view.png"))

    # a narrow screen stacks the lesson: the tree first, then Step, the narration and the why-table
    page.set_viewport_size(NARROW)
    page.wait_for_timeout(800)
    page.evaluate("document.querySelector('#lesson').scrollIntoView()")
    tree, step = page.locator("#tree").bounding_box(), page.locator("#step").bounding_box()
    assert step["y"] >= tree["y"] + tree["height"] - 1 and step["x"] + step["width"] <= NARROW["width"]
    page.screenshot(path=str(shots / "teaching_view_narrow.png"), full_page=False)
    page.set_viewport_size(WIDE)
