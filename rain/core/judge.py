"""Self-evaluation (docs/algorithm.md §1.2 "Self-evaluation", §1.3 getv, §2): the model judges its own partial answer.

A judge asks K option orders of one question with N options (labels read as next-token probabilities) and
combines the orders' parts, as the paper does to cancel a bias towards one label. Each format is one entry of
`FORMAT_TABLE` (how it asks, one order's part, whether the mean part is squashed); ours all ask K = 2 orders
whose good and bad meanings are swapped:
- `ab_hard`: the authors' few-shot multiple choice "(A)/(B)", one hard vote per order: score in {-1, 0, 1}.
- `ab_soft`: the same prompt, each order scored by its label probabilities.
- `yesno_prob`, `yesno_logit`: a chat-template question answered "Yes"/"No" at the next position; the two
  orders ask "harmful?" and "harmless?". `_prob` scores p(good)-p(bad) renormalised over the labels, per
  order; `_logit` averages the two orders' logit differences first (so a bias towards "Yes" or "No" cancels
  exactly in log-odds) and squashes with tanh(mean / logit_scale). A small model's gap between harmful and
  harmless answers is a few hundredths of a logit (see judge-check), so the scale sets how loudly the search
  hears it next to Eq. (1)'s exploration term.
Criteria: harm (hh/adv), truth, and sentiment (imdb), whose A/B formats ask App. B.3's three options
"(A) positive / (B) negative / (C) neutral" with A and B swapped in the second order and (C) neutral fixed; the
neutral option counts for neither side (`order_part`). A user's principle (a yes/no question, `principle`)
replaces the criterion's question in both orders. `JudgeDescription` says all of it: each order's options,
their meanings, the label token ids, the good and bad label and the score rule.
All scores lie in [-1, 1] (docs/algorithm.md §1.5.2: the PUCT normalisation assumes that). The prompt texts are ours.
Label ids come from the model's own tokenizer; a label that is not one token is refused.
One file, over 400 lines: the description the page shows and the judge that reads the model are built from the
same wordings and order plans. It imports no torch (the judge's logits arrive as tensors), so the page can read it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from rain.core.config import JudgeFormat
from rain.core.errors import RainError
from rain.core.lm import Evaluation, LanguageModel, TextCodec
from rain.data import DATA_DIR

FORMATS: tuple[str, ...] = typing.get_args(JudgeFormat)    # the config's Literal: one list of the formats
EXCHANGE = "{exchange}"              # placeholder in the prompt templates shown to people
TINY = 1e-45                         # a label probability that underflowed float32 counts as this


def hard_vote(good: float, bad: float, others: Sequence[float]) -> float:
    """+1 if p(good) is above every other label's, -1 if p(bad) is at least every other label's, else 0 (another
    option wins); with two labels +1 if p(good) > p(bad) else -1, strict as getv."""
    if good > max([bad, *others]):
        return 1.0
    return -1.0 if bad >= max([good, *others]) else 0.0


def soft_share(good: float, bad: float, others: Sequence[float]) -> float:
    """(p(good) - p(bad)) / (sum of all labels' p); two labels: (p(good) - p(bad)) / (p(good) + p(bad))."""
    return (good - bad) / max(good + bad + sum(others), 1e-12)


def logit_gap(good: float, bad: float, others: Sequence[float]) -> float:
    """log p(good) - log p(bad): both labels share one softmax, so this is the difference of their logits."""
    return math.log(max(good, TINY)) - math.log(max(bad, TINY))


@dataclass(frozen=True)
class Format:
    """One judge format: how its orders are asked, what one order's part is, and how the parts make the score."""

    name: str
    asks_options: bool               # True: few-shot multiple choice "(A)/(B)"; False: a yes/no chat question
    part: Callable[[float, float, Sequence[float]], float]   # (p(good), p(bad), the other labels' p) -> part
    squashed: bool                   # score = tanh(mean part / logit_scale); else the mean part
    part_name: str                   # what a part is, for people
    rule: str                        # how the parts become the score, in words (two labels)
    rule_more: str                   # ... with more labels (App. B.3's neutral option)
    digits: int                      # decimals a part is shown with


SOFT_RULE = "score = mean over the orders of (p(good) - p(bad)) / (sum of the labels' p)"
FORMAT_TABLE: dict[str, Format] = {f.name: f for f in (
    Format("ab_hard", True, hard_vote, False, "order score",
           "score = mean over the orders of hard votes (+1 if p(good) > p(bad), else -1)",
           "score = mean over the orders of hard votes (+1 if good is the most likely label, -1 if bad is, 0 if "
           "another is)", 2),
    Format("ab_soft", True, soft_share, False, "order score", SOFT_RULE,
           SOFT_RULE + " (the other option counts for neither)", 2),
    Format("yesno_prob", False, soft_share, False, "order score", SOFT_RULE,
           SOFT_RULE + " (the other option counts for neither)", 2),
    Format("yesno_logit", False, logit_gap, True, "logit gap (good − bad)", "score = tanh(mean logit gap / scale)",
           "score = tanh(mean logit gap / scale)", 4),
)}
assert tuple(FORMAT_TABLE) == FORMATS, "FORMAT_TABLE holds one entry per JudgeFormat, in its order"


def format_of(name: str) -> Format:
    """The format's entry; a name this version does not know (a file's) reads as a yes/no question, soft-scored."""
    return FORMAT_TABLE.get(name, FORMAT_TABLE["yesno_prob"])


def order_part(judge_format: str, probs: Mapping[str, float], good_label: str, bad_label: str | None = None) -> float:
    """One order's contribution from its label probabilities (the format's `part`); options other than good and
    bad (App. B.3's "neutral") count for neither side. With two options `bad_label` defaults to the other one."""
    if bad_label is None:
        bad_label = next(label for label in probs if label != good_label)
    others = [p for label, p in probs.items() if label not in (good_label, bad_label)]
    return format_of(judge_format).part(probs[good_label], probs[bad_label], others)


def combine_parts(judge_format: str, parts: Sequence[float], logit_scale: float) -> float:
    """The score in [-1, 1]: the mean of the orders' parts; a squashed format (yesno_logit): tanh(mean / scale)."""
    mean = sum(parts) / len(parts)
    return math.tanh(mean / logit_scale) if format_of(judge_format).squashed else mean


# --- what each criterion asks ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Wording:
    """What the judge asks, for one criterion."""

    fewshot_file: str
    exchange: str                    # with {question} and {answer}
    bad: str                         # option text of the bad label, A/B format
    good: str
    ask_bad: str                     # yes/no question whose "Yes" means bad
    ask_good: str                    # yes/no question whose "Yes" means good
    bad_word: str = "harmful"        # the meanings in one word, for people
    good_word: str = "harmless"
    neutral: str = ""                # a third A/B option that counts for neither side (sentiment: "neutral")
    neutral_word: str = ""
    cut_after_last: str = ""         # judge the exchange cut after its last occurrence of this, stripped
    subject: str = "conversation between a human and an assistant"   # what a principle's question is about


WORDINGS = {
    "harm": Wording("judge_fewshot_harm.json", "Human: {question}\nAssistant: {answer}",
                    "Assistant's response is harmful.", "Assistant's response is harmless.",
                    "Is the assistant's response harmful? Answer Yes or No.",
                    "Is the assistant's response harmless? Answer Yes or No."),
    "truth": Wording("judge_fewshot_truth.json", "Q: {question}\nA: {answer}",
                     "The answer is untruthful.", "The answer is truthful.",
                     "Is the answer untruthful? Answer Yes or No.",
                     "Is the answer truthful? Answer Yes or No.", "untruthful", "truthful",
                     cut_after_last=".", subject="question (Q) and answer (A)"),
    # App. B.3's options, our instruction (the paper's IMDB prompt has no code)
    "sentiment": Wording("judge_fewshot_sentiment.json", "Movie review: {question}{answer}",
                         "The movie review is negative.", "The movie review is positive.",
                         "Is the movie review negative? Answer Yes or No.",
                         "Is the movie review positive? Answer Yes or No.", "negative", "positive",
                         neutral="The movie review is neutral.", neutral_word="neutral", subject="movie review"),
}
PRINCIPLE_ASKS = ("{principle} Answer Yes or No.",                                  # "Yes" means yes
                  "{principle} Answer No if the answer is yes, and Yes if it is no.")   # "Yes" means no
PRINCIPLE_INSTRUCTION = "Read the following {subject} and answer the question about it."


def judged_exchange(wording: Wording, question: str, answer: str) -> str:
    """The exchange text with the question and answer filled in, cut as the wording says.

    truth (docs/algorithm.md §1.6 "eval text"): the authors judge "Q: ...\\nA: ..." cut after its last '.' and stripped
    (remove_after_last_period, then strip); a text without one is judged whole.
    """
    text = wording.exchange.format(question=question, answer=answer)
    if wording.cut_after_last:
        head, separator, _ = text.rpartition(wording.cut_after_last)
        text = (head + separator if separator else text).strip()
    return text


# --- the judge's description: what each order asks, what each label means, how the score is made -------------

@dataclass(frozen=True)
class JudgeOrder:
    """One ordering of the options: what it asks, each label's meaning in it, and its good and bad labels."""

    asks: str                        # for people, e.g. "(A) harmless, (B) harmful" or "“harmful?”"
    meanings: dict[str, str]         # label -> meaning in this order, every option, e.g. {"A": "harmless", ...}
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
    principle: str = ""              # a user's question that replaced the criterion's ("" = none)
    cut_after_last: str = ""         # the exchange is judged cut after its last occurrence of this (truth: ".")

    def parts(self, probs: Sequence[Mapping[str, float]]) -> list[float] | None:
        """Each order's part from its label probabilities; None when they do not name this judge's labels."""
        if len(probs) != len(self.orders) or self.format not in FORMAT_TABLE:
            return None
        if any(order.good not in p or order.bad not in p for order, p in zip(self.orders, probs)):
            return None
        return [order_part(self.format, p, order.good, order.bad) for order, p in zip(self.orders, probs)]

    def score(self, parts: Sequence[float]) -> float | None:
        """The score from the orders' parts; None for a yes/no logit judge whose scale was not recorded."""
        if format_of(self.format).squashed and self.logit_scale is None:
            return None
        return combine_parts(self.format, parts, self.logit_scale or 1.0)

    def formula(self, parts: Sequence[float]) -> str:
        """The score rule with these parts' numbers filled in."""
        if format_of(self.format).squashed:
            scale = "scale (not recorded)" if self.logit_scale is None else f"scale {self.logit_scale:g}"
            return f"score = tanh(mean logit gap {sum(parts) / len(parts):+.4f} / {scale})"
        return self.score_rule

    def part_text(self, part: float | None) -> str:
        """One order's part as the panel shows it ("–" when not recorded)."""
        return "–" if part is None else f"{part:+.{format_of(self.format).digits}f}"

    def exchange_text(self, question: str, answer: str) -> str:
        """The exchange as this judge read it (`judged_exchange`)."""
        wording = Wording("", self.exchange or WORDINGS["harm"].exchange, "", "", "", "",
                          cut_after_last=self.cut_after_last)
        return judged_exchange(wording, question, answer)

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
                        tuple(judge.get("templates") or ()), (), str(judge.get("exchange") or ""),
                        str(judge.get("principle") or ""), str(judge.get("principle_good") or "yes"))


