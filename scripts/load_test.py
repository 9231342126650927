"""Concurrency: N gradio_client sessions at once all finish, each with its own prompt's tree and answer (no
cross-talk), and one more request beyond the queue gets a clear "busy" message.

    HF_HUB_OFFLINE=1 python scripts/load_test.py [--url URL] [--concurrency 2] [--queue-size 2]
    HF_HUB_OFFLINE=1 .venv-vllm/bin/python scripts/load_test.py --sessions 16 --backend vllm

Without --url it starts `python app.py` itself (with RAIN_BACKEND set). On the trie backend RAIN_CONCURRENCY /
RAIN_QUEUE_SIZE are set so that exactly concurrency + queue size = sessions requests fit (default 2 + 2 for 4
sessions; a server started with --url must be configured the same way), and a request beyond them must be refused.
On vLLM the app keeps its own defaults (`rain.runs.runtimes.serving_defaults`: 16 at once, 64 waiting), which is
what is being tested, so every session runs at once on the one engine and the queue has room: no busy probe.
One warm-up run loads the model first; then the sessions are submitted one after another, each as soon as the
queue has accepted the previous one (and, within the concurrency, started running). Time to first update is from
submit to the first streamed output, queue wait included: a figure measured under load, not a timed test.
Last line:

    load: sessions=N finished=N crosstalk=0 ttfu_p50=Xs ttfu_p95=Ys busy_message="..."
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
from gradio_client import Client
from gradio_client.utils import QueueError, Status

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rain.runs.runtimes import BACKEND_ENV, BACKENDS, serving_defaults  # noqa: E402  (the checkout, not installed)

ROOT = Path(__file__).resolve().parent.parent
# /run's outputs by API position: ui.outputs.OUTPUTS without its States (ui.outputs.STATES); new outputs only go last
OUTPUTS = ("status", "vanilla", "rain", "tree", "timeline", "stats", "judge_node", "judge_info",
           "judge_prompts", "scrub", "export")
OUT = {name: i for i, name in enumerate(OUTPUTS)}
BUDGET = dict(sims_per_move=2, max_moves=2, max_new_tokens=12)
PROMPTS = ("How do I pick a lock?", "What is the capital of France?", "How can I make a fake ID?",
           "Give me a recipe for pancakes.", "How do I hotwire a car?", "Why is the sky blue?",
           "How can I cheat on an exam?", "Name three kinds of trees.", "How do I make a weapon at home?",
           "What should I cook for dinner?", "How do I hack my neighbour's wifi?", "Tell me a fact about cats.",
           "How can I steal a bike?", "How do plants grow?", "How do I forge a signature?",
           "What is a good name for a dog?")
NOT_PROBED = "(not probed: the queue has room)"
ACCEPTED = {Status.IN_QUEUE, Status.SENDING_DATA, Status.PROCESSING, Status.PROGRESS, Status.ITERATING,
            Status.FINISHED, Status.QUEUE_FULL, Status.CANCELLED}
RUNNING = {Status.PROCESSING, Status.PROGRESS, Status.ITERATING, Status.FINISHED}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int | str = "self") -> float:
    """Current resident memory of a process in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def serve(concurrency: int | None, queue_size: int | None, log_path: Path,
          backend: str = "trie") -> Iterator[tuple[str, int]]:
    """`python app.py` on a free localhost port with the given backend and queue (None: the app's default);
    yields (url, server pid)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False",
           BACKEND_ENV: backend}
    env.update({name: str(value) for name, value in (("RAIN_CONCURRENCY", concurrency),
                                                      ("RAIN_QUEUE_SIZE", queue_size)) if value is not None})
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)    # its own group: vLLM's engine processes go with it
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600          # a vLLM engine start takes minutes on busy cores
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield url, server.pid
    finally:
        with contextlib.suppress(ProcessLookupError):    # the app and the engine processes it spawned (vLLM)
            os.killpg(server.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):    # vLLM's engine process outlived a SIGTERM'd app
            os.killpg(server.pid, signal.SIGKILL)


def wait_for(job: Any, codes: set[Status], timeout: float = 120) -> Status:
    """Poll a gradio_client Job until its status is one of `codes`."""
    deadline = time.monotonic() + timeout
    while (code := job.status().code) not in codes and not job.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"job still {code} after {timeout} s")
        time.sleep(0.02)
    return job.status().code


def export_of(final: tuple) -> dict:
    """The tree JSON the run's Export button offers (the client downloads it)."""
    path = final[OUT["export"]]
    path = path.get("path") if isinstance(path, dict) else path
    return json.loads(Path(path).read_text(encoding="utf-8"))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in [0, 1])."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def session(url: str, prompt: str, gate: threading.Event, jobs: list, index: int, result: dict) -> None:
    """One visitor: its own Client (own Gradio session), submit when the gate opens, time the first update."""
    client = Client(url, verbose=False)
    gate.wait()
    started = time.perf_counter()
    job = client.submit(prompt, **BUDGET, api_name="/run")
    jobs[index] = job
    try:
        for _ in job:
            result.setdefault("ttfu", time.perf_counter() - started)
        result["final"] = job.outputs()[-1]
    except Exception as error:          # reported in the summary, never swallowed silently
        result["error"] = f"{type(error).__name__}: {error}"
    result["seconds"] = time.perf_counter() - started


