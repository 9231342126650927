"""The app under load (README "Load"): RAIN_CONCURRENCY splits the cores and sizes the queue's workers,
RAIN_QUEUE_SIZE bounds the queue, and a request beyond it is refused with Gradio's message. The queue test serves
the real app on the fake runtime, held at its first forward, so the runs stay where the test puts them."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import launch_on_a_free_port
from fakes import FakeRuntime

ROOT = Path(__file__).resolve().parent.parent
BUDGET = dict(sims_per_move=1, max_moves=1, max_new_tokens=4)


@pytest.mark.slow
@pytest.mark.parametrize("concurrency, threads", [("3", 2), ("16", 1)])
def test_rain_concurrency_gives_each_run_its_share_of_the_cores(concurrency, threads):
    """`python app.py` with RAIN_CONCURRENCY on an 8-core machine: 8 // concurrency torch threads (at least 1), that
    many runs at once in Gradio's queue, RAIN_QUEUE_SIZE waiting."""
    code = ("import os; os.cpu_count = lambda: 8\n"
            "import torch, app\n"
            "app.configure_threads()\n"
            "print(torch.get_num_threads(), app.demo._queue.default_concurrency_limit, app.demo._queue.max_size)")
    env = {**os.environ, "RAIN_CONCURRENCY": concurrency, "RAIN_QUEUE_SIZE": "5", "RAIN_PRELOAD": "0",
           "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == [str(threads), concurrency, "5"]


class HeldRuntime(FakeRuntime):
    """The fake runtime whose engines wait at every forward until `release` is set."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def engine(self, config, reference=False, model=None):
        lm = super().engine(config, reference, model)
        forward = lm.next_logits

        def held(states):
            self.release.wait(120)
            return forward(states)

        lm.next_logits = held
        return lm


@pytest.fixture
def one_run_one_waiting(monkeypatch):
    """The app with RAIN_CONCURRENCY=1 and RAIN_QUEUE_SIZE=1, on the held fake runtime."""
    import app
    from ui import runtimes
    from ui.layout import LAUNCH_KWARGS

    runtime = HeldRuntime()
    monkeypatch.setattr(runtimes, "get_runtime", lambda spec: runtime)
    monkeypatch.setattr(runtimes, "cached_runtime", lambda spec: runtime)
    monkeypatch.setattr(app, "CONCURRENCY", 1)
    monkeypatch.setattr(app, "QUEUE_SIZE", 1)
    demo = app.create_app()
    port = launch_on_a_free_port(demo, **LAUNCH_KWARGS)
    try:
        yield f"http://127.0.0.1:{port}/", runtime
    finally:
        runtime.release.set()
        demo.close()


@pytest.mark.slow
def test_a_request_beyond_the_queue_is_refused_with_gradios_message(one_run_one_waiting, monkeypatch):
    from gradio_client import Client
    from gradio_client.utils import QueueError, Status

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from load_test import ACCEPTED, OUT, RUNNING, wait_for          # the README's load test polls the same way

    url, runtime = one_run_one_waiting
    running = Client(url, verbose=False).submit("the key", **BUDGET, api_name="/run")
    assert wait_for(running, RUNNING) in RUNNING and not running.done()
    waiting = Client(url, verbose=False).submit("a safe door", **BUDGET, api_name="/run")
    assert wait_for(waiting, ACCEPTED) == Status.IN_QUEUE
    refused = Client(url, verbose=False).submit("help you", **BUDGET, api_name="/run")
    assert wait_for(refused, ACCEPTED) != Status.IN_QUEUE and refused.done()       # refused at once, not queued
    with pytest.raises(QueueError, match="Queue is full"):
        refused.result(timeout=60)
    runtime.release.set()                                        # the two it accepted both finish
    for job in (running, waiting):
        job.result(timeout=120)
        assert "Done in" in job.outputs()[-1][OUT["status"]]