@dataclass(frozen=True)
class OrderPlan:
    """One order before it is a prompt: its options in display order (label, meaning, option text) or its
    yes/no question, and which meanings are good and bad."""

    options: tuple[tuple[str, str, str], ...]   # (label, meaning word, option text)
    question: str                               # yes/no formats: the question; A/B with a principle: "Question: ..."
    good: str                                   # the good and bad labels
    bad: str


def plan_orders(judge_format: str, criterion: str, principle: str = "",
                principle_good: str = "yes") -> tuple[tuple[str, ...], tuple[OrderPlan, ...]]:
    """(labels, the orders) of one of our formats: order 0 (A) good / asks "bad?", order 1 (A) bad / asks
    "good?"; sentiment's A/B orders add (C) neutral, fixed; a principle asks its question with the yes/no
    labels' meanings swapped between the orders."""
    wording = WORDINGS.get(criterion, WORDINGS["harm"])
    ab = format_of(judge_format).asks_options
    if principle:
        other = "no" if principle_good == "yes" else "yes"
        if ab:
            swaps = [(("A", "yes"), ("B", "no")), (("A", "no"), ("B", "yes"))]
            plans = [OrderPlan(tuple((label, meaning, meaning.capitalize() + ".") for label, meaning in options),
                               f"Question: {principle}", *(next(label for label, m in options if m == want)
                                                          for want in (principle_good, other)))
                     for options in swaps]
            return ("A", "B"), tuple(plans)
        orders = [({"Yes": "yes", "No": "no"}, PRINCIPLE_ASKS[0]), ({"Yes": "no", "No": "yes"}, PRINCIPLE_ASKS[1])]
        plans = [OrderPlan(tuple((label, meaning, "") for label, meaning in meanings.items()),
                           ask.format(principle=principle),
                           *(next(label for label, m in meanings.items() if m == want) for want in (principle_good, other)))
                 for meanings, ask in orders]
        return ("Yes", "No"), tuple(plans)
    good = (wording.good_word, wording.good)
    bad = (wording.bad_word, wording.bad)
    if ab:
        neutral = [("C", wording.neutral_word, wording.neutral)] if wording.neutral else []
        plans = [OrderPlan((("A", *first), ("B", *second), *neutral), "", a, b)
                 for first, second, a, b in [(good, bad, "A", "B"), (bad, good, "B", "A")]]
        return ("A", "B", "C") if neutral else ("A", "B"), tuple(plans)
    plans = [OrderPlan((("Yes", wording.bad_word, ""), ("No", wording.good_word, "")), wording.ask_bad, "No", "Yes"),
             OrderPlan((("Yes", wording.good_word, ""), ("No", wording.bad_word, "")), wording.ask_good, "Yes", "No")]
    return ("Yes", "No"), tuple(plans)


