"""`python -m rain judge-check`: does the model's self-judge see anything?

For each labelled pair (a prompt with a bad and a good continuation: harmful/harmless in rain/data/judge_set.jsonl,
negative/positive review endings in rain/data/judge_set_sentiment.jsonl, or generic "bad"/"good") and each judge
format, score both continuations. Pairwise accuracy counts the bad one scored below the good one (a tie counts
one half): 0.5 is a coin, and a judge that gives every text the same score sits exactly there. With a principle
the user's question replaces the criterion's; the set's "good" side must be the principle's good answer.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from rain.core.config import RainConfig
from rain.data import DATA_DIR


@dataclass(frozen=True)
class JudgeCheck:
    format: str
    pairs: int
    accuracy: float                 # P(score harmful < score harmless), ties count 1/2
    ties: int
    mean_harmful: float
    mean_harmless: float
    seconds: float
    scale: str = "-"                # yesno_logit: the logit scale used and where it came from


SETS = {"harm": DATA_DIR / "judge_set.jsonl", "sentiment": DATA_DIR / "judge_set_sentiment.jsonl"}
SIDES = {"harm": ("harmful", "harmless"), "sentiment": ("negative", "positive"), "truth": ("untruthful", "truthful")}


def default_set(criterion: str) -> Path:
    return SETS.get(criterion, SETS["harm"])


def load_pairs(path: Path, limit: int | None = None, criterion: str = "harm") -> list[dict]:
    """Pairs as {"prompt", "bad", "good"}: the criterion's keys (harmful/harmless, negative/positive) or bad/good."""
    bad_key, good_key = SIDES.get(criterion, SIDES["harm"])
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            bad, good = (row[bad_key], row[good_key]) if bad_key in row else (row["bad"], row["good"])
            pairs.append({"prompt": str(row["prompt"]), "bad": str(bad), "good": str(good)})
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{path} line {number}: needs prompt and {bad_key}/{good_key} (or bad/good)") from None
    return pairs[:limit] if limit else pairs


def pairwise_accuracy(harmful: list[float], harmless: list[float]) -> tuple[float, int]:
    wins = sum(1.0 if b < g else 0.5 if b == g else 0.0 for b, g in zip(harmful, harmless))
    return wins / max(len(harmful), 1), sum(1 for b, g in zip(harmful, harmless) if b == g)


def judge_check(runtime, pairs_path: Path, formats: list[str], limit: int | None = None,
                criterion: str = "harm", logit_scale: float | str = "auto", principle: str = "",
                principle_good: str = "yes") -> list[JudgeCheck]:
    pairs = load_pairs(pairs_path, limit, criterion)
    results = []
    for judge_format in formats:
        config = RainConfig(judge_format=judge_format, criterion=criterion, judge_logit_scale=logit_scale,
                            principle=principle, principle_good=principle_good).validate()
        lm = runtime.engine(config)
        judge = runtime.judge(lm, config)
        resolved = runtime.judge_scale(config)
        shown = f"{resolved.value:.4g} ({resolved.source})" if judge_format == "yesno_logit" else "-"
        started = time.perf_counter()
        bad = [judge.evaluate(p["prompt"], p["bad"]).score for p in pairs]
        good = [judge.evaluate(p["prompt"], p["good"]).score for p in pairs]
        accuracy, ties = pairwise_accuracy(bad, good)
        results.append(JudgeCheck(judge_format, len(pairs), accuracy, ties, mean(bad), mean(good),
                                  time.perf_counter() - started, shown))
    return results


def format_table(results: list[JudgeCheck], model: str, criterion: str = "harm", principle: str = "") -> str:
    bad, good = SIDES.get(criterion, SIDES["harm"])
    asked = f', principle "{principle}"' if principle else ""
    lines = [f"judge-check on {model}: {results[0].pairs if results else 0} pairs, criterion {criterion}{asked} "
             f"(accuracy = {bad} scored below {good}; ties count 1/2)",
             f"| format | pairwise accuracy | ties | mean score {bad} | mean score {good} | logit scale | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.format} | {r.accuracy:.3f} | {r.ties} | {r.mean_harmful:+.3f} | "
                     f"{r.mean_harmless:+.3f} | {r.scale} | {r.seconds:.1f} |")
    best = max(results, key=lambda r: (r.accuracy, r.mean_harmless - r.mean_harmful), default=None)
    if best:
        lines.append(f"best: {best.format} (highest accuracy, then the widest gap between the class means)")
    return "\n".join(lines)
