"""Self-evaluation (docs/algorithm.md §1.2 "Self-evaluation", §1.3 getv, §2): the model judges its own partial answer.

Every format asks two questions whose label meanings are swapped and averages the two scores, as the paper
does to cancel a bias towards one label. Formats:
- `ab_hard`: the authors' few-shot multiple choice "(A)/(B)", one hard vote per order: score in {-1, 0, 1}.
- `ab_soft`: the same prompt, each order scored by its renormalised label probabilities.
- `yesno_prob`, `yesno_logit`: a chat-template question answered "Yes"/"No" at the next position; the two
  orders ask "harmful?" and "harmless?". `_prob` scores p(good)-p(bad) renormalised over the two labels, per
  order; `_logit` averages the two orders' logit differences first (so a bias towards "Yes" or "No" cancels
  exactly in log-odds) and squashes with tanh(mean / logit_scale). A small model's gap between harmful and
  harmless answers is a few hundredths of a logit (see judge-check), so the scale sets how loudly the search
  hears it next to Eq. (1)'s exploration term.
All scores lie in [-1, 1] (docs/algorithm.md §1.5.2: the PUCT normalisation assumes that). The prompt texts are ours.
Label ids come from the model's own tokenizer; a label that is not one token is refused.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from rain.config import JudgeFormat
from rain.errors import RainError
from rain.lm import Evaluation, LanguageModel, TextCodec

ASSETS = Path(__file__).resolve().parent.parent / "assets"
FORMATS: tuple[str, ...] = typing.get_args(JudgeFormat)    # the config's Literal: one list of the formats
EXCHANGE = "{exchange}"              # placeholder in the prompt templates shown to people
TINY = 1e-45                         # a label probability that underflowed float32 counts as this


def order_part(judge_format: str, probs: Mapping[str, float], good_label: str, bad_label: str | None = None) -> float:
    """One order's contribution from its good and bad labels' probabilities (other options count for neither).

    ab_hard: +1 if p(good) > p(bad) (strict, as getv) else -1; ab_soft, yesno_prob: (p(good) - p(bad)) /
    (p(good) + p(bad)); yesno_logit: the logit gap log p(good) - log p(bad) (both labels share one softmax,
    so this equals the difference of their logits). With two options `bad_label` defaults to the other one.
    """
    good = probs[good_label]
    bad = probs[bad_label] if bad_label is not None else next(p for label, p in probs.items() if label != good_label)
    if judge_format == "ab_hard":
        return 1.0 if good > bad else -1.0
    if judge_format == "yesno_logit":
        return math.log(max(good, TINY)) - math.log(max(bad, TINY))
    return (good - bad) / max(good + bad, 1e-12)


def combine_parts(judge_format: str, parts: Sequence[float], logit_scale: float) -> float:
    """The score in [-1, 1]: the mean of the orders' parts; yesno_logit squashes the mean gap: tanh(mean / scale)."""
    mean = sum(parts) / len(parts)
    return math.tanh(mean / logit_scale) if judge_format == "yesno_logit" else mean


# --- the judge's description: what each order asks, what each label means, how the score is made -------------

@dataclass(frozen=True)
class JudgeOrder:
    """One ordering of the options: what it asks, each label's meaning in it, and its good and bad labels."""

    asks: str                        # for people, e.g. "(A) harmless, (B) harmful" or "“harmful?”"
    meanings: dict[str, str]         # label -> meaning in this order, e.g. {"A": "harmless", "B": "harmful"}
    good: str                        # the label whose probability counts for the answer
    bad: str                         # ... and against it (any other label counts for neither)
    template: str = ""               # the full judge prompt with EXCHANGE where the exchange goes


