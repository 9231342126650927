"""Gradio handlers: the streaming run, replay, scrubbing, import/export and the judge panel.

The handlers consume only the search's events (folded by ui.view.RunView), and RunRecord/JSON for files. The one
piece of module state is the cache of loaded Runtimes (models cannot live in gr.State), guarded by a lock.
"""
from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Generator, Iterator

import gradio as gr

from rain.config import PRESETS, ConfigError, RainConfig, preset
from rain.events import Committed, Evaluated, Event, Finished, Rewound
from rain.export import RunRecord, TreeFileError, load, save
from rain.judge import JudgeError
# Imported here, in the importing (main) thread: transformers resolves its classes lazily, and two request
# threads doing that first import at once got "cannot import name 'AutoModelForCausalLM'" (scripts/cancel_cycles.py).
from rain.models import ModelLoadError
from rain.prompts import PromptError
from rain.runtime import Runtime, load_runtime
from ui import estimate
from ui.bon import OFF_HINT, STATS_KEY, WAITING, BonSettings, Lane, bon_html, lane_items
from ui.figures import empty_figure, tree_figure
from ui.render import judge_panel, node_choices, rain_html, stats_html, timeline_html
from ui.view import RunView, simulation_bounds, view_at

log = logging.getLogger("rain.app")

ROOT = Path(__file__).resolve().parent.parent
TREES_DIR = ROOT / "assets" / "trees"
EXAMPLES_FILE = ROOT / "assets" / "examples.json"
PLOT_INTERVAL = 0.4            # seconds between plot updates while streaming (always one final update)
REPLAY_FRAMES = 80             # a replay shows at most this many frames ...
REPLAY_FRAME_SECONDS = 0.25    # ... this far apart
EMBEDDED = "embedded"
EMBEDDED_LABEL = "embedded: SmolLM2-135M-Instruct (CPU, offline)"
MAX_PROMPT_CHARS = 20_000

# --- settings from the environment ----------------------------------------------------------------------


def space_mode() -> bool:
    return os.environ.get("RAIN_SPACE_MODE", "").strip().lower() in ("1", "true", "yes", "on")


def default_model() -> str:
    return os.environ.get("RAIN_DEFAULT_MODEL", "").strip() or EMBEDDED