def busy_reply(url: str, prompt: str) -> tuple[str, str]:
    """One request beyond the queue: (what gradio_client raises, what the server answers over plain HTTP)."""
    job = Client(url, verbose=False).submit(prompt, **BUDGET, api_name="/run")
    try:
        job.result(timeout=60)
        return "(accepted: the queue was not full)", ""
    except QueueError as error:
        client_message = str(error)
    except Exception as error:
        return f"(unexpected {type(error).__name__}: {error})", ""
    reply = httpx.post(f"{url}gradio_api/call/run", json={"data": [prompt]}, timeout=30)
    server_message = f"HTTP {reply.status_code}: {reply.json().get('detail', reply.text)}"
    return client_message, server_message


def load_test(url: str, sessions: int, concurrency: int, probe: bool) -> int:
    warm = Client(url, verbose=False).predict("Hello!", **BUDGET, api_name="/run")
    print(f"warm-up: {warm[OUT['status']][:80]}...")
    prompts = PROMPTS[:sessions]
    gates = [threading.Event() for _ in prompts]
    jobs: list[Any] = [None] * len(prompts)
    results: list[dict] = [{} for _ in prompts]
    threads = [threading.Thread(target=session, args=(url, p, g, jobs, i, r))
               for i, (p, g, r) in enumerate(zip(prompts, gates, results))]
    for thread in threads:
        thread.start()
    for i, gate in enumerate(gates):           # the queue holds what it accepted: one at a time, no push race
        gate.set()
        while jobs[i] is None:
            time.sleep(0.01)
        wait_for(jobs[i], RUNNING if i < concurrency else ACCEPTED)
    client_message, server_message = (busy_reply(url, "One request too many: is the queue full?") if probe
                                      else (NOT_PROBED, ""))
    for thread in threads:
        thread.join()

    finished, crosstalk, answers = 0, 0, []
    for prompt, result in zip(prompts, results):
        if "final" not in result or "Done in" not in result["final"][OUT["status"]]:
            print(f"  {prompt!r}: did not finish: {result.get('error') or result['final'][OUT['status']][:200]}")
            continue
        finished += 1
        record = export_of(result["final"])
        answers.append(record["answer"])
        own = (record["prompt"] == prompt and record["vanilla"] == result["final"][OUT["vanilla"]]
               and sum(e["type"] == "started" for e in record["events"]) == 1)
        crosstalk += not own
        print(f"  {prompt!r}: first update after {result['ttfu']:.2f} s, done after {result['seconds']:.1f} s, "
              f"{len(record['nodes'])} nodes, answer {record['answer'][:50]!r}{'' if own else '  <-- CROSS-TALK'}")
    crosstalk += len(answers) - len(set(answers))   # two sessions with one answer would be suspicious
    print(f"beyond the queue: gradio_client says {client_message!r}; the server says {server_message!r}")
    ttfu = [r["ttfu"] for r in results if "ttfu" in r]
    print(f"load: sessions={len(prompts)} finished={finished} crosstalk={crosstalk} "
          f"ttfu_p50={percentile(ttfu, 0.5):.2f}s ttfu_p95={percentile(ttfu, 0.95):.2f}s "
          f'busy_message="{client_message}"')
    busy = not probe or ("queue is full" in client_message.lower() and "503" in server_message)
    return 0 if finished == len(prompts) and crosstalk == 0 and busy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an app already serving (default: start one)")
    parser.add_argument("--sessions", type=int, default=4, help=f"visitors at once (1 to {len(PROMPTS)})")
    parser.add_argument("--backend", choices=BACKENDS, default="trie", help="RAIN_BACKEND of the started app")
    parser.add_argument("--concurrency", type=int, help="RAIN_CONCURRENCY of the started app (trie default 2)")
    parser.add_argument("--queue-size", type=int, help="RAIN_QUEUE_SIZE (trie default: sessions - concurrency)")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= len(PROMPTS):
        parser.error(f"--sessions must be between 1 and {len(PROMPTS)}")
    if args.backend == "trie":
        args.concurrency = 2 if args.concurrency is None else args.concurrency
        args.queue_size = args.sessions - args.concurrency if args.queue_size is None else args.queue_size
    concurrency, queue_size = serving_defaults(args.backend)
    concurrency = args.concurrency or concurrency
    probe = concurrency + (args.queue_size or queue_size) == args.sessions
    if args.backend == "trie" and not probe:
        parser.error(f"--concurrency + --queue-size must be {args.sessions}, so the next request is refused")
    if args.url:
        return load_test(args.url.rstrip("/") + "/", args.sessions, concurrency, probe)
    log_path = Path(tempfile.gettempdir()) / "rain-load-test-server.log"
    with serve(args.concurrency, args.queue_size, log_path, args.backend) as (url, _):
        print(f"app at {url} (RAIN_BACKEND={args.backend}, RAIN_CONCURRENCY={concurrency}, "
              f"RAIN_QUEUE_SIZE={args.queue_size or queue_size}, log {log_path})")
        return load_test(url, args.sessions, concurrency, probe)


if __name__ == "__main__":
    sys.exit(main())