@dataclass(frozen=True)
class JudgeDescription:
    """Everything a front end needs to show a judge's verdict without knowing the judge (N options, K orders).

    The score is `combine_parts` of the per-order parts (`order_part` with each order's good and bad label).
    """

    format: str
    criterion: str
    labels: tuple[str, ...]          # the options' labels, read as next-token probabilities
    label_ids: tuple[int, ...]       # their token ids (empty when described without a tokenizer)
    orders: tuple[JudgeOrder, ...]
    part_name: str                   # what an order's part is, e.g. "logit gap (good − bad)"
    score_rule: str                  # how the parts become the score, in words
    logit_scale: float | None = None  # yesno_logit: score = tanh(mean part / logit_scale)
    exchange: str = ""               # the exchange template, with {question} and {answer}

    def parts(self, probs: Sequence[Mapping[str, float]]) -> list[float] | None:
        """Each order's part from its label probabilities; None when they do not name this judge's labels."""
        if len(probs) != len(self.orders) or self.format not in FORMATS:
            return None
        if any(order.good not in p or order.bad not in p for order, p in zip(self.orders, probs)):
            return None
        return [order_part(self.format, p, order.good, order.bad) for order, p in zip(self.orders, probs)]

    def score(self, parts: Sequence[float]) -> float | None:
        """The score from the orders' parts; None for a yes/no logit judge whose scale was not recorded."""
        if self.format == "yesno_logit" and self.logit_scale is None:
            return None
        return combine_parts(self.format, parts, self.logit_scale or 1.0)

    def formula(self, parts: Sequence[float]) -> str:
        """The score rule with these parts' numbers filled in."""
        if self.format == "yesno_logit":
            scale = "scale (not recorded)" if self.logit_scale is None else f"scale {self.logit_scale:g}"
            return f"score = tanh(mean logit gap {sum(parts) / len(parts):+.4f} / {scale})"
        return self.score_rule

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JudgeDescription":
        """Inverse of to_dict (raises KeyError/TypeError on a malformed object)."""
        values = dict(data)
        values["orders"] = tuple(JudgeOrder(**order) for order in values["orders"])
        values["labels"], values["label_ids"] = tuple(values["labels"]), tuple(values["label_ids"])
        return cls(**values)

    @classmethod
    def of_record(cls, judge: Mapping[str, Any] | None, config: Mapping[str, Any] | None) -> "JudgeDescription":
        """A record's judge: its stored description, else (files written before it) described from its format."""
        judge, config = dict(judge or {}), dict(config or {})
        if isinstance(judge.get("description"), Mapping):
            try:
                return cls.from_dict(judge["description"])
            except (KeyError, TypeError):
                pass
        scale = config.get("judge_logit_scale")         # "auto" alone (no number recorded): nothing to recompute
        return describe(str(judge.get("format", "yesno_logit")), str(judge.get("criterion", "harm")),
                        float(scale) if isinstance(scale, (int, float)) else None,
                        tuple(judge.get("templates") or ()), (), str(judge.get("exchange") or ""))


def describe(judge_format: str, criterion: str, logit_scale: float | None = None,
             templates: Sequence[str] = (), label_ids: Sequence[int] = (), exchange: str = "") -> JudgeDescription:
    """The description of one of our formats (order 0: (A) good / "bad?"; order 1: (A) bad / "good?")."""
    wording = WORDINGS.get(criterion, WORDINGS["harm"])
    bad, good = wording.bad_word, wording.good_word
    if judge_format.startswith("ab"):
        labels = ("A", "B")
        orders = [(f"(A) {good}, (B) {bad}", {"A": good, "B": bad}, "A", "B"),
                  (f"(A) {bad}, (B) {good}", {"A": bad, "B": good}, "B", "A")]
    else:
        labels = ("Yes", "No")
        orders = [(f"“{bad}?”", {"Yes": bad, "No": good}, "No", "Yes"),
                  (f"“{good}?”", {"Yes": good, "No": bad}, "Yes", "No")]
    templates = list(templates) + [""] * (len(orders) - len(templates))
    if judge_format == "yesno_logit":
        part_name, rule = "logit gap (good − bad)", "score = tanh(mean logit gap / scale)"
    elif judge_format == "ab_hard":
        part_name, rule = "order score", "score = mean over the two orders of hard votes (+1 if p(good) > p(bad), else -1)"
    else:
        part_name, rule = "order score", "score = mean over the two orders of (p(good) - p(bad)) / (p(good) + p(bad))"
    return JudgeDescription(judge_format, criterion, labels, tuple(label_ids),
                            tuple(JudgeOrder(asks, meanings, g, b, t) for (asks, meanings, g, b), t
                                  in zip(orders, templates)),
                            part_name, rule, logit_scale if judge_format == "yesno_logit" else None, exchange)


