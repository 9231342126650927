"""Many prompts at once in one process: `python -m rain run IN.jsonl --out OUT.jsonl --concurrency N`.

N worker threads each run one prompt's vanilla answer and search at a time. On the vLLM backend they share one
engine, which batches the forwards of all of them; on the trie backend every search has its own engine over the
shared weights. Rows are written and flushed as they finish (so in finishing order), one writer, no duplicates.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rain.core.config import RainConfig
from rain.core.export import save
from rain.runs.runtimes import Runtime
from rain.runs.session import RunRequest, final_record, run_session


@dataclass(frozen=True)
class Row:
    """One prompt of a dataset: its id (the "id" field, else its line number) and text."""

    id: str
    prompt: str
    line: int


def answer_row(runtime: Runtime, row: Row, config: RainConfig, prompt_format: str, trees: str | None) -> dict:
    """One output row of `run` from the run's session record (rain/runs/session.py), the same for sequential,
    concurrent and Ray runs; the tree goes to TREES/<id>.json when asked."""
    record = final_record(run_session(runtime, RunRequest(row.prompt, config, prompt_format)))
    if trees:
        save(record, Path(trees) / f"{row.id}.json")
    return {"id": row.id, "prompt": row.prompt, "vanilla": record.vanilla, "rain": record.answer,
            "stats": record.stats}


def finished_ids(out: Path) -> set[str]:
    """Ids already in OUT.jsonl (for --resume). A torn last line (a killed writer) is cut off, so it is redone."""
    if not out.exists():
        return set()
    done: set[str] = set()
    data = out.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with out.open("r+b") as handle:
            handle.truncate(keep)
    for line in data[:keep].decode("utf-8", errors="replace").splitlines():
        try:
            done.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            continue
    return done


def write_row(sink: TextIO, row: dict) -> None:
    sink.write(json.dumps(row, ensure_ascii=False) + "\n")
    sink.flush()


def run_concurrently(rows: Iterable[Row], answer: Callable[[Row], dict], concurrency: int, sink: TextIO,
                     on_row: Callable[[Row, dict | None, Exception | None], None]) -> None:
    """`answer(row)` for every row on `concurrency` threads; each result is written by this thread as it arrives.

    `on_row(row, result, error)` follows every row (progress bar, skipped-line messages); an error is the
    exception `answer` raised, reported and the row skipped, never retried.
    """
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rain-search") as pool:
        queue = iter(rows)
        running: dict[Future, Row] = {}

        def top_up() -> None:
            while len(running) < concurrency:
                row = next(queue, None)
                if row is None:
                    return
                running[pool.submit(answer, row)] = row

        top_up()
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                row = running.pop(future)
                error = future.exception()
                result = None if error else future.result()
                if result is not None:
                    with lock:
                        write_row(sink, result)
                on_row(row, result, error)
            top_up()
