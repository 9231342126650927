"""Loading an evaluator (rain/core/evaluator.py): the one code path for every judge that is not the generating
model's own, used by the search (`--evaluator`) and by eval's external judges (`--judge`) alike.

- `vader`: `VaderScorer`, VADER's compound score of question + answer (the IMDB review: opening and continuation);
- `classifier:ID_OR_DIR`: `ClassifierScorer`, a sequence classifier or reward model read by `classifier_rule`;
- `model:ID_OR_DIR`: `ModelEvaluator`, another causal LM asked our `SelfJudge` question (both orders, the
  config's format and principle) on an engine of its own, in the judge's precision; its auto scale is calibrated
  on its own gaps (rain/backends/calibration.py) and stored under its own weights' fingerprint.
`load_evaluator` loads once and checks what can be checked before any run (the folder, the labels, that the
tokenizer spells the judge's labels); `Evaluator.judge(config)` gives each run a fresh judge.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rain.backends import models
from rain.backends.calibration import JudgeScale, calibrate, resolve_scale, store_key, weights_fingerprint
from rain.backends.engine import choose_engine, model_context
from rain.backends.precision import name, resolve_precision
from rain.core.config import RainConfig
from rain.core.evaluator import CLASSIFIER, MODEL, VADER, EvaluatorError, EvaluatorSpec, parse_evaluator
from rain.core.judge import JudgeDescription, JudgeError, SelfJudge
from rain.core.lm import Judge
from rain.core.score_judge import ScoreJudge, TextScorer, evaluator_record, text_description


class Evaluator(Protocol):
    """A loaded evaluator: a fresh judge per run, and the judge's scale for a config."""

    spec: str

    def judge(self, config: RainConfig, engine: bool = True) -> Judge:
        """A fresh judge for one run; `engine=False`: for the record only (prompts, description), no compute."""
        ...

    def scale(self, config: RainConfig) -> JudgeScale:
        ...


# --- judges that read text -----------------------------------------------------------------------------------

@dataclass
class VaderScorer:
    """VADER compound of question + answer (the whole review) in [-1, 1]; the lexicon ships in the wheel."""

    name: str = "vaderSentiment 3.3.2 (compound of the whole review)"
    analyzer: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self.analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self.analyzer = SentimentIntensityAnalyzer()

    def score(self, question: str, answer: str) -> float:
        return float(self.analyzer.polarity_scores(question + answer)["compound"])


# Sequence-classifier labels (normalised: lower case, "-"/" " -> "_") read as "the answer is fine" or not.
GOOD_LABELS = frozenset({"safe", "harmless", "benign", "positive", "acceptable", "non_toxic", "nontoxic",
                         "not_toxic", "neutral", "ok", "appropriate"})
BAD_LABELS = frozenset({"unsafe", "harmful", "toxic", "toxicity", "negative", "hate", "offensive", "injection",
                        "jailbreak", "inappropriate", "not_safe", "nsfw"})


@dataclass
class ClassifierScorer:
    """AutoModelForSequenceClassification as a judge: score = 2·P(safe) - 1.

    P(safe) is, in order: the softmax probability of the label named safe/harmless/positive/... (GOOD_LABELS);
    else, with two labels, 1 - P(label named unsafe/toxic/negative/...); multi-label models (sigmoid per label)
    use 1 - sigmoid(bad label) or sigmoid(good label); a single unnamed logit (a reward model) uses its sigmoid
    and reads (question, answer) as a pair. Labelled classifiers read the answer alone, as toxicity and safety
    classifiers are trained to.
    """

    name: str
    model: Any
    tokenizer: Any
    index: int                      # the label read
    good: bool                      # True: P(label) = P(safe); False: P(safe) = 1 - P(label)
    sigmoid: bool
    pair: bool
    label: str = ""

    def score(self, question: str, answer: str) -> float:
        import torch

        inputs = (self.tokenizer(question, answer, truncation=True, return_tensors="pt") if self.pair
                  else self.tokenizer(answer, truncation=True, return_tensors="pt"))
        with torch.no_grad():
            logits = self.model(**inputs.to(self.model.device)).logits[0].float()
        probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
        p = float(probs[self.index])
        return 2.0 * (p if self.good else 1.0 - p) - 1.0