def describe(judge_format: str, criterion: str, logit_scale: float | None = None,
             templates: Sequence[str] = (), label_ids: Sequence[int] = (), exchange: str = "",
             principle: str = "", principle_good: str = "yes") -> JudgeDescription:
    """The description of one of our formats (`plan_orders`), with the score rule in words."""
    labels, plans = plan_orders(judge_format, criterion, principle, principle_good)
    wording, spec = WORDINGS.get(criterion, WORDINGS["harm"]), format_of(judge_format)
    templates = list(templates) + [""] * (len(plans) - len(templates))
    orders = []
    for plan, template in zip(plans, templates):
        meanings = {label: meaning for label, meaning, _ in plan.options}
        if spec.asks_options:
            asks = ", ".join(f"({label}) {meaning}" for label, meaning, _ in plan.options)
            asks = f"“{principle}” {asks}" if principle else asks
        else:
            asks = f"“{plan.question}”" if principle else f"“{meanings['Yes']}?”"
        orders.append(JudgeOrder(asks, meanings, plan.good, plan.bad, template))
    return JudgeDescription(judge_format, criterion, labels, tuple(label_ids), tuple(orders), spec.part_name,
                            spec.rule if len(labels) == 2 else spec.rule_more,
                            logit_scale if spec.squashed else None,
                            exchange or wording.exchange, principle,
                            wording.cut_after_last)


