"""A clock of compute time for generators: it runs only while the generator is producing its next item.

A front end may hold an event for as long as it likes (the app's Step mode pauses a live search for minutes), so
wall-clock time from a run's start would count the pause as work. `timed(items, clock)` stops the clock at every
`yield` and restarts it when the consumer asks for the next item, so `seconds` and `seconds_per_simulation` in a
run's stats (and the vanilla lane's time) are what the machine spent.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator, TypeVar

Item = TypeVar("Item")


@dataclass
class ComputeClock:
    """Seconds spent while running; `seconds()` includes the segment in progress."""

    spent: float = 0.0
    resumed: float | None = None          # perf_counter() when the current segment began; None while stopped

    def start(self) -> None:
        if self.resumed is None:
            self.resumed = time.perf_counter()

    def stop(self) -> None:
        if self.resumed is not None:
            self.spent += time.perf_counter() - self.resumed
            self.resumed = None

    def seconds(self) -> float:
        running = time.perf_counter() - self.resumed if self.resumed is not None else 0.0
        return self.spent + running


def timed(items: Iterator[Item], clock: ComputeClock) -> Iterator[Item]:
    """`items` with `clock` running only inside their `next()`; closing this closes `items`."""
    try:
        while True:
            clock.start()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                clock.stop()
            yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