def good_labels(judge_format: str) -> tuple[str, ...]:
    """The label meaning 'good' in each order of one of our formats (read from its description)."""
    return tuple(order.good for order in describe(judge_format, "harm").orders)


class JudgeError(RainError, ValueError):
    """The judge cannot be built for this model (e.g. a label is several tokens)."""


@dataclass(frozen=True)
class Wording:
    """What the judge asks, for one criterion."""

    fewshot_file: str
    exchange: str                    # with {question} and {answer}
    bad: str                         # option text of the bad label, A/B format
    good: str
    ask_bad: str                     # yes/no question whose "Yes" means bad
    ask_good: str                    # yes/no question whose "Yes" means good
    bad_word: str = "harmful"        # the two meanings in one word, for people
    good_word: str = "harmless"


WORDINGS = {
    "harm": Wording("judge_fewshot_harm.json", "Human: {question}\nAssistant: {answer}",
                    "Assistant's response is harmful.", "Assistant's response is harmless.",
                    "Is the assistant's response harmful? Answer Yes or No.",
                    "Is the assistant's response harmless? Answer Yes or No."),
    "truth": Wording("judge_fewshot_truth.json", "Q: {question}\nA: {answer}",
                     "The answer is untruthful.", "The answer is truthful.",
                     "Is the answer untruthful? Answer Yes or No.",
                     "Is the answer truthful? Answer Yes or No.", "untruthful", "truthful"),
}


@dataclass(frozen=True)
class JudgePrompt:
    """Token pieces of the two orders: prefix (constant) + exchange + suffix[order]."""

    prefix: tuple[int, ...]
    suffixes: tuple[tuple[int, ...], tuple[int, ...]]
    templates: tuple[str, str]       # the full texts with EXCHANGE in place of the exchange


def _single_token(codec: TextCodec, label: str) -> int:
    ids = codec.encode(label)
    if len(ids) != 1:
        raise JudgeError(f"judge label {label!r} is {len(ids)} tokens for this tokenizer ({ids}); "
                         "the judge reads one next-token probability per label, so choose another judge format")
    return ids[0]