def model_allowlist() -> list[str]:
    """Models a Space may load: the embedded one, RAIN_DEFAULT_MODEL and RAIN_MODEL_ALLOWLIST (comma-separated)."""
    names = [EMBEDDED, default_model()]
    names += [n.strip() for n in os.environ.get("RAIN_MODEL_ALLOWLIST", "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def model_choices() -> list[tuple[str, str]]:
    return [(EMBEDDED_LABEL if name == EMBEDDED else name, name) for name in model_allowlist()]


class ModelNotAllowed(ValueError):
    pass


def resolve_model(choice: str | None, custom: str | None) -> str:
    """The model spec to load: the free-text field wins when filled (refused in Space mode unless allowlisted)."""
    custom = (custom or "").strip()
    spec = custom or (choice or "").strip() or default_model()
    if spec == EMBEDDED_LABEL:
        spec = EMBEDDED
    if space_mode() and spec not in model_allowlist():
        raise ModelNotAllowed(f"model {spec!r} is not enabled on this Space; choose one of: "
                              f"{', '.join(model_allowlist())}")
    return spec


# --- the model cache (the only module-level mutable state) ----------------------------------------------

_RUNTIMES: "OrderedDict[str, Any]" = OrderedDict()
_RUNTIMES_LOCK = threading.Lock()
_LOAD_LOCKS: dict[str, threading.Lock] = {}
MAX_CACHED_MODELS = int(os.environ.get("RAIN_MAX_MODELS", "2"))


def cached_runtime(spec: str):
    with _RUNTIMES_LOCK:
        runtime = _RUNTIMES.get(spec)
        if runtime is not None:
            _RUNTIMES.move_to_end(spec)
        return runtime


def get_runtime(spec: str):
    """The loaded Runtime for `spec`, loading it once even when several requests ask at the same time."""
    runtime = cached_runtime(spec)
    if runtime is not None:
        return runtime
    with _RUNTIMES_LOCK:
        lock = _LOAD_LOCKS.setdefault(spec, threading.Lock())
    with lock:
        runtime = cached_runtime(spec)
        if runtime is not None:
            return runtime
        runtime = load_runtime(None if spec == EMBEDDED else spec)   # $RAIN_BACKEND picks trie or vllm
        with _RUNTIMES_LOCK:
            _RUNTIMES[spec] = runtime
            while len(_RUNTIMES) > max(1, MAX_CACHED_MODELS):
                _RUNTIMES.popitem(last=False)
        return runtime


def preload(spec: str | None = None) -> threading.Thread:
    """Load the default model in the background so the first visitor does not wait for it."""
    def work() -> None:
        try:
            runtime = get_runtime(spec or default_model())
            estimate.probe(spec or default_model(), runtime)   # time a few simulations for the paper estimate
        except Exception as error:  # reported again, clearly, when someone runs
            log.warning("preloading %s failed: %s", spec or default_model(), error)
    thread = threading.Thread(target=work, name="rain-preload", daemon=True)
    thread.start()
    return thread


# --- knobs ----------------------------------------------------------------------------------------------

BASE = RainConfig()
# The budget a CPU demo can afford (the authors' budget is sims_per_move=0, max_new_tokens=128: see "Paper").
QUICK_BUDGET = {"sims_per_move": 5, "max_moves": 0, "max_new_tokens": 48, "max_simulations": 50, "min_visits": 6}
PAPER_BUDGET = {"sims_per_move": 0, "max_moves": 0, "max_new_tokens": 128, "max_simulations": 50, "min_visits": 6}


@dataclasses.dataclass(frozen=True)
class Knob:
    name: str              # the RainConfig field (or a UI-only name)
    label: str
    kind: str              # slider, int, text, radio, check
    default: Any
    info: str = ""
    lo: float = 0
    hi: float = 1
    step: float = 1
    choices: tuple = ()


KNOBS: tuple[Knob, ...] = (
    Knob("c_puct", "c (exploration, Eq. 1)", "slider", BASE.c_puct, "0 turns exploration off (Table 4 ablation)", 0, 10, 0.1),
    Knob("similarity_gamma", "γ (similarity weight, Eq. 2)", "slider", BASE.similarity_gamma, "", 0.01, 1, 0.01),
    Knob("similarity_threshold", "similarity threshold (cosine)", "slider", BASE.similarity_threshold, "", 0, 1, 0.01),
    Knob("max_simulations", "maxT (simulation window)", "slider", BASE.max_simulations, "used when sims per move = 0", 1, 300, 1),
    Knob("min_window", "min window", "slider", BASE.min_window, "at least this many simulations per move (authors: 15)", 1, 100, 1),
    Knob("min_visits", "minT (stop: best child visits >)", "slider", BASE.min_visits, "", 0, 200, 1),
    Knob("value_threshold", "Vt (stop: best child q >)", "slider", BASE.value_threshold, "", -1, 1, 0.05),
    Knob("candidates", "candidates per expansion", "slider", BASE.candidates, "", 1, 30, 1),
    Knob("token_set_lengths", "token-set schedule", "text", ",".join(map(str, BASE.token_set_lengths)),
         "token-set length by depth, e.g. 1,2,4,10 (the last repeats)"),
    Knob("candidate_temperature", "sampling temperature", "slider", BASE.candidate_temperature, "", 0.1, 3, 0.05),
    Knob("candidate_top_k", "sampling top-k", "slider", BASE.candidate_top_k, "", 1, 100, 1),
    Knob("max_new_tokens", "answer length (tokens)", "slider", QUICK_BUDGET["max_new_tokens"], "", 1, 512, 1),
    Knob("sims_per_move", "simulations per move", "slider", QUICK_BUDGET["sims_per_move"],
         "0 = the authors' early-stop rule (minT, Vt, maxT)", 0, 200, 1),
    Knob("max_moves", "max moves", "slider", QUICK_BUDGET["max_moves"], "0 = no cap", 0, 200, 1),
    Knob("seed", "seed", "int", BASE.seed),
    Knob("puct_visits", "Eq. 1 visit term", "radio", BASE.puct_visits, "code: √(parent n) · paper: √(Σ siblings' n)",
         choices=("parent", "siblings")),
    Knob("puct_value", "Eq. 1 value term", "radio", BASE.puct_value, "code: min-max normalised q · paper: raw q",
         choices=("normalised", "raw")),
    Knob("commit", "commit rule", "radio", BASE.commit, "Alg. 1: most visited · §3.2: sample by visits",
         choices=("argmax", "sample")),
    Knob("similarity_update", "similarity update (Eq. 2)", "check", BASE.similarity_update, "ablation switch"),
    Knob("dynamic_addition", "dynamic node addition", "check", BASE.dynamic_addition, "ablation switch"),
    Knob("judge_logit_scale", "judge logit scale (yes/no logit format)", "slider",
         0, "score = tanh(mean logit gap / scale); 0 = auto: calibrated on the model's own gaps", 0, 5, 0.01),
)
KNOBS = tuple(k for k in KNOBS if k.name in {f.name for f in dataclasses.fields(RainConfig)})  # library's knobs only
KNOB_NAMES = tuple(k.name for k in KNOBS)
INT_KNOBS = {"max_simulations", "min_window", "min_visits", "candidates", "candidate_top_k", "max_new_tokens",
             "sims_per_move", "max_moves", "seed"}


def parse_schedule(text: Any) -> tuple[int, ...]:
    if isinstance(text, (list, tuple)):
        parts = [str(p) for p in text]
    else:
        parts = [p for p in re.split(r"[\s,;]+", str(text or "").strip()) if p]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"token-set schedule must be comma-separated positive integers like 1,2,4,10, "
                          f"got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"token-set schedule must be comma-separated positive integers like 1,2,4,10, got {text!r}")
    return values


def build_config(preset_name: str, judge_format: str, knobs: dict[str, Any]) -> RainConfig:
    """A validated RainConfig from the page's values; raises ConfigError with a message for people."""
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    overrides: dict[str, Any] = {}
    for name, value in knobs.items():
        if name not in KNOB_NAMES:
            raise ConfigError(f"unknown setting {name!r}")
        if name == "token_set_lengths":
            value = parse_schedule(value)
        elif name in INT_KNOBS:
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            if float(value) != int(float(value)):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            value = int(float(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        overrides[name] = value
    if overrides.get("sims_per_move") == 0:
        overrides["sims_per_move"] = None
    if overrides.get("max_moves") == 0:
        overrides["max_moves"] = None
    if overrides.get("judge_logit_scale") == 0:
        overrides["judge_logit_scale"] = "auto"
    if judge_format:
        overrides["judge_format"] = judge_format
    try:
        return preset(preset_name, **overrides)
    except TypeError as error:
        raise ConfigError(str(error)) from None


def preset_values(preset_name: str) -> list[Any]:
    """Knob values of a preset (the budget knobs keep what the user set: gr.skip())."""
    try:
        config = preset(preset_name)
    except ConfigError:
        return [gr.skip() for _ in KNOBS]
    keep = {"max_new_tokens", "sims_per_move", "max_moves", "seed"}
    values = []
    for knob in KNOBS:
        if knob.name in keep:
            values.append(gr.skip())
        elif knob.name == "token_set_lengths":
            values.append(",".join(map(str, config.token_set_lengths)))
        else:
            values.append(getattr(config, knob.name))
    return values


def budget_values(budget: dict[str, Any]) -> list[Any]:
    return [budget[k.name] if k.name in budget else gr.skip() for k in KNOBS]


# --- outputs --------------------------------------------------------------------------------------------

OUTPUTS = ("status", "vanilla", "rain", "tree", "timeline", "stats", "record", "judge_node", "judge_info",
           "judge_prompt_1", "judge_prompt_2", "scrub", "export", "bon")     # new outputs go last (API positions)


def pack(**values: Any) -> tuple:
    """One streamed update: the named outputs, every other output left as it is (gr.skip())."""
    unknown = set(values) - set(OUTPUTS)
    if unknown:
        raise KeyError(f"unknown outputs {unknown}")
    return tuple(values.get(name, gr.skip()) for name in OUTPUTS)


def status_html(message: str, kind: str = "info") -> str:
    icon = {"info": "●", "run": "◌", "ok": "✓", "error": "⚠", "stop": "■"}.get(kind, "")
    return f'<div class="status {kind}">{icon} {html.escape(str(message))}</div>'


def problem(message: str) -> tuple:
    """A message in the page instead of a run (and a toast)."""
    gr.Warning(message)
    return pack(status=status_html(message, "error"))


def figure_of(view: RunView, uirevision: str, show_unvisited: bool):
    if not view.events:
        return empty_figure(uirevision=uirevision)
    path = view.path if (view.path and view.finished is None) else []
    return tree_figure(view.tree, path=path, verdicts=view.verdicts, focus=view.latest if view.finished is None else None,
                       uirevision=uirevision, show_unvisited=bool(show_unvisited))


def full_update(view: RunView, source: RunRecord | None, uirevision: str, show_unvisited: bool,
                judge: dict | None, **extra: Any) -> tuple:
    """Every output from a view (the end of a run, import); `extra` names more outputs (record, status, ...)."""
    info, prompt_1, prompt_2 = judge_panel(view, judge, "latest", source.config if source is not None else None)
    values = dict(rain=rain_html(view), tree=figure_of(view, uirevision, show_unvisited),
                  timeline=timeline_html(view), judge_node=gr.update(choices=node_choices(view), value="latest"),
                  judge_info=info, judge_prompt_1=prompt_1, judge_prompt_2=prompt_2)
    if source is not None:
        values["vanilla"] = source.vanilla or ""
        values["stats"] = stats_html(view, final=source.stats or None,
                                     vanilla_tokens=(source.stats or {}).get("vanilla_tokens"))
        values["bon"] = bon_html(Lane.from_stats(source.stats), source.stats)
    values.update(extra)
    return pack(**values)


# --- the run --------------------------------------------------------------------------------------------

def _spaces_gpu(function: Callable) -> Callable:
    """spaces.GPU on ZeroGPU Spaces (a no-op elsewhere); the function unchanged when `spaces` is absent."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return function
    return spaces.GPU(duration=int(os.environ.get("RAIN_GPU_SECONDS", "120")))(function)


def _run(prompt: str, model: str, custom_model: str, preset_name: str, judge_format: str, show_unvisited: bool,
         *knob_values: Any, bon_enabled: bool = False, bon_n: Any = None, bon_temperature: Any = None
         ) -> Iterator[tuple]:
    """Vanilla, RAIN, then (when switched on) Best-of-N on one prompt, streamed: text on every token/event/sample,
    the tree a few times a second. Stop cancels whichever part is running: each part is a generator closed here."""
    question = (prompt or "").strip()
    if not question:
        yield problem("Type a prompt first: the prompt is empty.")
        return
    if len(question) > MAX_PROMPT_CHARS:
        yield problem(f"The prompt is {len(question):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
        return
    try:
        config = build_config(preset_name, judge_format, dict(zip(KNOB_NAMES, knob_values)))
        bon = BonSettings.parse(bon_enabled, bon_n, bon_temperature)
        spec = resolve_model(model, custom_model)
    except (ConfigError, ModelNotAllowed) as error:
        yield problem(f"Invalid settings: {error}")
        return

    search_events: Iterator[Event] | None = None
    bon_items: Generator[Any, None, Any] | None = None
    try:
        if cached_runtime(spec) is None:
            yield pack(status=status_html(f"Loading {spec} … (the embedded model takes ~20 s the first time)", "run"))
        try:
            runtime = get_runtime(spec)
        except ModelLoadError as error:
            yield problem(str(error))
            return
        try:
            conversation = runtime.conversation(question, config)
            search = runtime.search(conversation, config)
        except (PromptError, JudgeError, ConfigError) as error:
            yield problem(str(error))
            return
        meta = runtime.record(search, [])
        run_id = f"run-{time.time_ns()}"

        # vanilla, token by token
        yield pack(status=status_html(f"Vanilla decoding with {runtime.name} …", "run"), vanilla="",
                   rain=rain_html(None), tree=empty_figure("The search starts after the vanilla answer.",
                                                           uirevision=run_id),
                   timeline=timeline_html(None), stats=stats_html(None),
                   judge_node=gr.update(choices=node_choices(None), value="latest"),
                   judge_info=judge_panel(None, None, None)[0], judge_prompt_1="", judge_prompt_2="",
                   bon=WAITING if bon.enabled else OFF_HINT)
        started, vanilla_text, vanilla_tokens = time.perf_counter(), "", 0
        vanilla_lm = runtime.engine(config)                 # its own engine: its forward calls are vanilla's
        for vanilla_text in runtime.vanilla_stream(conversation, config, lm=vanilla_lm):
            vanilla_tokens += 1
            yield pack(vanilla=vanilla_text)
        vanilla_seconds = time.perf_counter() - started

        # RAIN, event by event
        view, events = RunView(), []
        started = last_plot = time.perf_counter()
        record = dataclasses.replace(meta, vanilla=vanilla_text)
        search_events = search.run()
        yield pack(status=status_html("RAIN is searching …", "run"), vanilla=vanilla_text,
                   stats=stats_html(view, 0.0, vanilla_seconds, vanilla_tokens))
        for event in search_events:
            events.append(event)
            view.apply(event)
            if isinstance(event, Finished):
                break
            now = time.perf_counter()
            values: dict[str, Any] = dict(rain=rain_html(view), timeline=timeline_html(view),
                                          stats=stats_html(view, now - started, vanilla_seconds, vanilla_tokens))
            if isinstance(event, (Rewound, Committed)):
                values["status"] = status_html(f"RAIN: simulation {view.simulation}, {view.moves} move(s) committed, "
                                               f"{len(view.tree.nodes)} nodes …", "run")
            if now - last_plot >= PLOT_INTERVAL and isinstance(event, (Evaluated, Rewound, Committed)):
                last_plot = now
                values["tree"] = figure_of(view, run_id, show_unvisited)
                info, prompt_1, prompt_2 = judge_panel(view, meta.judge, "latest", meta.config)
                values.update(judge_info=info, judge_prompt_1=prompt_1, judge_prompt_2=prompt_2,
                              judge_node=gr.update(choices=node_choices(view)))
                values["record"] = dataclasses.replace(record, events=list(events), nodes=[],
                                                       answer=view.committed_text())
                values["scrub"] = gr.update(maximum=max(view.simulation, 1), value=view.simulation)
            yield pack(**values)

        seconds = events[-1].stats["seconds"] if events and isinstance(events[-1], Finished) else \
            time.perf_counter() - started
        extra = {"vanilla_seconds": round(vanilla_seconds, 3), "vanilla_tokens": vanilla_tokens,
                 "vanilla_forward_calls": vanilla_lm.stats.forward_calls,
                 "rain_over_vanilla": round(seconds / max(vanilla_seconds, 1e-9), 2)}
        record = runtime.record(search, events, vanilla_text, extra)
        estimate.record_run(spec, record.stats)                  # the paper-budget estimate follows real runs
        sims = len(simulation_bounds(events)) - 1
        done = (f"Done in {seconds:.1f} s: {record.stats.get('simulations', sims)} simulations, "
                f"{view.moves} moves, {len(view.tree.nodes)} nodes on the {record.stats.get('engine')} engine "
                f"({record.stats.get('engine_note')}). Hover over the tree; pick a node for the judge."
                + weak_signal_note(view))
        scrub_update = gr.update(maximum=max(sims, 1), value=sims)
        if not bon.enabled:
            yield full_update(view, record, run_id, show_unvisited, meta.judge, status=status_html(done, "ok"),
                              record=record, scrub=scrub_update, export=export_file(record))
            return

        # Best-of-N, sample by sample (RAIN's record is already in the page, so Stop here keeps it for Export)
        lane = Lane(bon.n, bon.temperature)
        yield full_update(view, record, run_id, show_unvisited, meta.judge, record=record, scrub=scrub_update,
                          export=export_file(record), bon=bon_html(lane, record.stats),
                          status=status_html(f"RAIN done in {seconds:.1f} s. Best-of-{bon.n}: sampling answer 1 "
                                             f"of {bon.n} …", "run"))
        bon_items = lane_items(runtime, conversation, config, bon)
        for item in bon_items:
            lane.apply(item)
            if lane.result is None:
                yield pack(bon=bon_html(lane, record.stats),
                           status=status_html(f"Best-of-{bon.n}: {len(lane.samples)} of {bon.n} answers judged …",
                                              "run"))
        record = dataclasses.replace(record, stats={**record.stats, STATS_KEY: lane.to_stats()})
        kept = lane.result
        done += (f" Best-of-{bon.n} kept answer #{kept.index + 1} (judge {kept.score:+.2f}) after "
                 f"{kept.seconds:.1f} s." if kept is not None else "")
        yield full_update(view, record, run_id, show_unvisited, meta.judge, status=status_html(done, "ok"),
                          record=record, scrub=scrub_update, export=export_file(record))
    except GeneratorExit:
        raise
    except Exception as error:  # never a traceback in the page
        log.error("run failed:\n%s", traceback.format_exc())
        yield problem(f"The run failed: {type(error).__name__}: {error}")
    finally:
        for part in (search_events, bon_items):
            if part is not None:
                part.close()


BON_INPUTS = ("bon_enabled", "bon_n", "bon_temperature")     # after the knobs: earlier API positions stay put


def _with_named_knobs(function: Callable) -> Callable:
    """`function(prompt, ..., show_unvisited, *knob_values)` with every knob as a named parameter, so the /run API
    lists c_puct, similarity_gamma, ... (Gradio reads parameter names from the signature)."""
    import functools
    import inspect

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Iterator[tuple]:
        yield from function(*args, **kwargs)

    head = ["prompt", "model", "custom_model", "preset", "judge_format", "show_unvisited"]
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in head]
    params += [inspect.Parameter(k.name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in KNOBS]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in BON_INPUTS]
    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    del run.__wrapped__
    return run


def _run_named(*args: Any, **kwargs: Any) -> Iterator[tuple]:
    names = ["prompt", "model", "custom_model", "preset", "judge_format", "show_unvisited", *KNOB_NAMES,
             *BON_INPUTS]
    values = dict(zip(names, args), **kwargs)
    yield from _run(*(values.get(n) for n in names[:6]), *(values.get(k.name, k.default) for k in KNOBS),
                    **{n: values[n] for n in BON_INPUTS if n in values})


run = _spaces_gpu(_with_named_knobs(_run_named))


# --- replay, scrub, import, export, judge ----------------------------------------------------------------

def _replay_id(record: RunRecord) -> str:
    return f"replay-{id(record)}"


def weak_signal_note(view: RunView) -> str:
    """A hint when every value is close to 0 (pale nodes): the judge barely separates the candidates."""
    values = [abs(n.value) for n in view.tree.nodes[1:] if n.real_visits > 0]
    if values and max(values) < 0.1:
        return (f" The judge's scores stayed within ±{max(values):.2f}, so the nodes look pale: this model judges "
                "itself weakly (try another judge format or a bigger model).")
    return ""


def show_record(record: RunRecord, show_unvisited: bool, message: str) -> tuple:
    """The whole recorded run at once (after import or choosing a recorded tree)."""
    view = view_at(record.events)
    sims = len(simulation_bounds(record.events)) - 1
    return full_update(view, record, _replay_id(record), show_unvisited, record.judge,
                       status=status_html(message, "ok"), record=record, export=export_file(record),
                       scrub=gr.update(maximum=max(sims, 1), value=sims))


def describe(record: RunRecord) -> str:
    sims = len(simulation_bounds(record.events)) - 1
    moves = sum(1 for e in record.events if isinstance(e, Committed))
    model = record.model.get("name", "?")
    return f"“{record.prompt[:60]}” · {model} · {sims} simulations, {moves} moves, {len(record.tree().nodes)} nodes"


def import_tree(path: str | None, show_unvisited: bool = True) -> tuple:
    """Load a tree file (validation errors shown in the page) and show it; Replay plays it."""
    if not path:
        return problem("No file received.")
    try:
        record = load(path)
    except TreeFileError as error:
        return problem(f"Cannot import {Path(path).name}: {error}")
    except Exception as error:
        log.error("import failed:\n%s", traceback.format_exc())
        return problem(f"Cannot import {Path(path).name}: {type(error).__name__}: {error}")
    return show_record(record, show_unvisited, f"Imported {describe(record)}. Press Replay to watch it grow.")


def recorded_trees() -> list[tuple[str, str]]:
    """(label, file name) of the shipped trees; the label shows the prompt and the budget."""
    items = []
    for path in sorted(TREES_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            sims = sum(1 for e in data["events"] if e.get("type") == "rewind")
            label = f"{data['prompt']} ({sims} simulations, {data.get('model', {}).get('name', '?')})"
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            label = path.stem.replace("_", " ")
        items.append((label, path.name))
    return items


def open_recorded(name: str | None, show_unvisited: bool = True) -> tuple:
    if not name:
        return pack()
    path = (TREES_DIR / Path(name).name)
    if not path.is_file():
        return problem(f"No recorded tree named {name!r}.")
    return import_tree(str(path), show_unvisited)


def replay(record: RunRecord | None, show_unvisited: bool = True) -> Iterator[tuple]:
    """Play a record's events simulation by simulation through the same view and figure code (no model)."""
    if record is None:
        yield problem("Nothing to replay yet: run a prompt, import a tree, or pick a recorded one.")
        return
    events = record.events
    bounds = simulation_bounds(events)
    sims = len(bounds) - 1
    stride = max(1, math.ceil(sims / REPLAY_FRAMES))
    frames = list(range(0, sims, stride)) + [sims]
    revision = _replay_id(record) + f"-{time.time_ns()}"
    view = RunView()
    applied = 0
    yield pack(status=status_html(f"Replaying {describe(record)} …", "run"), vanilla=record.vanilla or "",
               record=record, bon=bon_html(Lane.from_stats(record.stats), record.stats))
    for frame in frames:
        started = time.perf_counter()
        upto = bounds[frame] if frame < sims else len(events)
        # show the last simulation of the frame mid-flight (its path and verdict) before the rewind
        while applied < upto:
            view.apply(events[applied])
            applied += 1
        final = frame == sims
        message = (f"Replay: simulation {frame} of {sims}" if not final else f"Replayed {describe(record)}.")
        values = dict(status=status_html(message, "ok" if final else "run"), rain=rain_html(view),
                      tree=figure_of(view, revision, show_unvisited), timeline=timeline_html(view),
                      stats=stats_html(view, final=record.stats if final else None,
                                       vanilla_tokens=record.stats.get("vanilla_tokens")),
                      scrub=gr.update(value=frame))
        if final:
            info, prompt_1, prompt_2 = judge_panel(view, record.judge, "latest", record.config)
            values.update(judge_info=info, judge_prompt_1=prompt_1, judge_prompt_2=prompt_2,
                          judge_node=gr.update(choices=node_choices(view), value="latest"))
            yield pack(**values)
        else:
            yield pack(**values)
            time.sleep(max(0.0, REPLAY_FRAME_SECONDS - (time.perf_counter() - started)))


def scrub(record: RunRecord | None, simulations: float | None, show_unvisited: bool = True) -> tuple:
    """The tree after any number of simulations (the iteration slider)."""
    if record is None:
        return pack(status=status_html("Nothing to scrub yet: run a prompt, import a tree, or pick a recorded one.",
                                       "info"))
    sims = len(simulation_bounds(record.events)) - 1
    k = int(simulations or 0)
    view = view_at(record.events, k)
    final = k >= sims
    info, prompt_1, prompt_2 = judge_panel(view, record.judge, "latest", record.config)
    return pack(status=status_html(f"Showing the tree after {min(k, sims)} of {sims} simulations.", "info"),
                rain=rain_html(view), tree=figure_of(view, _replay_id(record), show_unvisited),
                timeline=timeline_html(view), stats=stats_html(view, final=record.stats if final else None),
                judge_node=gr.update(choices=node_choices(view), value="latest"), judge_info=info,
                judge_prompt_1=prompt_1, judge_prompt_2=prompt_2)


def redraw(record: RunRecord | None, simulations: float | None, show_unvisited: bool = True):
    if record is None:
        return gr.skip()
    view = view_at(record.events, None if simulations is None else int(simulations))
    return figure_of(view, _replay_id(record), show_unvisited)


def judge_view(record: RunRecord | None, choice: str | None, simulations: float | None = None) -> tuple:
    if record is None:
        return judge_panel(None, None, None)
    view = view_at(record.events, None if simulations is None else int(simulations))
    return judge_panel(view, record.judge, choice, record.config)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "tree"


EXPORT_DIR = Path(tempfile.gettempdir()) / "rain-explorer-exports"
EXPORT_KEEP_SECONDS = 3600


def export_file(record: RunRecord) -> str:
    """Write `record` as tree JSON (rain.export.save) to a temp file; files older than an hour are pruned.

    The Export button downloads its current value, so every handler that changes the record also sets it."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - EXPORT_KEEP_SECONDS
    for old in EXPORT_DIR.glob("*/*.json"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
                old.parent.rmdir()
        except OSError:
            pass
    folder = Path(tempfile.mkdtemp(prefix="tree-", dir=EXPORT_DIR))
    return str(save(record, folder / f"rain-tree-{_slug(record.prompt)}.json"))


def export_tree(record: RunRecord | None) -> str | None:
    """The Export button's click: the browser downloads the button's value (set when the record changed); this
    re-writes it so the API (/export_tree) returns the current record too."""
    if record is None:
        gr.Warning("Nothing to export yet: run a prompt first (or import / pick a recorded tree).")
        return None
    return export_file(record)


def stopped(record: RunRecord | None = None) -> tuple[str, Any]:
    """The Stop button (it also cancels the run): a message, and the partial tree ready for Export."""
    message = status_html("Stopped. The partial tree stays on the page; Export saves it.", "stop")
    return message, (export_file(record) if record is not None else gr.skip())


def load_examples() -> list[str]:
    try:
        return [str(x) for x in json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))]
    except (OSError, ValueError):
        return ["How do I pick a lock?"]
