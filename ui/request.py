"""The Run button's request, parsed in one place: the page's (or the /run API's) values by name, into the model to
load and the session's `RunRequest`, every value checked before any model is touched."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from rain.core.config import ConfigError
from rain.core.errors import RainError
from rain.core.evaluator import MODEL, SELF
from rain.runs.session import RunRequest
from ui.bon import parse_best_of_n
from ui.knobs import KNOBS, build_config
from ui.runtimes import resolve_model

MAX_PROMPT_CHARS = 20_000
HEAD = ("prompt", "model", "custom_model", "preset", "judge_format", "show_unvisited")
BON_INPUTS = ("bon_enabled", "bon_n", "bon_temperature")     # after the knobs: earlier API positions stay put
PRINCIPLE_INPUTS = ("principle", "principle_good")             # after those, for the same reason
EVALUATOR_INPUTS = ("evaluator", "evaluator_model")            # after those, for the same reason
INPUTS = (*HEAD, *(k.name for k in KNOBS), *BON_INPUTS, *PRINCIPLE_INPUTS, *EVALUATOR_INPUTS)   # /run's, in page order
PAGE_INPUTS = (*INPUTS, "gate")     # the page also sends its State's gate (ui/run.py); the API has none


class PromptRefused(RainError, ValueError):
    """The prompt is empty or too long (said as it is, not as "Invalid settings")."""


@dataclass(frozen=True)
class AppRequest:
    """A checked request: which model, what to run on it, and how to draw the tree."""

    spec: str                    # the model to load (ui.runtimes.resolve_model)
    run: RunRequest
    show_unvisited: bool


def parse_request(values: Mapping[str, Any]) -> AppRequest:
    """`values` by input name (missing knobs take their defaults); raises PromptRefused, or another RainError
    (ConfigError, ModelNotAllowed) naming the setting, with a one-line message."""
    question = (values.get("prompt") or "").strip()
    if not question:
        raise PromptRefused("Type a prompt first: the prompt is empty.")
    if len(question) > MAX_PROMPT_CHARS:
        raise PromptRefused(f"The prompt is {len(question):,} characters; the limit is {MAX_PROMPT_CHARS:,}.")
    knobs = {k.name: values.get(k.name, k.default) for k in KNOBS}
    config = build_config(values.get("preset"), values.get("judge_format"), knobs)
    principle = (values.get("principle") or "").strip()          # empty: the preset's own question
    if principle:                                                # refused with the library's one-line message
        config = config.replace(principle=principle, principle_good=values.get("principle_good") or "yes")
    evaluator = evaluator_spec(values.get("evaluator"), values.get("evaluator_model"))
    if evaluator != SELF:
        config = config.replace(evaluator=evaluator)
    best_of_n = parse_best_of_n(values.get("bon_enabled", False), values.get("bon_n"), values.get("bon_temperature"))
    spec = resolve_model(values.get("model"), values.get("custom_model"))
    return AppRequest(spec, RunRequest(question, config, best_of_n=best_of_n),
                      bool(values.get("show_unvisited", True)))


def evaluator_spec(choice: str | None, model: str | None) -> str:
    """The Evaluator dropdown (self, vader or model) and its text box as a spec (rain/core/evaluator.py); another
    model is held to the same Space allowlist as the generation model."""
    choice = (choice or SELF).strip()
    if choice != MODEL:
        return choice
    text = (model or "").strip()
    if not text:
        raise ConfigError("Evaluator “another model”: type its hub id or local folder in the box below it.")
    return f"{MODEL}:{resolve_model(None, text)}"


def with_named_inputs(handler: Callable[[Mapping[str, Any]], Iterator[tuple]]) -> Callable[..., Iterator[tuple]]:
    """`handler(values by name)` as a function of the page's inputs, positional or by name, whose signature names
    every input, so the /run API lists c_puct, similarity_gamma, ... (Gradio reads the names from it)."""
    @functools.wraps(handler)
    def run(*args: Any, **kwargs: Any) -> Iterator[tuple]:
        yield from handler({**dict(zip(PAGE_INPUTS, args)), **kwargs})

    run.__signature__ = inspect.Signature(                  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in INPUTS]
        + [inspect.Parameter("gate", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)])
    del run.__wrapped__
    return run