def classifier_rule(id2label: dict[int, str], multi_label: bool) -> tuple[int, bool, bool, bool]:
    """(label index, good?, sigmoid?, pair?) per ClassifierScorer's rule; EvaluatorError when no label is readable."""
    names = {int(i): str(n).strip().lower().replace("-", "_").replace(" ", "_") for i, n in id2label.items()}
    good = [i for i, n in sorted(names.items()) if n in GOOD_LABELS]
    bad = [i for i, n in sorted(names.items()) if n in BAD_LABELS]
    if len(names) == 1 and not good and not bad:
        return 0, True, True, True
    sigmoid = multi_label or len(names) == 1
    if good and not (sigmoid and bad):
        return good[0], True, sigmoid, False
    if bad and (sigmoid or len(names) == 2):
        return bad[0], False, sigmoid, False
    raise EvaluatorError(f"cannot tell which classifier label means safe: {sorted(id2label.values())} "
                         f"(known: {', '.join(sorted(GOOD_LABELS))})")


@dataclass
class TextEvaluator:
    """VADER or a classifier as the search's evaluator: a `ScoreJudge` per run, no scale."""

    spec: str
    kind: str
    scorer: TextScorer

    def judge(self, config: RainConfig, engine: bool = True) -> ScoreJudge:
        return ScoreJudge.of(self.kind, config.criterion, self.scorer)

    def scale(self, config: RainConfig) -> JudgeScale:
        return JudgeScale(1.0, f"unused by evaluator {self.spec}")


@dataclass
class ObjectEvaluator:
    """Any object that follows `rain.core.lm.Judge`, given from Python (`Runtime.use_judge`); every run shares it."""

    spec: str
    obj: Judge

    def judge(self, config: RainConfig, engine: bool = True) -> Judge:
        return self.obj

    def scale(self, config: RainConfig) -> JudgeScale:
        return JudgeScale(1.0, f"unused by evaluator {self.spec}")


def judge_record(judge: Judge, config: RainConfig) -> dict[str, Any]:
    """The record's `judge`: format, criterion, the prompts (a judge with none: []), its description and the
    evaluator (spec, what it scores, its scale)."""
    prompt, wording = getattr(judge, "prompt", None), getattr(judge, "wording", None)
    description = getattr(judge, "description", None)
    if not isinstance(description, JudgeDescription):
        description = text_description(config.evaluator.partition(":")[0], config.criterion,
                                       type(judge).__name__ + ".evaluate")
    return {"format": getattr(judge, "format", description.format), "criterion": config.criterion,
            "templates": list(prompt.templates) if prompt is not None else [],
            "exchange": wording.exchange if wording is not None else "",
            "principle": config.principle, "principle_good": config.principle_good,
            "description": description.to_dict(), "evaluator": evaluator_record(config.evaluator, description)}


# --- another causal LM ---------------------------------------------------------------------------------------

@dataclass
class ModelEvaluator:
    """Another causal LM asked our judge question, on a fresh engine of its own per run."""

    spec: str
    model: Any
    tokenizer: Any
    scales: dict[tuple[str, ...], JudgeScale] = field(default_factory=dict)   # scale_key(config) -> auto scale

    def __post_init__(self):
        self.codec = models.HFCodec(self.tokenizer, self.model)

    def check(self, config: RainConfig) -> None:
        """Build the judge's prompts on no engine: a label this tokenizer cannot spell as one token, or a yes/no
        format without a chat template, is refused here, before any run."""
        self._judge(None, config, 1.0)

    def _judge(self, lm, config: RainConfig, scale: float) -> SelfJudge:
        try:
            return SelfJudge(lm, self.codec, self.tokenizer, config.judge_format, config.criterion, scale,
                             config.principle, config.principle_good)
        except JudgeError as error:
            raise EvaluatorError(f"evaluator {self.spec}: {error}") from None

    def engine(self, config: RainConfig):
        max_length = min(config.max_length, model_context(self.model))
        return choose_engine(self.model, max_length).build(self.model, config.kv_cache_bytes)

    def judge(self, config: RainConfig, engine: bool = True) -> SelfJudge:
        return self._judge(self.engine(config) if engine else None, config, self.scale(config).value)

    def scale(self, config: RainConfig) -> JudgeScale:
        """The config's number, or "auto" calibrated on this model's own gaps, stored under its fingerprint."""
        engine = functools.cache(lambda: self.engine(config))         # built at most once, only to calibrate
        return resolve_scale(config, self.scales, lambda: calibrate(self._judge(engine(), config, 1.0)),
                             lambda key: store_key(weights_fingerprint(self.model), f"{MODEL} evaluator",
                                                   engine().name, *key))