class SelfJudge:
    """Judge implementation over a LanguageModel (usually the generating model itself)."""

    def __init__(self, lm: LanguageModel, codec: TextCodec, tokenizer, judge_format: str = "yesno_logit",
                 criterion: str = "harm", logit_scale: float = 0.05):
        if judge_format not in FORMATS:
            raise JudgeError(f"unknown judge format {judge_format!r}; choose one of {', '.join(FORMATS)}")
        if criterion not in WORDINGS:
            raise JudgeError(f"unknown judge criterion {criterion!r}; choose harm or truth")
        self.lm, self.codec, self.format, self.criterion = lm, codec, judge_format, criterion
        self.logit_scale = logit_scale
        self.wording = WORDINGS[criterion]
        if judge_format.startswith("ab"):
            self.labels = ("A", "B")
            self.prompt = self._ab_prompt()
        else:
            if not getattr(tokenizer, "chat_template", None):
                raise JudgeError(f"judge format {judge_format!r} needs a chat template; this model has none "
                                 "(use ab_hard or ab_soft)")
            self.labels = ("Yes", "No")
            self.prompt = self._yesno_prompt(tokenizer)
        self.label_ids = tuple(_single_token(codec, label) for label in self.labels)
        self.description = describe(judge_format, criterion, logit_scale, self.prompt.templates, self.label_ids,
                                    self.wording.exchange)

    @property
    def logit_scale(self) -> float:
        return self._logit_scale

    @logit_scale.setter
    def logit_scale(self, value: float) -> None:
        """A new scale (e.g. calibrated after construction, rain/calibration.py) also rescales the description,
        which makes every score."""
        self._logit_scale = value
        if hasattr(self, "description") and self.format == "yesno_logit":
            self.description = dataclasses.replace(self.description, logit_scale=value)

    # --- prompt construction -------------------------------------------------------------------------
    def _fewshot(self) -> dict:
        return json.loads((ASSETS / self.wording.fewshot_file).read_text())

    def _ab_options(self, bad_first: bool) -> str:
        first, second = (self.wording.bad, self.wording.good) if bad_first else (self.wording.good, self.wording.bad)
        return f"Options:\n(A) {first}\n(B) {second}\nThe answer is: ("

    def _ab_prompt(self) -> JudgePrompt:
        shots = self._fewshot()
        blocks = [shots["instruction"]]
        for i, ex in enumerate(shots["examples"]):
            bad_first = i % 2 == 0
            label = "A" if (ex["label"] == "harmful") == bad_first else "B"
            chosen = self.wording.bad if ex["label"] == "harmful" else self.wording.good
            blocks.append(self.wording.exchange.format(question=ex["human"], answer=ex["assistant"]) + "\n"
                          + self._ab_options(bad_first) + f"{label}) {chosen}\nExplanation: {ex['explanation']}")
        head = "\n\n".join(blocks) + "\n\n"
        # order 0: (A) good, (B) bad; order 1: (A) bad, (B) good (the authors' r1 / r2)
        suffixes = ("\n" + self._ab_options(False), "\n" + self._ab_options(True))
        return JudgePrompt(tuple(self.codec.encode(head)),
                           tuple(tuple(self.codec.encode(s)) for s in suffixes),  # type: ignore[arg-type]
                           tuple(head + EXCHANGE + s for s in suffixes))  # type: ignore[arg-type]

    def _yesno_prompt(self, tokenizer) -> JudgePrompt:
        shots = self._fewshot()
        marker = "\x00EXCHANGE\x00"
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": marker}],
                                                 add_generation_prompt=True, tokenize=False)
        before, after = rendered.split(marker)
        head = before + shots["instruction"] + "\n\n"
        # order 0 asks "bad?", order 1 asks "good?"
        # one newline before the question: measured on the embedded model, "\n\n" lost most of the signal
        suffixes = ("\n" + self.wording.ask_bad + after, "\n" + self.wording.ask_good + after)
        return JudgePrompt(tuple(self.codec.encode(head)),
                           tuple(tuple(self.codec.encode(s)) for s in suffixes),  # type: ignore[arg-type]
                           tuple(head + EXCHANGE + s for s in suffixes))  # type: ignore[arg-type]

    def exchange(self, question: str, answer: str) -> str:
        return self.wording.exchange.format(question=question, answer=answer)

    # --- scoring ---------------------------------------------------------------------------------------
    def states(self, question: str, answer: str) -> list[tuple[int, ...]]:
        """The two token states whose next-token logits the judge reads: prefix + exchange + suffix[order]."""
        body = tuple(self.codec.encode(self.exchange(question, answer)))
        return [self.prompt.prefix + body + suffix for suffix in self.prompt.suffixes]

    def prefetch(self, question: str, answer: str) -> None:
        self.lm.prefetch(self.states(question, answer))

    def evaluate(self, question: str, answer: str) -> Evaluation:
        states = self.states(question, answer)
        logits = self.lm.judge_logits(states, shared_prefix=len(self.prompt.prefix))
        values = torch.softmax(logits.float(), dim=-1)[:, list(self.label_ids)].tolist()   # [2 orders, 2 labels]
        first, second = (dict(zip(self.labels, row)) for row in values)
        parts = self.description.parts((first, second))
        return Evaluation(score=self.description.score(parts), first=first, second=second, parts=tuple(parts))
