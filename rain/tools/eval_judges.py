"""External judges for `eval`: VADER or AFINN (offline sentiment lexicons), a sequence classifier (safety,
toxicity, a reward model) or a causal LM asked as our SelfJudge, each behind the one-method `Scorer` protocol.

They load through rain/backends/evaluators.py, the code path the search's `--evaluator` takes, so an answer
scored by `--judge X` and a search run with `--evaluator model:X` or `classifier:X` read the judge the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from rain.backends import models
from rain.backends.evaluators import ModelEvaluator, external_judge_config, is_classifier, load_classifier
from rain.core.config import RainConfig
from rain.core.errors import RainError
from rain.tools.sentiment import AFINN, VADER, AfinnScorer, VaderScorer


class EvalError(RainError, ValueError):
    """Bad evaluation input or an output folder from a different setup; the message is one line."""


class Scorer(Protocol):
    """Scores a final answer in [-1, 1] (higher = better under the criterion)."""

    name: str

    def score(self, question: str, answer: str) -> float:
        ...


@dataclass
class JudgeScorer:
    """A judge (`rain.core.lm.Judge`) as a Scorer; identical answers are scored once, so they tie exactly."""

    name: str
    judge: Any                      # rain.core.lm.Judge, e.g. rain.core.judge.SelfJudge
    cache: dict[tuple[str, str], float] = field(default_factory=dict)

    def score(self, question: str, answer: str) -> float:
        key = (question, answer)
        if key not in self.cache:
            self.cache[key] = float(self.judge.evaluate(question, answer).score)
        return self.cache[key]


DEFAULT_LOGIT_SCALE = 0.05           # SelfJudge's default, when no scale is given


def load_external_judge(spec: str, device: str | None = None, dtype: str = "auto", trust_remote_code: bool = False,
                        criterion: str = "harm", kv_cache_bytes: int = 1 << 30,
                        logit_scale: float | str | None = None) -> Scorer:
    """vader, afinn, a sequence classifier, or a causal LM (SelfJudge: yesno_logit with a chat template, else
    ab_soft), loaded as the search's evaluators are (rain/backends/evaluators.py).

    `logit_scale` (yesno_logit only; "auto": calibrated on the judge model's own gaps) defaults to SelfJudge's;
    win rates do not depend on it (tanh is monotonic).
    """
    if spec == VADER:                              # the IMDB task's offline sentiment judges (rain/tools/sentiment.py)
        return VaderScorer()
    if spec == AFINN:
        return AfinnScorer()
    if is_classifier(spec, trust_remote_code):
        return load_classifier(spec, device, dtype, trust_remote_code)
    model, tokenizer = models.load_causal_lm(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    scale = DEFAULT_LOGIT_SCALE if logit_scale is None else logit_scale
    config = external_judge_config(RainConfig(criterion=criterion, judge_logit_scale=scale,
                                              kv_cache_bytes=kv_cache_bytes), tokenizer)
    evaluator = ModelEvaluator(spec, model, tokenizer)
    evaluator.check(config)
    return JudgeScorer(f"{spec} ({config.judge_format})", evaluator.judge(config))


def load_external_judges(specs: str, **options: Any) -> list[Scorer]:
    """`--judge A,B`: each judge once, in order (see `load_external_judge`)."""
    names = list(dict.fromkeys(name.strip() for name in specs.split(",") if name.strip()))
    if not names:
        raise EvalError("--judge names no judge")
    return [load_external_judge(name, **options) for name in names]