# --- loading ---------------------------------------------------------------------------------------------------

def load_evaluator(spec: str | EvaluatorSpec, config: RainConfig, device: str | None = None,
                   judge_dtype: str = "auto", trust_remote_code: bool = False) -> Evaluator:
    """The evaluator `spec` names, loaded and checked against `config`'s judge; EvaluatorError or ModelLoadError
    (one line) when it cannot serve. `self` and `python:` are not loaded here (the runtime's own judge, an object)."""
    parsed = parse_evaluator(spec) if isinstance(spec, str) else spec
    if parsed.kind in (MODEL, CLASSIFIER) and _names_a_folder(parsed.target) and not Path(parsed.target).expanduser().exists():
        raise EvaluatorError(f"evaluator {parsed}: no such folder {parsed.target}")
    if parsed.kind == VADER:
        return TextEvaluator(VADER, VADER, VaderScorer())
    if parsed.kind == CLASSIFIER:
        if not is_classifier(parsed.target, trust_remote_code):
            raise EvaluatorError(f"evaluator {parsed}: not a sequence classifier (its config names no "
                                 "*ForSequenceClassification architecture); a causal LM is model:ID_OR_DIR")
        return TextEvaluator(str(parsed), CLASSIFIER, load_classifier(parsed.target, device, "auto",
                                                                     trust_remote_code))
    if parsed.kind == MODEL:
        evaluator = ModelEvaluator(str(parsed), *load_judge_model(parsed.target, device, judge_dtype,
                                                                  trust_remote_code))
        evaluator.check(config)
        return evaluator
    raise EvaluatorError(f"evaluator {parsed} is not loaded from a spec (self is the runtime's own judge; a "
                         "python: judge is passed as an object)")


def _names_a_folder(target: str) -> bool:
    """A path, not a hub id: starts with /, ~ or ., or names a .gguf file."""
    return target.startswith(("/", "~", ".")) or target.endswith(".gguf")


def load_judge_model(target: str, device: str | None, judge_dtype: str, trust_remote_code: bool):
    """(model, tokenizer) of a causal LM judge, in the judge's precision (rain/backends/precision.py: auto is
    float32 on CPU, the generation's on GPU)."""
    precision = resolve_precision("auto", judge_dtype, models.resolve_device(device))
    return models.load_causal_lm(target, device=device, dtype=name(precision.judge_dtype),
                                 trust_remote_code=trust_remote_code)


def is_classifier(spec: str, trust_remote_code: bool) -> bool:
    """By the config's architectures; GGUF files and the embedded model are causal LMs."""
    from transformers import AutoConfig

    if spec in ("", models.EMBEDDED_SPEC) or spec.endswith(".gguf"):
        return False
    try:
        config = AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if Path(spec).expanduser().is_dir():
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise models.ModelLoadError(f"cannot read judge model folder {spec!r}: {detail}") from None
        raise models.ModelLoadError(f"unknown judge model {spec!r}: not a local file or folder, and not found on the "
                             "Hugging Face hub (offline?)") from None
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))


def load_classifier(spec: str, device: str | None, dtype: str, trust_remote_code: bool) -> ClassifierScorer:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch_device = models.resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            spec, dtype=models.resolve_dtype(dtype, torch_device), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, ImportError, KeyError) as error:
        raise models.ModelLoadError(f"cannot load judge classifier {spec!r}: {str(error).strip().splitlines()[0]}") from None
    model.to(torch_device).eval()
    multi = getattr(model.config, "problem_type", None) == "multi_label_classification"
    index, good, sigmoid, pair = classifier_rule(model.config.id2label, multi)
    label = str(model.config.id2label[index])
    shown = f"P({label})" if good else f"1-P({label})"
    return ClassifierScorer(f"{spec} ({shown})", model, tokenizer, index, good, sigmoid, pair, label)


def external_judge_config(config: RainConfig, tokenizer) -> RainConfig:
    """eval's causal-LM judge asks yes/no with a chat template, else ab_soft (the config's criterion and scale)."""
    judge_format = "yesno_logit" if getattr(tokenizer, "chat_template", None) else "ab_soft"
    return dataclasses.replace(config, judge_format=judge_format, principle="", principle_good="yes")
