"""Cancellation: stopping a run mid-search frees it, the next run in the same session starts clean, and 20
start/stop cycles leave the server's resident memory flat.

    HF_HUB_OFFLINE=1 python scripts/cancel_cycles.py [--url URL --pid PID] [--cycles 20]

Without --url it starts `python app.py` itself (scripts/load_test.py's `serve`) and reads the server process's
RSS from /proc. One gradio_client Client is one Gradio session: each cycle submits a long run on /run, waits
until the search has done a simulation, and cancels the job (what the Stop button does through `cancels=`).
After the last stop it checks that the server goes idle (no search left burning CPU) and that a new run in the
same session finishes with only its own events. Last line:

    cancel: cycles=20 rss_before_mb=... rss_after_mb=... growth_mb=...
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client

from load_test import BUDGET, OUT, export_of, rss_mb, serve

LONG_RUN = dict(sims_per_move=200, max_moves=0, max_new_tokens=12)    # minutes if nobody stopped it


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, in seconds (Linux /proc/PID/stat counts clock ticks)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_and_stop(client: Client, prompt: str) -> float:
    """Submit a long run, cancel it once a simulation is done; returns the seconds from cancel to the job's end."""
    job = client.submit(prompt, **LONG_RUN, api_name="/run")
    for update in job:
        if "RAIN: simulation" in str(update[OUT["status"]]):
            break
    else:
        raise RuntimeError(f"the run ended before its first simulation: {job.outputs()[-1][OUT['status']][:200]}")
    stopped = time.perf_counter()
    job.cancel()
    while not job.done():
        time.sleep(0.02)
    return time.perf_counter() - stopped


def idle_cpu(pid: int, settle: float = 3.0, window: float = 5.0) -> float:
    """Share of one core the server uses over `window` seconds, after `settle` seconds: ~0 when no run is left."""
    time.sleep(settle)
    before = cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - before) / window


def cycles(url: str, pid: int, count: int) -> int:
    client = Client(url, verbose=False)
    client.predict("Hello!", **BUDGET, api_name="/run")                       # loads the model, warms up
    rss_before = rss_mb(pid)
    stop_seconds = [start_and_stop(client, "How do I pick a lock?")]
    rss_first = rss_mb(pid)
    for cycle in range(1, count):
        stop_seconds.append(start_and_stop(client, f"Tell me about lock number {cycle}."))
    rss_after = rss_mb(pid)
    busy = idle_cpu(pid)

    prompt = "What is the capital of France?"
    started = time.perf_counter()
    final = client.predict(prompt, **BUDGET, api_name="/run")
    clean_seconds = time.perf_counter() - started
    record = export_of(final)
    types = [event["type"] for event in record["events"]]
    clean = ("Done in" in final[OUT["status"]] and record["prompt"] == prompt and types[0] == "started"
             and types.count("started") == 1 and types[-1] == "done"
             and types.count("rewind") == record["stats"]["simulations"])
    print(f"stops took {min(stop_seconds):.2f}-{max(stop_seconds):.2f} s (cancel to job end); after the last stop "
          f"the server used {busy:.0%} of a core while idle")
    print(f"next run in the same session: {'clean' if clean else 'NOT CLEAN'}, {clean_seconds:.1f} s, "
          f"{types.count('rewind')} simulations, {len(record['nodes'])} nodes, answer {record['answer'][:40]!r}")
    print(f"server rss: before {rss_before:.0f} MB, after the first cycle (warm) {rss_first:.0f} MB, "
          f"after {count} cycles {rss_after:.0f} MB ({rss_after - rss_first:+.0f} MB since the first cycle)")
    print(f"cancel: cycles={count} rss_before_mb={rss_before:.0f} rss_after_mb={rss_after:.0f} "
          f"growth_mb={rss_after - rss_before:.0f}")
    return 0 if clean and busy < 0.1 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an app already serving (default: start one)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id (for its RSS)")
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args(argv)
    if args.url:
        if args.pid is None:
            parser.error("--url needs --pid (the server's process, whose memory is measured)")
        return cycles(args.url.rstrip("/") + "/", args.pid, args.cycles)
    log_path = Path(tempfile.gettempdir()) / "rain-cancel-cycles-server.log"
    with serve(2, 16, log_path) as (url, pid):
        print(f"app at {url} (pid {pid}, log {log_path})")
        return cycles(url, pid, args.cycles)


if __name__ == "__main__":
    sys.exit(main())
