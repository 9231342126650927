"""The Run button: one session (rain/runs/session.py) streamed into the page: vanilla token by token, RAIN event by
event (the tree a few times a second; every event while Step holds the search: ui/step_gate.py), then Best-of-N
sample by sample. The fold is ui/live.py's; this module parses, gets the runtime and yields."""
from __future__ import annotations

import logging
import os
import traceback
from typing import Any, Callable, Iterator, Mapping

from rain.core.errors import RainError
from rain.core.events import Event
from rain.runs.session import Recorded, RunStats, run_session
from ui import estimate, runtimes
from ui.live import LiveRun
from ui.outputs import pack, problem, status_html
from ui.request import PromptRefused, parse_request, with_named_inputs
from ui.step_gate import Next, StepGate, stop_gate

log = logging.getLogger("rain.app")


def _spaces_gpu(function: Callable) -> Callable:
    """spaces.GPU on ZeroGPU Spaces (a no-op elsewhere); the function unchanged when `spaces` is absent."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return function
    return spaces.GPU(duration=int(os.environ.get("RAIN_GPU_SECONDS", "120")))(function)


def _run(values: Mapping[str, Any]) -> Iterator[tuple]:
    """Vanilla, RAIN, then (when switched on) Best-of-N on one prompt, streamed: parse, get the runtime, fold each
    session item (ui/live.py), yield what changed. RAIN's next event is pulled only when the run's gate lets it:
    Step holds the search. The page's Run makes the gate (`new_gate`), ending the run before; its stopped gate ends
    this one before its next item, with nothing more shown, so two runs never write into one page. `values`: the
    page's inputs by name (ui/request.py), with the gate when the page sent one."""
    gate = values.get("gate")
    if not isinstance(gate, StepGate) or not (gate.live or gate.stopped):
        gate = StepGate()           # the API's session state can hold a finished run's gate: not this run's
    session: Iterator[Any] | None = None
    try:
        try:
            request = parse_request(values)
        except PromptRefused as error:
            yield problem(str(error), clear=True)
            return
        except RainError as error:                  # ConfigError, ModelNotAllowed
            yield problem(f"Invalid settings: {error}", clear=True)
            return
        yield pack(gate=gate)               # into the page's State, where Step, Play and Stop find it
        spec = request.spec
        if runtimes.cached_runtime(spec) is None:
            yield pack(status=status_html(f"Loading {spec} … (the embedded model takes ~20 s the first time)", "run"))
        try:
            runtime = runtimes.get_runtime(spec)
        except RainError as error:              # ModelLoadError
            yield problem(str(error), clear=True)
            return
        session = run_session(runtime, request.run)
        try:
            prepared = next(session)
        except RainError as error:              # PromptError, JudgeError, ConfigError
            yield problem(refusal(error), clear=True)
            return
        if gate.stopped:
            return
        live = LiveRun(prepared.record, request.show_unvisited, request.run.best_of_n)
        yield pack(**live.start(runtime.name))
        for item in session:
            if gate.stopped:                    # Stop, or a newer Run: show nothing more
                return
            paused = gate.stepping
            update = live.apply(item, paused=paused)
            if update is not None:
                yield pack(**update)
            if isinstance(item, Recorded):
                gate.finish()                   # Step and Play now go through the record
                estimate.record_run(spec, RunStats.from_dict(item.record.stats))   # the estimate follows real runs
            elif isinstance(item, Event):
                after = gate.wait(shown_paused=paused and update is not None)
                if after is Next.SHOW_PAUSE:    # Step came after this event was drawn running: say so, then hold
                    yield pack(**live.paused())
                    after = gate.wait()
                if after is Next.END:           # Stop, a newer Run, or paused too long
                    return
    except GeneratorExit:
        raise
    except Exception as error:  # never a traceback in the page
        log.error("run failed:\n%s", traceback.format_exc())
        yield problem(f"The run failed: {type(error).__name__}: {error}")
    finally:
        gate.finish()
        if session is not None:
            session.close()


def refusal(error: RainError) -> str:
    """A refused run in the page's words: a prompt too long for the model (rain.core.prompts.PromptTooLong, read by its
    fields so the page imports no tokenizer code) names no max_length, which the page has no control for."""
    tokens, limit = getattr(error, "tokens", None), getattr(error, "limit", None)
    if isinstance(tokens, int) and isinstance(limit, int):
        return f"The prompt is {tokens:,} tokens long; this model reads at most {limit:,}. Shorten it."
    return str(error)


def new_gate(previous: StepGate | None) -> StepGate:
    """The Run button's first, unqueued step: end the tab's current run (a paused one wakes; one that computes
    stops before its next item) and hand the next run its own gate."""
    stop_gate(previous)
    return StepGate()


run = _spaces_gpu(with_named_inputs(_run))
