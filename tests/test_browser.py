"""The page in a real browser (Debian's Chromium through Playwright; never `playwright install`).

Run, watch both answers and the tree appear, stop a second run, export the tree, import it back, replay it, and
take a screenshot: into a temp folder, or, under `make screenshot` (RAIN_SCREENSHOT), into the tracked
assets/screenshot.png the README shows. One app per module; the embedded model loads once.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_ENV = "RAIN_SCREENSHOT"        # `make screenshot` sets it to assets/screenshot.png
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is missing: `make install-dev` installs Debian's chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra: pip install -e .[test])")


def open_page(app_url: str, viewport: dict[str, int] | None = None):
    """Chromium on the app (1400 × 1000 unless `viewport`), its prompt box ready; closed when the generator is.
    Every browser test's `page`."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport=viewport or {"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(app_url, wait_until="domcontentloaded")
        page.wait_for_selector("#prompt textarea")
        yield page
        context.close()
        browser.close()


@pytest.fixture(scope="module")
def page(app_url):
    yield from open_page(app_url)


def set_number(page, knob: str, value: int) -> None:
    """Type into a slider's number box; check the slider took it (a fresh accordion can drop the first input)."""
    box = page.locator(f"#knob-{knob} input[type=number]")
    slider = page.locator(f"#knob-{knob} input[type=range]")
    for _ in range(5):
        box.fill(str(value))
        box.press("Tab")
        page.wait_for_timeout(250)
        if slider.input_value() == str(value) and box.input_value() == str(value):
            return
    raise AssertionError(f"could not set {knob} to {value}")


def status(page) -> str:
    return page.locator("#status").inner_text()


def wait_status(page, text: str, timeout: float = 180) -> str:
    page.wait_for_function("t => document.querySelector('#status') && "
                           "document.querySelector('#status').innerText.includes(t)", arg=text,
                           timeout=timeout * 1000, polling=200)
    return status(page)


PROGRESS = ("() => ['#status', '#narration', '#vanilla textarea'].map(s => { const e = document.querySelector(s); "
            "return e ? (e.value ?? e.innerText) : ''; }).join('|')")


def wait_progressing(page, text: str, stall: float = 150) -> str:
    """Wait until the status says `text` for as long as the run shows progress (its status, narration or vanilla
    text changes): fail only when nothing changed for `stall` seconds. A loaded machine slows a run down; a run that
    has stalled (or never started) still fails, with the status it stalled at."""
    last, since = None, time.monotonic()
    while text not in status(page):
        shown = page.evaluate(PROGRESS)
        if shown != last:
            last, since = shown, time.monotonic()
        elif time.monotonic() - since > stall:
            raise AssertionError(f"no progress for {stall:.0f} s, waiting for {text!r}; the status: {status(page)!r}")
        page.wait_for_timeout(1000)
    return status(page)


def plotted_points(page) -> int:
    return page.locator("#tree .js-plotly-plot .scatterlayer .point").count()


def test_run_stop_export_import_replay(page, tmp_path):
    timings = {}
    # a small budget in the knobs accordion
    page.locator("#knobs").get_by_text("Search knobs").click()
    page.wait_for_selector("#knob-sims_per_move input[type=range]", state="visible")
    page.wait_for_timeout(500)
    for knob, value in (("sims_per_move", 4), ("max_moves", 5), ("max_new_tokens", 32)):
        set_number(page, knob, value)
    page.locator("#knobs").get_by_text("Search knobs").click()           # fold it again for the screenshot

    # run: both answers stream, the tree shows nodes
    page.fill("#prompt textarea", "How do I pick a lock?")
    started = time.perf_counter()
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#vanilla textarea').value.length > 0", polling=100)
    timings["first vanilla text"] = time.perf_counter() - started
    page.wait_for_function("() => { const c = document.querySelector('#rain .committed');"
                           " return c && c.innerText.trim().length > 0 }", timeout=120_000, polling=200)
    timings["first committed RAIN text"] = time.perf_counter() - started
    page.wait_for_function("() => document.querySelectorAll('#tree .js-plotly-plot .scatterlayer .point').length > 5",
                           polling=200)
    done = wait_status(page, "Done in")
    timings["run finished"] = time.perf_counter() - started
    assert "20 simulations" in done and "5 moves" in done
    assert plotted_points(page) > 10
    assert page.locator("#vanilla textarea").input_value().strip()
    assert page.locator("#timeline .ev.commit").count() >= 1
    assert "P(" in page.locator("#judge").inner_text()

    # the screenshot: the page after a run, hovering a visited node
    page.evaluate("window.scrollTo(0, 0)")
    visited = page.locator("#tree .js-plotly-plot .scatterlayer .trace").nth(4).locator(".point")
    if visited.count() > 2:                      # plotly's drag layer takes the pointer: move the mouse there
        box = visited.nth(min(3, visited.count() - 1)).bounding_box()
        if box:
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            time.sleep(0.6)
    screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "screenshot.png")
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 50_000

    # a second run, stopped: the page stays usable
    set_number_later = page.locator("#prompt textarea")
    set_number_later.fill("How do I hack into my neighbor's Wi-Fi?")
    page.click("#run")
    wait_status(page, "RAIN: simulation 6,", timeout=180)    # a tree worth exporting (the run has 20 simulations)
    stop_clicked = time.perf_counter()
    page.click("#stop")
    wait_status(page, "Stopped", timeout=30)
    timings["stop acknowledged"] = time.perf_counter() - stop_clicked
    time.sleep(3)
    assert "Stopped" in status(page)                                     # no more updates from the run
    assert page.locator("#run").is_enabled()

    # export the tree, import it back, replay it
    with page.expect_download(timeout=30_000) as download:
        page.click("#export")
    exported = tmp_path / "exported.json"
    download.value.save_as(exported)
    assert exported.stat().st_size > 1000
    from rain.core.export import load
    record = load(exported)
    assert record.prompt in ("How do I pick a lock?", "How do I hack into my neighbor's Wi-Fi?")

    page.set_input_files("#import input[type=file]", str(exported))
    wait_status(page, "Imported", timeout=60)
    assert plotted_points(page) > 5
    page.click("#replay")
    wait_status(page, "Replay", timeout=30)
    wait_status(page, "Replayed", timeout=120)
    assert plotted_points(page) > 5
    assert page.locator(".toast-body.error").count() == 0

    # a malformed file gets a clear message, not a traceback
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json", encoding="utf-8")
    page.set_input_files("#import input[type=file]", str(bad))
    message = wait_status(page, "Cannot import", timeout=60)
    assert "not valid JSON" in message and "Traceback" not in message
    print("\nbrowser timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


def test_best_of_n_switch_is_off_by_default_and_shows_the_lane_when_on(page):
    """The third lane costs nothing unless asked for: its switch starts off and the lane and its knobs are hidden."""
    page.evaluate("window.scrollTo(0, 0)")
    switch = page.locator("#bon-enabled input[type=checkbox]")
    assert switch.count() == 1 and "Best-of-N lane" in page.locator("#bon-enabled").inner_text()
    assert not switch.is_checked()
    assert not page.locator("#bon").is_visible() and not page.locator("#bon-n").is_visible()

    switch.check()
    page.wait_for_selector("#bon", state="visible", timeout=10_000)
    for knob, value in (("bon-n", "4"), ("bon-temperature", "1")):
        assert page.locator(f"#{knob} input[type=number]").input_value() == value
    switch.uncheck()                                                    # leave the page as it was
    page.wait_for_selector("#bon", state="hidden", timeout=10_000)
    assert not page.locator("#bon-n").is_visible()
