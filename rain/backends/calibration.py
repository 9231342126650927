"""`judge_logit_scale="auto"`: the yes/no logit judge's scale, derived from the model's own raw judge gaps.

The `yesno_logit` judge scores a text tanh(g / s), where g is the mean over the two option orders of the
log-odds gap log p(good) - log p(bad) (rain/core/judge.py). How large g is depends on the model: a few hundredths of a
logit for the embedded 135M model, several logits for a 7B one. A fixed s either saturates every score at ±1
(siblings tie and the search goes blind) or squeezes them all near 0 (Eq. (1)'s exploration term drowns them).

The rule. Judge every exchange of a small fixed calibration set (rain/data/judge_calibration.jsonl: 16 prompt and
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

Judging the 16 exchanges costs ~3.5 s of a 135M model's start on 2 CPU cores, every start. The result is kept on
disk (`stored_scale`, under the weights cache's root: `judge_scales/<key>.json`), keyed by everything the gaps
depend on: the weights (`model_fingerprint`), their dtype and device, the engine, the judge's format and
question, the calibration set's bytes and the torch/transformers versions. The stored number is the computed one
(JSON keeps a float exactly), so a cached start gives the same scale, hence the same trees, as a fresh one.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from rain.backends.weights_cache import cache_root, note_stderr, write_atomic
from rain.core.judge import describe, order_part
from rain.data import DATA_DIR

CALIBRATION_SET = DATA_DIR / "judge_calibration.jsonl"
QUANTILE = 0.9                       # the calibration gap quantile ...
QUANTILE_SCORE = 0.9                 # ... that scores exactly this
MIN_SCALE = 1e-6                     # a judge whose gaps are all ~0 gets this scale (its scores stay ~0)
AUTO = "auto"
T = TypeVar("T")


def scale_key(config) -> tuple[str, ...]:
    """What the auto judge scale depends on besides the weights: the judge's format and what it asks."""
    return (config.judge_format, config.criterion, config.principle, config.principle_good)


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
    """g: the mean over both orders of the log-odds gap, before the tanh (rain.core.judge.order_part, yesno_logit)."""
    evaluation = judge.evaluate(question, answer)
    description = getattr(judge, "description", None) or describe("yesno_logit", "harm")
    parts = [order_part("yesno_logit", probs, order.good, order.bad)      # the judge's own good/bad labels
             for probs, order in zip(evaluation.orders, description.orders)]
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


STORE_VERSION = 1
FINGERPRINT_ELEMENTS = 4096          # per sampled tensor: enough to tell two checkpoints apart, cheap to read


def model_fingerprint(model) -> str:
    """sha256 of the model's config and of the first elements of its first and last three weight tensors: which
    checkpoint this is, from its contents (a hub id, a folder and a GGUF file of the same weights agree)."""
    import torch

    digest = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    parameters = list(model.named_parameters())
    with torch.no_grad():
        for name, tensor in parameters[:3] + parameters[-3:]:
            sample = tensor.detach().reshape(-1)[:FINGERPRINT_ELEMENTS].to("cpu", torch.float32).contiguous()
            digest.update(name.encode() + str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def weights_fingerprint(model) -> str:
    """What identifies a judge's weights as computed here (contents, dtype, device): the stored scale's key."""
    return f"{model_fingerprint(model)}/{model.dtype}/{model.device.type}"


def resolve_scale(config, memo: dict[tuple[str, ...], JudgeScale], calibrated: Callable[[], JudgeScale],
                  stored_under: Callable[[tuple[str, ...]], str | None]) -> JudgeScale:
    """The yes/no logit judge's scale for `config`: its own number ("fixed"), 1.0 for a format that reads no logit
    gap, or "auto": `calibrated()` once per scale_key(config) into `memo`, kept on disk under the key
    `stored_under(scale_key)` names (None: weights without a fingerprint, not stored). One rule for the model's
    own judge and for another model as evaluator."""
    if config.judge_logit_scale != AUTO:
        return JudgeScale(float(config.judge_logit_scale), "fixed")
    if config.judge_format != "yesno_logit":
        return JudgeScale(1.0, f"unused by {config.judge_format}")
    key = scale_key(config)
    if key not in memo:
        where = stored_under(key)
        memo[key] = calibrated() if where is None else stored_scale(where, calibrated)
    return memo[key]


def store_key(fingerprint: str, *parts: str) -> str:
    """The cache file's name: the fingerprint, `parts` (dtype, device, engine, judge question ...), the
    calibration set's bytes and the library versions the gaps were computed with."""
    import torch
    import transformers

    digest = hashlib.sha256(json.dumps([STORE_VERSION, fingerprint, *parts, torch.__version__,
                                        transformers.__version__]).encode())
    digest.update(CALIBRATION_SET.read_bytes())
    return digest.hexdigest()[:32]


def stored(folder: str, key: str, compute: Callable[[], T], load: Callable[[dict], T | None], what: str,
           redo: str, root: Path | None = None) -> T:
    """The measurement stored under `folder/key.json` (under the weights cache's root), else `compute()`, stored
    atomically: the judge scale here, the precision probe (rain/backends/precision.py). `load` turns the stored JSON into
    the value, or None when it is invalid; an unreadable entry is recomputed with a one-line note (`what`: `redo`).
    Two processes computing at once write their own results; the last rename wins."""
    path = (root or cache_root()) / folder / f"{key}.json"
    if path.exists():
        try:
            value = load(json.loads(path.read_text(encoding="utf-8")))
            if value is not None:
                return value
            problem = "an invalid value"
        except (OSError, ValueError, TypeError) as error:
            problem = type(error).__name__
        note_stderr(f"{what}: {redo} ({path.name} held {problem})")
    value = compute()
    try:
        write_atomic(path, json.dumps(asdict(value)))
    except OSError as error:                            # a read-only cache costs the next start the measurement
        note_stderr(f"{what}: not written ({error})")
    return value


def _stored_judge_scale(stored_value: dict) -> JudgeScale | None:
    scale = JudgeScale(**stored_value)
    return scale if isinstance(scale.value, float) and scale.source == AUTO and scale.value >= MIN_SCALE else None


def stored_scale(key: str, compute: Callable[[], JudgeScale], root: Path | None = None) -> JudgeScale:
    """The scale stored under `key`, else `compute()` (`stored`: a cached start gives the computed number)."""
    return stored("judge_scales", key, compute, _stored_judge_scale, "judge scale cache", "recalibrating", root)