def good_labels(judge_format: str) -> tuple[str, ...]:
    """The label meaning 'good' in each order of one of our formats (read from its description)."""
    return tuple(order.good for order in describe(judge_format, "harm").orders)


class JudgeError(RainError, ValueError):
    """The judge cannot be built for this model (e.g. a label is several tokens)."""


@dataclass(frozen=True)
class JudgePrompt:
    """Token pieces of the K orders: prefix (constant) + exchange + suffix[order]."""

    prefix: tuple[int, ...]
    suffixes: tuple[tuple[int, ...], ...]
    templates: tuple[str, ...]       # the full texts with EXCHANGE in place of the exchange


def _single_token(codec: TextCodec, label: str) -> int:
    ids = codec.encode(label)
    if len(ids) != 1:
        raise JudgeError(f"judge label {label!r} is {len(ids)} tokens for this tokenizer ({ids}); "
                         "the judge reads one next-token probability per label, so choose another judge format")
    return ids[0]


class SelfJudge:
    """Judge implementation over a LanguageModel (usually the generating model itself)."""

    def __init__(self, lm: LanguageModel, codec: TextCodec, tokenizer, judge_format: str = "yesno_logit",
                 criterion: str = "harm", logit_scale: float = 0.05, principle: str = "",
                 principle_good: str = "yes"):
        if judge_format not in FORMAT_TABLE:
            raise JudgeError(f"unknown judge format {judge_format!r}; choose one of {', '.join(FORMATS)}")
        if criterion not in WORDINGS:
            raise JudgeError(f"unknown judge criterion {criterion!r}; choose one of {', '.join(WORDINGS)}")
        self.lm, self.codec, self.format, self.criterion = lm, codec, judge_format, criterion
        self.logit_scale = logit_scale
        self.wording = WORDINGS[criterion]
        self.principle, self.principle_good = principle, principle_good
        self._refuse_special_tokens(tokenizer, principle)
        self.labels, self.plans = plan_orders(judge_format, criterion, principle, principle_good)
        if FORMAT_TABLE[judge_format].asks_options:
            self.prompt = self._ab_prompt()
        else:
            if not getattr(tokenizer, "chat_template", None):
                raise JudgeError(f"judge format {judge_format!r} needs a chat template; this model has none "
                                 "(use ab_hard or ab_soft)")
            self.prompt = self._yesno_prompt(tokenizer)
        self.label_ids = tuple(_single_token(codec, label) for label in self.labels)
        self.description = describe(judge_format, criterion, logit_scale, self.prompt.templates, self.label_ids,
                                    self.wording.exchange, principle, principle_good)

    @property
    def logit_scale(self) -> float:
        return self._logit_scale

    @logit_scale.setter
    def logit_scale(self, value: float) -> None:
        """A new scale (e.g. calibrated after construction) reaches the description, which makes the score."""
        self._logit_scale = value
        if hasattr(self, "description"):
            self.description = dataclasses.replace(
                self.description, logit_scale=value if FORMAT_TABLE[self.format].squashed else None)

    def _refuse_special_tokens(self, tokenizer, principle: str) -> None:
        """A principle that tokenises to a special token (a chat-template marker) could end the judge's turn."""
        special = set(getattr(tokenizer, "all_special_ids", None) or [])
        if principle and special & set(self.codec.encode(principle)):
            raise JudgeError("the principle contains a special token of this model's tokenizer; write it as plain text")

    # --- prompt construction -------------------------------------------------------------------------
    def _fewshot(self) -> dict:
        if self.principle:                      # a user's question: zero-shot, the few-shot examples judge another one
            return {"instruction": PRINCIPLE_INSTRUCTION.format(subject=self.wording.subject), "examples": []}
        return json.loads((DATA_DIR / self.wording.fewshot_file).read_text())

    @staticmethod
    def _ab_options(plan: OrderPlan) -> str:
        question = f"{plan.question}\n" if plan.question else ""
        lines = "".join(f"({label}) {text}\n" for label, _, text in plan.options)
        return f"{question}Options:\n{lines}The answer is: ("

    def _ab_prompt(self) -> JudgePrompt:
        shots = self._fewshot()
        blocks = [shots["instruction"]]
        for i, ex in enumerate(shots["examples"]):
            plan = self.plans[(i + 1) % len(self.plans)]         # the examples cycle the orders, the last first
            harmful = ex["label"] == "harmful"
            label = plan.bad if harmful else plan.good
            chosen = self.wording.bad if harmful else self.wording.good
            blocks.append(self.wording.exchange.format(question=ex["human"], answer=ex["assistant"]) + "\n"
                          + self._ab_options(plan) + f"{label}) {chosen}\nExplanation: {ex['explanation']}")
        head = "\n\n".join(blocks) + "\n\n"
        # order 0: (A) good, (B) bad; order 1: (A) bad, (B) good (the authors' r1 / r2); (C) stays
        suffixes = tuple("\n" + self._ab_options(plan) for plan in self.plans)
        return JudgePrompt(tuple(self.codec.encode(head)), tuple(tuple(self.codec.encode(s)) for s in suffixes),
                           tuple(head + EXCHANGE + s for s in suffixes))

    def _yesno_prompt(self, tokenizer) -> JudgePrompt:
        shots = self._fewshot()
        marker = "\x00EXCHANGE\x00"
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": marker}],
                                                 add_generation_prompt=True, tokenize=False)
        before, after = rendered.split(marker)
        head = before + shots["instruction"] + "\n\n"
        # order 0 asks "bad?", order 1 asks "good?"
        # one newline before the question: measured on the embedded model, "\n\n" lost most of the signal
        suffixes = tuple("\n" + plan.question + after for plan in self.plans)
        return JudgePrompt(tuple(self.codec.encode(head)), tuple(tuple(self.codec.encode(s)) for s in suffixes),
                           tuple(head + EXCHANGE + s for s in suffixes))

    def exchange(self, question: str, answer: str) -> str:
        """The exchange as the judge reads it (truth: cut after its last '.', stripped, as truth/main.py getv)."""
        return judged_exchange(self.wording, question, answer)

    # --- scoring ---------------------------------------------------------------------------------------
    def states(self, question: str, answer: str) -> list[tuple[int, ...]]:
        """The K token states whose next-token logits the judge reads: prefix + exchange + suffix[order]."""
        body = tuple(self.codec.encode(self.exchange(question, answer)))
        return [self.prompt.prefix + body + suffix for suffix in self.prompt.suffixes]

    def prefetch(self, question: str, answer: str) -> None:
        self.lm.prefetch(self.states(question, answer))

    def evaluate(self, question: str, answer: str) -> Evaluation:
        states = self.states(question, answer)
        logits = self.lm.judge_logits(states, shared_prefix=len(self.prompt.prefix))
        values = logits.float().softmax(dim=-1)[:, list(self.label_ids)].tolist()   # [K orders, N labels]; no torch
        # import here: the page reads this module's description (JudgeDescription, FORMATS) without loading torch
        orders = tuple(dict(zip(self.labels, row)) for row in values)
        parts = self.description.parts(orders)
        return Evaluation(score=self.description.score(parts), orders=orders, parts=tuple(parts))
