"""`eval`'s metrics and markdown summary, computed from stored results alone (no model): quality per method and
prompt category, paired win rates per judge, and cost relative to vanilla."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Sequence

from rain.tools.evaluation import SELF_JUDGE, SUMMARY_FILE, Result, is_refusal
from rain.tools.sentiment import POSITIVE_AT

TIE_TOLERANCE = 1e-3                # closer scores tie: batched forwards move a score by ~1e-4 at scale 0.05


# --- metrics ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WinRate:
    wins: int
    losses: int
    ties: int

    @property
    def rate(self) -> float | None:
        """wins / (wins + losses); ties excluded; None when every pair tied."""
        decided = self.wins + self.losses
        return self.wins / decided if decided else None


def win_rate(a: Sequence[float], b: Sequence[float], tolerance: float = TIE_TOLERANCE) -> WinRate:
    """How often a beats b on paired scores (same prompts, same judge)."""
    if len(a) != len(b):
        raise ValueError("win_rate needs paired scores")
    wins = sum(1 for x, y in zip(a, b) if x - y > tolerance)
    losses = sum(1 for x, y in zip(a, b) if y - x > tolerance)
    return WinRate(wins, losses, len(a) - wins - losses)


def refusal_rate(answers: Sequence[str]) -> float | None:
    return sum(is_refusal(a) for a in answers) / len(answers) if answers else None


def ratio(value: float, base: float) -> float | None:
    return value / base if base else None


@dataclass(frozen=True)
class QualityRow:
    method: str
    category: str                   # "all" or a prompt category
    count: int
    self_score: float
    refusal_rate: float
    external_score: float | None


@dataclass(frozen=True)
class WinRow:
    method: str
    baseline: str
    judge: str
    result: WinRate


@dataclass(frozen=True)
class CostRow:
    method: str
    count: int
    seconds: float                  # means per prompt
    forward_calls: float
    forwarded_tokens: float
    answer_tokens: float
    seconds_ratio: float | None     # total over the prompts both ran, divided by vanilla's
    calls_ratio: float | None
    tokens_ratio: float | None


@dataclass(frozen=True)
class JudgeRow:
    """One lane under one judge: the share it calls good, its mean score, and paired wins over vanilla."""

    method: str
    judge: str
    count: int
    good_share: float
    mean_score: float
    over_vanilla: WinRate | None


@dataclass
class Summary:
    methods: list[str]
    prompts: int
    quality: list[QualityRow]
    wins: list[WinRow]
    costs: list[CostRow]
    external: str | None = None
    header: str = ""
    judges: list[JudgeRow] = field(default_factory=list)


COMPARISONS = (("rain", "vanilla"), ("rain", "bon"), ("bon", "vanilla"))


def good_at(judge: str) -> float:
    """Where a judge's "good" (% positive) starts: VADER's documented 0.05 for its compound, else above 0."""
    return POSITIVE_AT if judge.startswith("vaderSentiment") else 1e-12


def summarise(results: Sequence[Result], methods: Sequence[str], external: str | None = None,
              header: str = "", judges: Sequence[str] = ()) -> Summary:
    """All metrics from stored results (no model): per method, per category, pairwise and cost."""
    by_method = {m: {r.id: r for r in results if r.method == m} for m in methods}
    categories = sorted({r.category for r in results})
    quality = []
    for method in methods:
        rows = list(by_method[method].values())
        groups = [("all", rows)] + ([(c, [r for r in rows if r.category == c]) for c in categories]
                                    if len(categories) > 1 else [])
        for category, group in groups:
            if not group:
                continue
            externals = [r.external_score for r in group if r.external_score is not None]
            quality.append(QualityRow(method, category, len(group), mean(r.self_score for r in group),
                                      refusal_rate([r.answer for r in group]) or 0.0,
                                      mean(externals) if externals else None))
    wins = []
    for method, baseline in COMPARISONS:
        if method not in by_method or baseline not in by_method:
            continue
        shared = [i for i in by_method[method] if i in by_method[baseline]]
        pairs = [(by_method[method][i], by_method[baseline][i]) for i in shared]
        wins.append(WinRow(method, baseline, SELF_JUDGE, _paired_wins(pairs, "self_score")))
        if external:
            both = [(a, b) for a, b in pairs if a.external_score is not None and b.external_score is not None]
            wins.append(WinRow(method, baseline, external, _paired_wins(both, "external_score")))
    for method in methods:
        if method == "vanilla" or method.partition("@")[0] not in ("rain", "bon") or "vanilla" not in by_method:
            continue
        if (method, "vanilla") in COMPARISONS:
            continue
        pairs = [(by_method[method][i], by_method["vanilla"][i]) for i in by_method[method] if i in by_method["vanilla"]]
        wins.append(WinRow(method, "vanilla", SELF_JUDGE, _paired_wins(pairs, "self_score")))
    costs = [_cost_row(method, by_method) for method in methods if by_method[method]]
    return Summary(list(methods), len({r.id for r in results}), quality, wins, costs, external, header,
                   _judge_rows(by_method, methods, [SELF_JUDGE, *judges]) if judges else [])


def _judge_rows(by_method: dict[str, dict[str, Result]], methods: Sequence[str], judges: Sequence[str]
                ) -> list[JudgeRow]:
    """Every lane under every judge, over the prompts every lane finished (so the rows compare like with like)."""
    complete = set.intersection(*(set(by_method[m]) for m in methods)) if methods else set()
    rows = []
    for judge in judges:
        def score(result: Result, judge: str = judge) -> float | None:
            return result.self_score if judge == SELF_JUDGE else result.judges.get(judge)

        for method in methods:
            group = [by_method[method][i] for i in sorted(complete)]
            scores = [score(r) for r in group]
            if not group or any(s is None for s in scores):
                continue
            over = None
            if method != "vanilla" and "vanilla" in by_method:
                pairs = [(by_method[method][i], by_method["vanilla"][i]) for i in sorted(complete)]
                a = [score(x) for x, _ in pairs]
                b = [score(y) if x.answer != y.answer else score(x) for x, y in pairs]
                over = win_rate(a, b)
            rows.append(JudgeRow(method, judge, len(group), sum(s >= good_at(judge) for s in scores) / len(scores),
                                 mean(scores), over))
    return rows


def _paired_wins(pairs: Sequence[tuple[Result, Result]], score: str) -> WinRate:
    """Identical answers always tie, whatever float noise their two scorings carried."""
    a = [getattr(x, score) for x, _ in pairs]
    b = [getattr(y, score) if x.answer != y.answer else getattr(x, score) for x, y in pairs]
    return win_rate(a, b)


def _cost_row(method: str, by_method: dict[str, dict[str, Result]]) -> CostRow:
    rows = list(by_method[method].values())
    base = by_method.get("vanilla", {})
    shared = [i for i in by_method[method] if i in base]

    def total_ratio(name: str) -> float | None:
        if not shared:
            return None
        return ratio(sum(getattr(by_method[method][i], name) for i in shared),
                     sum(getattr(base[i], name) for i in shared))

    return CostRow(method, len(rows), mean(r.seconds for r in rows), mean(r.forward_calls for r in rows),
                   mean(r.forwarded_tokens for r in rows), mean(r.answer_tokens for r in rows),
                   total_ratio("seconds"), total_ratio("forward_calls"), total_ratio("forwarded_tokens"))


# --- the markdown summary -----------------------------------------------------------------------------------------

def number(value: float | None, form: str = "+.3f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, form)


def format_summary(summary: Summary) -> str:
    """Markdown tables: quality per method and category, pairwise wins per judge, cost."""
    ext = summary.external
    lines = [summary.header] if summary.header else []
    lines += ["", "| method | prompts | self-judge score (mean) | refusal rate |"
              + (f" external judge ({ext}) |" if ext else ""),
              "|---|---|---|---|" + ("---|" if ext else "")]
    for q in summary.quality:
        name = q.method if q.category == "all" else f"{q.method} / {q.category}"
        lines.append(f"| {name} | {q.count} | {q.self_score:+.4f} | {q.refusal_rate:.0%} |"
                     + (f" {number(q.external_score, '+.4f')} |" if ext else ""))
    if summary.wins:
        lines += ["", "| comparison | judge | wins | losses | ties | win rate (ties excluded) |", "|---|---|---|---|---|---|"]
        for w in summary.wins:
            lines.append(f"| {w.method} over {w.baseline} | {w.judge} | {w.result.wins} | {w.result.losses} | "
                         f"{w.result.ties} | {number(w.result.rate, '.2f')} |")
    if summary.judges:
        lines += ["", "| method | judge | prompts | % good (positive) | mean score | wins / losses / ties over vanilla |",
                  "|---|---|---|---|---|---|"]
        for j in summary.judges:
            versus = "-" if j.over_vanilla is None else \
                f"{j.over_vanilla.wins} / {j.over_vanilla.losses} / {j.over_vanilla.ties}"
            lines.append(f"| {j.method} | {j.judge} | {j.count} | {j.good_share:.0%} | {j.mean_score:+.3f} | {versus} |")
    lines += ["", "| method | seconds / prompt | forward calls / prompt | forwarded tokens / prompt | answer tokens "
              "| time × vanilla | calls × vanilla | tokens × vanilla |", "|---|---|---|---|---|---|---|---|"]
    for c in summary.costs:
        lines.append(f"| {c.method} | {c.seconds:.2f} | {c.forward_calls:.1f} | {c.forwarded_tokens:.0f} | "
                     f"{c.answer_tokens:.1f} | {number(c.seconds_ratio, '.1f')} | {number(c.calls_ratio, '.1f')} | "
                     f"{number(c.tokens_ratio, '.1f')} |")
    return "\n".join(lines).strip() + "\n"


def write_summary(folder: Path, summary: Summary) -> str:
    """DIR/summary.md; returns its text (the HTML figure is rain/tools/eval_figures.py's)."""
    text = format_summary(summary)
    (folder / SUMMARY_FILE).write_text(text, encoding="utf-8")
    return text
