"""Evaluators: which judge the search asks (docs/algorithm.md §1.2 "Self-evaluation").

RAIN's search asks one judge for a score in [-1, 1] of each rolled-out answer. `self` is the paper's method: the
generating model judges itself (rain/core/judge.py). Any other evaluator keeps the search exactly as it is and
swaps the judge, so it is no longer RAIN's self-evaluation; it shows which half of RAIN does the work, the search
or the judge. The spec is text, a field of the config (`RainConfig.evaluator`), so records, replays, forks and
eval folders carry it:
- `self`: the model's own judge, every format and principle (the default);
- `vader`: VADER's compound score of the judged text (an offline lexicon; for sentiment);
- `model:ID_OR_DIR`: another causal LM asked the same judge question (both orders, the same format, its own auto
  scale), on its own engine and precision;
- `classifier:ID_OR_DIR`: a sequence classifier or reward model (rain/backends/evaluators.py reads its labels);
- `python:NAME`: an object given from Python that follows `rain.core.lm.Judge`; a record names it, nothing can
  rebuild it from the name.
This module is the spec alone and imports no torch (the config checks a spec with it; the page imports the
config); judges that read text instead of label probabilities are in rain/core/score_judge.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rain.core.errors import RainError

SELF, VADER, MODEL, CLASSIFIER, PYTHON = "self", "vader", "model", "classifier", "python"
KINDS = (SELF, VADER, MODEL, CLASSIFIER, PYTHON)
NAMED = (MODEL, CLASSIFIER, PYTHON)                  # kinds that take ":TARGET"


class EvaluatorError(RainError, ValueError):
    """An evaluator spec that names no usable judge; the message is one line."""


@dataclass(frozen=True)
class EvaluatorSpec:
    """A parsed `--evaluator` value: its kind and, for model/classifier/python, what it names."""

    kind: str
    target: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind

    @property
    def is_self(self) -> bool:
        return self.kind == SELF


def evaluator_problem(text: Any) -> str | None:
    """Why `text` is not an evaluator spec, or None (the config's check; what it names is checked on loading)."""
    if not isinstance(text, str):
        return f"must be text, got {type(text).__name__}"
    kind, separator, target = text.partition(":")
    if kind not in KINDS:
        return (f"unknown evaluator {text!r}; choose self, vader, model:ID_OR_DIR, classifier:ID_OR_DIR "
                "(or pass a judge object from Python)")
    if kind in NAMED and not target.strip():
        return f"evaluator {kind}: needs what it names, e.g. {kind}:ID_OR_DIR"
    if kind not in NAMED and separator:
        return f"evaluator {kind} takes no ':{target}'"
    return None


def parse_evaluator(text: str) -> EvaluatorSpec:
    """The spec of `text`, or EvaluatorError naming the problem."""
    problem = evaluator_problem(text)
    if problem is not None:
        raise EvaluatorError(problem)
    kind, _, target = text.partition(":")
    return EvaluatorSpec(kind, target.strip())
