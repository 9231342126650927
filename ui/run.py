"""The Run button: one session (rain/runs/session.py) streamed into the page: vanilla token by token, RAIN event by
event (the tree a few times a second; every event, with its narration and why-table, while Step holds the search:
ui/step_gate.py), then Best-of-N sample by sample."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from typing import Any, Callable, Iterator, Mapping

import gradio as gr

from rain.runs.best_of_n import BestOfN, Sample
from rain.core.config import RainConfig
from rain.core.errors import RainError
from rain.core.events import Committed, Evaluated, Event, Finished, Rewound
from rain.runs.session import Recorded, VanillaDone, VanillaText, run_session
from rain.runs.teaching import Narrator
from ui import estimate, runtimes
from ui.bon import OFF_HINT, WAITING, Lane, bon_html
from ui.figures import empty_figure
from ui.files import export_file, weak_signal_note
from ui.outputs import figure_of, outputs, pack, problem, record_outputs, status_html
from ui.render import judge_panel, node_choices, rain_html, stats_html, timeline_html
from ui.request import PromptRefused, parse_request, with_named_inputs
from ui.step_gate import StepGate
from ui.teaching import live_narration_html, why_html
from ui.view import RunView, simulation_bounds

log = logging.getLogger("rain.app")

PLOT_INTERVAL = 0.4            # seconds between plot updates while streaming (always one final update)


def _spaces_gpu(function: Callable) -> Callable:
    """spaces.GPU on ZeroGPU Spaces (a no-op elsewhere); the function unchanged when `spaces` is absent."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return function
    return spaces.GPU(duration=int(os.environ.get("RAIN_GPU_SECONDS", "120")))(function)


