"""`judge_logit_scale="auto"`: the yes/no logit judge's scale, derived from the model's own raw judge gaps.

The `yesno_logit` judge scores a text tanh(g / s), where g is the mean over the two option orders of the
log-odds gap log p(good) - log p(bad) (rain/judge.py). How large g is depends on the model: a few hundredths of a
logit for the embedded 135M model, several logits for a 7B one. A fixed s either saturates every score at ±1
(siblings tie and the search goes blind) or squeezes them all near 0 (Eq. (1)'s exploration term drowns them).

The rule. Judge every exchange of a small fixed calibration set (assets/judge_calibration.jsonl: 16 prompt and
answer pairs of our own, harmful and harmless; not the judge-check set) and take the raw gaps g_i. Then

    s = max(Q_0.9(|g_i|) / atanh(0.9), MIN_SCALE)

where Q_0.9 is the 90th percentile (numpy's linear interpolation). So the 90th-percentile calibration gap scores
exactly ±0.9. Why this keeps scores unsaturated and siblings separable:
- Scale-free: multiplying every gap by k multiplies s by k, so the scores, not the gaps, are what the search
  sees, on a 135M model and on a 70B one alike (a synthetic judge with 100x larger gaps gives the same scores).
- Unsaturated: |score| > 0.99 needs |g| > atanh(0.99) / atanh(0.9) · Q_0.9 ≈ 1.8 · Q_0.9, beyond the
  calibration set's 90th percentile by a factor of 1.8; the share of such texts is small (a test checks < 10%).
- Separable: for |g| <= Q_0.9, tanh'(g / s) >= 1 - 0.9² = 0.19, so a gap difference d between two siblings
  becomes a score difference of at least 0.19 · d / s: ranking and resolution survive the squashing
  (judge-check's pairwise accuracy depends only on the order of the gaps, which tanh keeps).
- Deterministic: a fixed set, greedy label probabilities, no sampling; cached per model and judge format.
The formats other than yesno_logit do not use a scale.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rain.judge import ASSETS, good_labels, order_part

CALIBRATION_SET = ASSETS / "judge_calibration.jsonl"
QUANTILE = 0.9                       # the calibration gap quantile ...
QUANTILE_SCORE = 0.9                 # ... that scores exactly this
MIN_SCALE = 1e-6                     # a judge whose gaps are all ~0 gets this scale (its scores stay ~0)
AUTO = "auto"


@dataclass(frozen=True)
class JudgeScale:
    """The resolved scale and where it came from ("auto": calibrated; "fixed": a number from the config)."""

    value: float
    source: str                      # "auto" or "fixed"
    quantile_gap: float | None = None   # Q_0.9(|g|) on the calibration set (auto only)
    exchanges: int = 0

    def as_dict(self) -> dict:
        return {"judge_logit_scale": self.value, "judge_scale_source": self.source,
                "judge_scale_quantile_gap": self.quantile_gap, "judge_scale_exchanges": self.exchanges}


def load_calibration(path: Path = CALIBRATION_SET) -> list[tuple[str, str]]:
    """(prompt, answer) pairs of the calibration set."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["prompt"], row["answer"]) for row in rows]


def raw_gap(judge, question: str, answer: str) -> float:
    """g: the mean over both orders of the log-odds gap, before the tanh (rain.judge.order_part, yesno_logit)."""
    evaluation = judge.evaluate(question, answer)
    parts = [order_part("yesno_logit", probs, good)
             for probs, good in zip((evaluation.first, evaluation.second), good_labels("yesno_logit"))]
    return sum(parts) / len(parts)


def scale_from_gaps(gaps: list[float]) -> float:
    """s = max(Q_0.9(|g|) / atanh(0.9), MIN_SCALE) (see the module docstring)."""
    if not gaps:
        return MIN_SCALE
    quantile = float(np.quantile(np.abs(np.asarray(gaps, dtype=np.float64)), QUANTILE))
    return max(quantile / math.atanh(QUANTILE_SCORE), MIN_SCALE)


def calibrate(judge, pairs: list[tuple[str, str]] | None = None) -> JudgeScale:
    """The auto scale of a yesno_logit `judge` (its own scale does not matter: only raw gaps are read)."""
    pairs = load_calibration() if pairs is None else pairs
    gaps = [raw_gap(judge, question, answer) for question, answer in pairs]
    quantile = float(np.quantile(np.abs(np.asarray(gaps)), QUANTILE)) if gaps else 0.0
    return JudgeScale(scale_from_gaps(gaps), AUTO, quantile, len(gaps))
