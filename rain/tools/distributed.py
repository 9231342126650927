"""A dataset over a Ray cluster: `python -m rain run IN.jsonl --out OUT.jsonl --ray [ADDRESS] --workers N`.

Each worker is a Ray actor holding one model (one Runtime, trie or vLLM); the driver keeps every worker busy with
one row at a time and is the only writer of OUT.jsonl, so a row is written once, flushed as it finishes. A worker
that dies in the middle of a row (killed, out of memory, node lost) loses nothing: its row goes back to the queue,
a fresh worker takes its place, and the row runs again elsewhere. The authors' launcher split row ranges over
processes with `os.system` and lost rows when one died (their issue #7); this keeps the queue in one place.
Ray is optional: asking for --ray without it gives one line saying how to install it.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from rain.core.config import RainConfig
from rain.core.errors import RainError
from rain.core.judge import JudgeError
from rain.core.prompts import PromptError
from rain.runs.concurrent import Row, answer_row, write_row
from rain.runs.runtimes import load_runtime

FORWARDED_ENV = ("RAIN_CACHE_DIR", "HF_HUB_OFFLINE", "VLLM_CPU_KVCACHE_SPACE")   # settings workers must share
ROW_ATTEMPTS = 3                 # a row whose worker died this many times is reported and skipped


class RayUnavailableError(RainError, RuntimeError):
    """--ray was asked for and ray is not installed."""


def _ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--ray needs Ray: pip install ray (2.60 is the version tested)") from None
    return ray


class RowWorker:
    """One model per worker process; answers rows one at a time (becomes a Ray actor in `start_workers`)."""

    def __init__(self, backend: str, model: str | None, prompt_format: str, trees: str | None):
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.runtime = load_runtime(model, backend)
        self.prompt_format, self.trees = prompt_format, trees

    def pid(self) -> int:
        return os.getpid()

    def answer(self, row: Row, config: dict) -> dict | str:
        """The output row, or a one-line reason when the prompt itself is unusable (it is then skipped)."""
        try:
            return answer_row(self.runtime, row, RainConfig.from_dict(config), self.prompt_format, self.trees)
        except (PromptError, JudgeError) as error:
            return str(error)


@dataclass
class Progress:
    written: int = 0
    skipped: int = 0
    retried: int = 0


def run_on_ray(rows: list[Row], out: Path, address: str | None, workers: int, backend: str, model: str | None,
               config: RainConfig, prompt_format: str, trees: str | None,
               on_submit: Callable[[Row, object], None] | None = None) -> int:
    """Answer `rows` on `workers` Ray actors, appending to `out` as rows finish; returns the number skipped.

    `on_submit(row, actor)` is called whenever a row is handed to an actor (tests kill actors from it).
    """
    ray = _ray()
    from ray.exceptions import RayActorError  # Ray is optional: imported only when asked for

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": max(workers, os.cpu_count() or 1)}))
    Worker = ray.remote(num_cpus=1, max_restarts=0)(RowWorker)

    passed = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}

    def new_worker():
        return Worker.options(runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", **passed}}).remote(
            backend, model, prompt_format, trees)

    queue, attempts, progress = list(rows), {row.id: 0 for row in rows}, Progress()
    idle = [new_worker() for _ in range(min(workers, max(len(rows), 1)))]
    running: dict[object, tuple[Row, object]] = {}            # task ref -> (row, actor)
    settings = config.to_dict()
    bar = tqdm(total=len(rows), desc="prompts", unit="prompt", file=sys.stderr)
    try:
        with out.open("a", encoding="utf-8") as sink:
            while queue or running:
                while queue and idle:
                    row, actor = queue.pop(0), idle.pop()
                    attempts[row.id] += 1
                    running[actor.answer.remote(row, settings)] = (row, actor)
                    if on_submit is not None:
                        on_submit(row, actor)
                done, _ = ray.wait(list(running), num_returns=1)
                row, actor = running.pop(done[0])
                try:
                    result = ray.get(done[0])
                except RayActorError:
                    progress.retried += 1
                    idle.append(new_worker())              # the dead worker is replaced ...
                    if attempts[row.id] < ROW_ATTEMPTS:
                        queue.append(row)                  # ... and its row runs again
                        continue
                    result = f"its worker died {ROW_ATTEMPTS} times"
                else:
                    idle.append(actor)
                if isinstance(result, str):
                    progress.skipped += 1
                    tqdm.write(f"line {row.line}: skipped: {result}", file=sys.stderr)
                else:
                    write_row(sink, result)
                    progress.written += 1
                bar.update(1)
    finally:
        bar.close()
        for actor in idle + [actor for _, actor in running.values()]:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
    if progress.retried:
        print(f"{progress.retried} row(s) retried after a worker died", file=sys.stderr)
    return progress.skipped
