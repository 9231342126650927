"""Which floating-point precision generates and which judges (`--dtype`, `--judge-dtype`).

Candidates and rollouts only need the model's ranking of likely tokens, which survives bfloat16; the embedded
135M judge's signal is about 0.02 logits and does not (`judge-check`: 0.78 in float32, 0.58 in bfloat16;
../shared/FIELD-NOTES.md "precision on this CPU"). So `auto` is:
- CUDA: bfloat16 for both (float16 where the GPU lacks bfloat16);
- a CPU with native bfloat16 (AVX-512 BF16 or AMX; 1.5-3x faster forwards): bfloat16 generation, float32 judge;
- any other CPU: float32 for both (emulated bfloat16 is slower than float32).
A judge precision that differs from the generation's costs a second copy of the weights. `auto` makes one only
for models up to `JUDGE_COPY_MAX_PARAMETERS`; a larger model's judge shares the generation weights unless
`judge_dtype` is given explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rain.backends.models import DTYPES, ModelLoadError

PRECISIONS = ("auto", *DTYPES)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")          # /proc/cpuinfo flags of CPUs with bfloat16 arithmetic
JUDGE_COPY_MAX_PARAMETERS = 1_000_000_000                # auto keeps a separate judge copy only below this size


def native_bf16_flag(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first bfloat16 flag this CPU reports, or None (also where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


@dataclass(frozen=True)
class Precision:
    """The two dtypes and why they were chosen (printed by the CLI, stored in the tree JSON)."""

    dtype: torch.dtype
    judge_dtype: torch.dtype
    reason: str
    judge_explicit: bool = False             # `judge_dtype` was given rather than `auto`

    @property
    def names(self) -> tuple[str, str]:
        return name(self.dtype), name(self.judge_dtype)

    def describe(self) -> str:
        generation, judge = self.names
        return f"precision: generation {generation}, judge {judge} ({self.reason})"

    def sharing_judge(self, parameters: int) -> Precision:
        """The judge on the generation weights when `auto` would copy a model too large to hold twice."""
        if self.judge_dtype == self.dtype or self.judge_explicit or parameters <= JUDGE_COPY_MAX_PARAMETERS:
            return self
        return Precision(self.dtype, self.dtype, f"{self.reason}; the judge shares the generation weights: "
                         f"{parameters / 1e9:.1f}B parameters are too many to hold twice (ask with --judge-dtype)")


def name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _explicit(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use {', '.join(PRECISIONS)}")
    return DTYPES[dtype]


def resolve_precision(dtype: str, judge_dtype: str, device: torch.device,
                      bf16_flag: str | None | bool = True) -> Precision:
    """Resolve `auto` (module docstring). `bf16_flag=True` reads /proc/cpuinfo; tests pass a flag or None."""
    flag = native_bf16_flag() if bf16_flag is True else bf16_flag
    reasons = []
    if dtype != "auto":
        generation = _explicit(dtype)
    elif device.type == "cuda":
        generation = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        reasons.append("auto: a GPU")
    elif flag:
        generation = torch.bfloat16
        reasons.append(f"auto: this CPU has native bfloat16 ({flag})")
    else:
        generation = torch.float32
        reasons.append("auto: this CPU has no native bfloat16")
    if judge_dtype != "auto":
        judge = _explicit(judge_dtype)
    elif device.type == "cuda":
        judge = generation
    else:
        judge = torch.float32
        if generation != torch.float32:
            reasons.append("the judge stays float32 on CPU: its signal is a few hundredths of a logit")
    return Precision(generation, judge, "; ".join(reasons) or "as asked", judge_explicit=judge_dtype != "auto")