def _run(values: Mapping[str, Any]) -> Iterator[tuple]:
    """Vanilla, RAIN, then (when switched on) Best-of-N on one prompt, streamed: text on every token/event/sample,
    the tree a few times a second. Stop cancels whichever part is running: each part is a generator closed here.
    RAIN's next event is pulled only when the run's gate (handed to the page first) lets it: Step holds the search.
    `values`: the page's inputs by name (ui/request.py)."""
    try:
        request = parse_request(values)
    except PromptRefused as error:
        yield problem(str(error))
        return
    except RainError as error:                  # ConfigError, ModelNotAllowed
        yield problem(f"Invalid settings: {error}")
        return
    spec, best_of_n, show_unvisited = request.spec, request.run.best_of_n, request.show_unvisited

    session: Iterator[Any] | None = None
    gate = StepGate()
    yield pack(gate=gate)               # into the page's State, where Step, Play and Stop find it
    try:
        if runtimes.cached_runtime(spec) is None:
            yield pack(status=status_html(f"Loading {spec} … (the embedded model takes ~20 s the first time)", "run"))
        try:
            runtime = runtimes.get_runtime(spec)
        except RainError as error:              # ModelLoadError
            yield problem(str(error))
            return
        session = run_session(runtime, request.run)
        try:
            prepared = next(session)
        except RainError as error:              # PromptError, JudgeError, ConfigError
            yield problem(str(error))
            return
        meta, record = prepared.record, prepared.record
        narrator = Narrator(RainConfig.from_dict(meta.config) if meta.config else None)
        run_id = f"run-{time.time_ns()}"
        view, events = RunView(), []
        lane = Lane(best_of_n.n, best_of_n.temperature) if best_of_n else None
        vanilla_seconds = vanilla_tokens = None
        started = last_plot = time.perf_counter()
        done = ""
        scrub_update: Any = gr.skip()

        # vanilla, token by token
        yield pack(status=status_html(f"Vanilla decoding with {runtime.name} …", "run"), vanilla="",
                   rain=rain_html(None), tree=empty_figure("The search starts after the vanilla answer.",
                                                           uirevision=run_id),
                   timeline=timeline_html(None), stats=stats_html(None),
                   judge_node=gr.update(choices=node_choices(None), value="latest"),
                   judge_info=judge_panel(None, None, None)[0], judge_prompt_1="", judge_prompt_2="",
                   bon=WAITING if best_of_n else OFF_HINT)
        for item in session:
            if isinstance(item, VanillaText):
                yield pack(vanilla=item.text)
            elif isinstance(item, VanillaDone):
                vanilla_seconds, vanilla_tokens = item.seconds, item.tokens
                record = dataclasses.replace(meta, vanilla=item.text)
                started = last_plot = time.perf_counter()
                # RAIN, event by event
                yield pack(status=status_html("RAIN is searching …", "run"), vanilla=item.text,
                           stats=stats_html(view, 0.0, vanilla_seconds, vanilla_tokens))
            elif isinstance(item, Event):
                events.append(item)
                view.apply(item)
                sentence = narrator.narrate(item)
                if isinstance(item, Finished):
                    continue
                now, paused = time.perf_counter(), gate.stepping
                values: dict[str, Any] = dict(rain=rain_html(view), timeline=timeline_html(view),
                                              stats=stats_html(view, now - started, vanilla_seconds, vanilla_tokens),
                                              narration=live_narration_html(len(events), item, sentence, paused))
                if isinstance(item, (Rewound, Committed)):
                    values["status"] = status_html(f"RAIN: simulation {view.simulation}, {view.moves} move(s) "
                                                   f"committed, {len(view.tree.nodes)} nodes …", "run")
                if paused or (now - last_plot >= PLOT_INTERVAL and isinstance(item, (Evaluated, Rewound, Committed))):
                    last_plot = now
                    values["tree"] = figure_of(view, run_id, show_unvisited)
                    info, prompt_1, prompt_2 = judge_panel(view, meta.judge, "latest", meta.config)
                    values.update(judge_info=info, judge_prompt_1=prompt_1, judge_prompt_2=prompt_2,
                                  judge_node=gr.update(choices=node_choices(view)))
                    values["record"] = dataclasses.replace(record, events=list(events), nodes=[],
                                                           answer=view.committed_text())
                    values["scrub"] = gr.update(maximum=max(view.simulation, 1), value=view.simulation)
                    values["why"] = why_html(values["record"], 0, None)
                if paused:
                    values["status"] = status_html(f"Paused at event {len(events)} (simulation {view.simulation}, "
                                                   f"{item.type}): Step lets the next event through, Play runs on, "
                                                   "Stop ends the run.", "stop")
                yield pack(**values)
                if not gate.wait():             # Stop, or paused too long: pull nothing more
                    return
            elif isinstance(item, (Sample, BestOfN)) and lane is not None:
                lane.apply(item)
                if lane.result is None:
                    yield pack(bon=bon_html(lane, record.stats),
                               status=status_html(f"Best-of-{lane.n}: {len(lane.samples)} of {lane.n} answers "
                                                  "judged …", "run"))
            elif isinstance(item, Recorded):
                gate.finish()                   # Step and Play now go through the record
                record = item.record
                estimate.record_run(spec, record.stats)          # the paper-budget estimate follows real runs
                seconds = record.stats.get("seconds", time.perf_counter() - started)
                sims = len(simulation_bounds(events)) - 1
                done = (f"Done in {seconds:.1f} s: {record.stats.get('simulations', sims)} simulations, "
                        f"{view.moves} moves, {len(view.tree.nodes)} nodes on the {record.stats.get('engine')} "
                        f"engine ({record.stats.get('engine_note')}). Hover over the tree; pick a node for the "
                        "judge." + weak_signal_note(view))
                scrub_update = gr.update(maximum=max(sims, 1), value=sims)
                if not item.complete:
                    # RAIN's record is in the page before Best-of-N starts, so Stop there keeps it for Export
                    shown = {**record_outputs(record), "bon": bon_html(lane, record.stats)}   # the lane, running
                    yield outputs(view, record, run_id, show_unvisited, **shown, record=record,
                                  scrub=scrub_update, export=export_file(record),
                                  status=status_html(f"RAIN done in {seconds:.1f} s. Best-of-{lane.n}: "
                                                     f"sampling answer 1 of {lane.n} …", "run"))
        kept = lane.result if lane is not None else None
        if kept is not None:
            done += (f" Best-of-{lane.n} kept answer #{kept.index + 1} (judge {kept.score:+.2f}) after "
                     f"{kept.seconds:.1f} s.")
        yield outputs(view, record, run_id, show_unvisited, **record_outputs(record), status=status_html(done, "ok"),
                      record=record, scrub=scrub_update, export=export_file(record))
    except GeneratorExit:
        raise
    except Exception as error:  # never a traceback in the page
        log.error("run failed:\n%s", traceback.format_exc())
        yield problem(f"The run failed: {type(error).__name__}: {error}")
    finally:
        gate.finish()
        if session is not None:
            session.close()


run = _spaces_gpu(with_named_inputs(_run))
