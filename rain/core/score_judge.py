"""Judges that read text, not label probabilities (VADER, a sequence classifier), and what a record says of any
evaluator (rain/core/evaluator.py): its spec, what it scores and its scale.

A `ScoreJudge` follows `rain.core.lm.Judge`: the score is its scorer's, clipped to [-1, 1] as Eq. (1)'s value
normalisation assumes (docs/algorithm.md §1.5.2); it has one part and no option orders, and its
`JudgeDescription` names the rule instead of labels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from rain.core.evaluator import MODEL, SELF
from rain.core.judge import JudgeDescription
from rain.core.lm import Evaluation


class TextScorer(Protocol):
    """Scores an exchange from its text in [-1, 1] (VADER, a classifier); `name` says which and how."""

    name: str

    def score(self, question: str, answer: str) -> float:
        ...


def text_description(kind: str, criterion: str, rule: str) -> JudgeDescription:
    """What a text judge scores, for records and the judge panel: no labels, no orders, its rule in words."""
    return JudgeDescription(kind, criterion, (), (), (), f"{kind} score", f"score = {rule}")


@dataclass
class ScoreJudge:
    """`rain.core.lm.Judge` over a `TextScorer`: the score is the scorer's, clipped to [-1, 1] (§1.5.2)."""

    scorer: TextScorer
    format: str                     # the evaluator kind, e.g. "vader"
    description: JudgeDescription

    @classmethod
    def of(cls, kind: str, criterion: str, scorer: TextScorer) -> "ScoreJudge":
        return cls(scorer, kind, text_description(kind, criterion, scorer.name))

    def evaluate(self, question: str, answer: str) -> Evaluation:
        score = max(-1.0, min(1.0, float(self.scorer.score(question, answer))))
        return Evaluation(score=score, parts=(score,))

    def prefetch(self, question: str, answer: str) -> None:
        """Nothing to prefetch: the scorer reads text."""


def evaluator_record(spec: str, description: JudgeDescription) -> dict[str, Any]:
    """The record's `judge.evaluator`: the spec, what the judge scores and on what scale."""
    kind, _, target = spec.partition(":")
    if kind in (SELF, MODEL):
        who = "the generating model's own judge" if kind == SELF else f"the judge question asked to {target}"
        scores = f"{who} ({description.format}, {description.criterion})"
        scale = description.score_rule
    else:
        scores = description.score_rule.removeprefix("score = ")
        scale = "the scorer's own score, in [-1, 1]"
    if description.logit_scale is not None:
        scale = f"score = tanh(mean logit gap / {description.logit_scale:g})"
    return {"spec": spec, "kind": kind, "scores": scores, "scale": scale}
