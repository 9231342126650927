"""Self-evaluation (spec §1.2 "Self-evaluation", §1.3 getv, §2): the model judges its own partial answer.

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
All scores lie in [-1, 1] (spec §1.5.2: the PUCT normalisation assumes that). The prompt texts are ours.
Label ids come from the model's own tokenizer; a label that is not one token is refused.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch

from rain.lm import Evaluation, LanguageModel, TextCodec

ASSETS = Path(__file__).resolve().parent.parent / "assets"
FORMATS = ("ab_hard", "ab_soft", "yesno_prob", "yesno_logit")
EXCHANGE = "{exchange}"              # placeholder in the prompt templates shown to people
TINY = 1e-45                         # a label probability that underflowed float32 counts as this


def good_labels(judge_format: str) -> tuple[str, str]:
    """The label meaning 'good' in order 0 and order 1 (order 0: (A) good / "bad?"; order 1: (A) bad / "good?")."""
    return ("A", "B") if judge_format.startswith("ab") else ("No", "Yes")


def order_part(judge_format: str, probs: Mapping[str, float], good_label: str) -> float:
    """One order's contribution from its two label probabilities.

    ab_hard: +1 if p(good) > p(bad) (strict, as getv) else -1; ab_soft, yesno_prob: (p(good) - p(bad)) /
    (p(good) + p(bad)); yesno_logit: the logit gap log p(good) - log p(bad) (both labels share one softmax,
    so this equals the difference of their logits).
    """
    good = probs[good_label]
    bad = next(p for label, p in probs.items() if label != good_label)
    if judge_format == "ab_hard":
        return 1.0 if good > bad else -1.0
    if judge_format == "yesno_logit":
        return math.log(max(good, TINY)) - math.log(max(bad, TINY))
    return (good - bad) / max(good + bad, 1e-12)


def combine_parts(judge_format: str, parts: Sequence[float], logit_scale: float) -> float:
    """The score in [-1, 1]: the mean of the two parts; yesno_logit squashes the mean gap: tanh(mean / scale)."""
    mean = sum(parts) / len(parts)
    return math.tanh(mean / logit_scale) if judge_format == "yesno_logit" else mean


def judged_exchange(wording: "Wording", question: str, answer: str) -> str:
    """The exchange text with the question and answer filled in, cut as the wording says.

    truth (spec §1.6 "eval text"): the authors judge "Q: ...\nA: ..." cut after its last '.' and stripped
    (remove_after_last_period, then strip); a text without one is judged whole.
    """
    text = wording.exchange.format(question=question, answer=answer)
    if wording.cut_after_last:
        head, separator, _ = text.rpartition(wording.cut_after_last)
        text = (head + separator if separator else text).strip()
    return text


class JudgeError(ValueError):
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
    cut_after_last: str = ""         # judge the exchange cut after its last occurrence of this, stripped


WORDINGS = {
    "harm": Wording("judge_fewshot_harm.json", "Human: {question}\nAssistant: {answer}",
                    "Assistant's response is harmful.", "Assistant's response is harmless.",
                    "Is the assistant's response harmful? Answer Yes or No.",
                    "Is the assistant's response harmless? Answer Yes or No."),
    "truth": Wording("judge_fewshot_truth.json", "Q: {question}\nA: {answer}",
                     "The answer is untruthful.", "The answer is truthful.",
                     "Is the answer untruthful? Answer Yes or No.",
                     "Is the answer truthful? Answer Yes or No.", cut_after_last="."),
}


@dataclass(frozen=True)
class JudgePrompt:
    """Token pieces of the two orders: prefix (constant) + exchange + suffix[order]."""

    prefix: tuple[int, ...]
    suffixes: tuple[tuple[int, ...], tuple[int, ...]]
    templates: tuple[str, str]       # the full texts with EXCHANGE in place of the exchange
    exchange_head: str               # text placed before the exchange inside the template


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
                           tuple(head + EXCHANGE + s for s in suffixes), head)  # type: ignore[arg-type]

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
                           tuple(head + EXCHANGE + s for s in suffixes), head)  # type: ignore[arg-type]

    def exchange(self, question: str, answer: str) -> str:
        """The exchange as the judge reads it (truth: cut after its last '.', stripped, as truth/main.py getv)."""
        return judged_exchange(self.wording, question, answer)

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
        parts = [order_part(self.format, probs, good) for probs, good in zip((first, second), good_labels(self.format))]
        return Evaluation(score=combine_parts(self.format, parts, self.logit_scale), first=first, second=second)
