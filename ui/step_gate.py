"""Step mode on a live run: the gate between the Run handler, which pulls RAIN's events, and the page's Step, Play
and Stop buttons.

RAIN's search is a generator (rain/core/search.py): an event that is not pulled is not computed, so while the gate is
shut the search itself waits. Each run makes its own gate and returns it into the page's `gr.State`; Gradio keeps a
value returned into a State by reference, per session, so that session's Step handler gets this very object and no
other session can reach it. Handlers of one session run at the same time in worker threads, hence the Condition.
"""
from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field

PAUSE_LIMIT = 30 * 60.0         # seconds a paused run waits for Step/Play before it ends (a closed tab sends no Stop)


class Next(enum.Enum):
    """What the run does after drawing an event (StepGate.wait)."""

    PULL = "pull"                   # pull the next event
    END = "end"                     # Stop, a newer Run, or paused past the limit: end the run
    SHOW_PAUSE = "show pause"       # Step came after the event was drawn running: redraw it paused, then ask again


@dataclass
class StepGate:
    """Free-running until Step; then one event per Step until Play. `live` while the run streams RAIN."""

    pause_limit: float = PAUSE_LIMIT
    live: bool = True               # Step/Play act on this run, not on the record in the page
    stepping: bool = False          # paused: events pass one per Step
    allowed: int = 0                # events Step has let through that the run has not pulled yet
    stopped: bool = False           # Stop (or the pause limit): the run ends before its next event
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False, compare=False)

    def step(self) -> bool:
        """Pause a free-running search after the event it is computing, or let one more event through a paused
        one. False (nothing done) when the run is no longer live."""
        with self._changed:
            if not self.live:
                return False
            if self.stepping:
                self.allowed += 1
            self.stepping = True
            self._changed.notify_all()
            return True

    def play(self) -> bool:
        """Let the search run on freely. False when the run is no longer live."""
        with self._changed:
            if not self.live:
                return False
            self.stepping, self.allowed = False, 0
            self._changed.notify_all()
            return True

    def stop(self) -> None:
        """Stop: a paused run wakes and ends, so Gradio can close its generator (it cannot close one that is
        blocked mid-`next`)."""
        with self._changed:
            self.stopped, self.live = True, False
            self._changed.notify_all()

    def finish(self) -> None:
        """RAIN's part of the run is over: Step and Play go back to the record in the page."""
        with self._changed:
            self.live = False
            self._changed.notify_all()

    def wait(self, shown_paused: bool = True) -> Next:
        """Called by the run before it pulls the next event: PULL at once while free-running, else when Step lets
        one event through or Play is pressed; END when the run must end (Stop, or paused past `pause_limit`).
        `shown_paused`: the page shows the last event as paused. A Step that lands after the event was drawn
        running would hold the search behind a page that says it runs, so the gate answers SHOW_PAUSE instead of
        waiting (decided under the lock: no Step can slip between the check and the wait)."""
        deadline = time.monotonic() + self.pause_limit
        with self._changed:
            while self.stepping and not self.allowed and not self.stopped:
                if not shown_paused:
                    return Next.SHOW_PAUSE
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stopped = True
                    break
                self._changed.wait(left)
            if self.stopped:
                return Next.END
            if self.stepping:
                self.allowed -= 1
            return Next.PULL

def stop_gate(gate: StepGate | None) -> None:
    """The page's Stop (and a new Run in the same tab) on whatever run the tab's State holds: a paused one ends."""
    if gate is not None:
        gate.stop()
