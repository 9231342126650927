"""Which precision generates and which judges (`--dtype`, `--judge-dtype`), chosen by measurement.

Candidates and rollouts only need the model's ranking of likely tokens, which survives fewer bits; the embedded
135M judge's signal is about 0.02 logits and does not (`judge-check`: 0.78 in float32, 0.58 in bfloat16;
../shared/FIELD-NOTES.md "precision on this CPU"). Generation modes:
- `float32`, `bfloat16`, `float16`: the whole model in that dtype;
- `int8`: every Linear layer (lm_head included, the largest single matmul) holds int8 weights with one float32
  scale per output channel (`Int8Linear`); activations, embeddings, norms and keys/values stay float32. A
  forward reads all the weights however few rows it carries, so a quarter of the bytes is most of the gain.
  torch's own int8 weight-only matmul (`aten._weight_int8pack_mm`) serves it; torchao's int8 weight-only
  tensor converts the whole weight to float on every eager call (its speed needs torch.compile), so it is not used.

`auto`:
- CUDA: bfloat16 for both (float16 where the GPU lacks bfloat16);
- CPU: the generation mode whose forwards measure fastest on this machine (`SpeedProbe`: a few forwards of the
  real model at a simulation's shapes, once per machine, model and library versions, stored on disk like the
  judge scale), never one slower than float32; the judge stays float32.
A judge precision that differs from the generation's costs a second copy of the weights. `auto` makes one only
for models up to `JUDGE_COPY_MAX_PARAMETERS`; a larger model's judge shares the generation weights unless
`judge_dtype` is given explicitly.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rain.backends.calibration import model_fingerprint, store_key, stored
from rain.backends.engine import choose_engine
from rain.backends.models import DTYPES, ModelLoadError
from rain.core.config import PAPER_TYPICAL_SIMULATIONS

INT8 = "int8"
PRECISIONS = ("auto", *DTYPES, INT8)
PROBED_MODES = ("float32", "bfloat16", INT8)             # the generation modes auto measures on a CPU
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")  # kernels torch picks by
JUDGE_COPY_MAX_PARAMETERS = 1_000_000_000                # auto keeps a separate judge copy only below this size
INT8_MAX = 127                                           # symmetric per-channel range: q in [-127, 127]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """(model name, flags) of this CPU; ("", []) where /proc/cpuinfo does not exist."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", []
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields.get("model name", ""), fields.get("flags", "").split()


def cpu_summary(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """This CPU in one line: model name, the flags that decide its matmul kernels, threads (bench, docs)."""
    model, flags = cpu_flags(cpuinfo)
    shown = [flag for flag in SPEED_FLAGS if flag in flags]
    return f"{model or 'unknown CPU'}; flags {' '.join(shown) or 'none of ' + ' '.join(SPEED_FLAGS)}; " \
           f"{torch.get_num_threads()} torch threads"


# --- int8 weight-only generation

class Int8Linear(torch.nn.Module):
    """A Linear layer with int8 weights and one float32 scale per output channel (weight-only quantisation).

    scale_j = max_k |W_jk| / 127, q_jk = round(W_jk / scale_j) in [-127, 127], so W ≈ q · scale[:, None] with an
    error of at most scale_j / 2 per weight. The forward is x @ (q · scale[:, None])^T + b, computed by torch's
    int8 weight-only matmul without ever forming the float weight.
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().to(torch.float32)
        scale = (weight.abs().amax(dim=1) / INT8_MAX).clamp_min(torch.finfo(torch.float32).tiny)
        quantized = torch.round(weight / scale[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
        self.register_buffer("weight_int8", quantized.contiguous())       # [out_features, in_features]
        self.register_buffer("scale", scale.contiguous())                 # [out_features]
        bias = linear.bias
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).contiguous())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def dequantized(self) -> torch.Tensor:
        """q · scale[:, None]: the float32 weight this layer multiplies by."""
        return self.weight_int8.to(torch.float32) * self.scale[:, None]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        rows = inputs.reshape(-1, self.in_features).to(torch.float32).contiguous()     # [rows, in_features]
        output = torch.ops.aten._weight_int8pack_mm(rows, self.weight_int8, self.scale)
        if self.bias is not None:
            output = output + self.bias
        return output.reshape(*inputs.shape[:-1], self.out_features)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the float32 `model` whose Linear layers (lm_head included) are `Int8Linear`; embeddings and norms
    stay float32 (a tied lm_head gets its own int8 copy, the embedding keeps the float weight)."""
    if next(model.parameters()).dtype != torch.float32:
        raise ModelLoadError("int8 weights are made from a float32 model")
    quantized = copy.deepcopy(model)
    for module in list(quantized.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, child_name, Int8Linear(child))
    return quantized


def is_int8(model: torch.nn.Module) -> bool:
    return any(isinstance(module, Int8Linear) for module in model.modules())


def generation_copy(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """The generation weights of `mode` made from a float32 `model` (a copy; `model` itself is never changed)."""
    if mode == INT8:
        return quantize_int8(model)
    if DTYPES[mode] == torch.float32:
        return model
    return copy.deepcopy(model).to(DTYPES[mode])


# --- the probe: which generation mode is fastest on this machine

PROBE_VERSION = 1
PROBE_CACHE_TOKENS = 300         # keys/values in the cache before a timed forward: a prompt plus part of an answer
PROBE_ROWS = (1, 10)             # a rollout's single token; an expansion's 10 sibling candidates
PROBE_JUDGE_ROWS = 120           # a judge call's new tokens (both orders of question and answer, float32)
PROBE_REPEATS = 5                # timed forwards per shape (the median counts), after one untimed
FASTER_BY = 0.05                 # a mode must beat float32 by this fraction: never one slower, nor a tie by noise
# A paper-budget answer (bench --paper, embedded model, hh preset): its simulations (rain/core/config.py), and the generation forwards
# of a simulation by size, counted on the hh preset (36 simulations, 402 generation forwards: 155 of 1-4 rows, the
# rollout alone; 246 of 5-14, the rollout beside the expansion's candidate paths); one judge call per simulation.
PAPER_FORWARDS_PER_SIMULATION = {1: 4.3, 10: 6.8}


@dataclass(frozen=True)
class PaperEstimate:
    """What a paper-budget answer is estimated to cost on this machine (the app's default budget follows it)."""

    seconds_per_simulation: float
    simulations: int = PAPER_TYPICAL_SIMULATIONS       # typical: a re-rooted move keeps its subtree's visits

    @property
    def seconds(self) -> float:
        return self.seconds_per_simulation * self.simulations


@dataclass(frozen=True)
class SpeedProbe:
    """Median seconds of a forward of the real model per generation mode and row count on this machine."""

    seconds: dict[str, dict[str, float]]     # mode -> {"1": s, "10": s}; shapes of PROBE_ROWS
    judge_seconds: float                     # a float32 judge forward of PROBE_JUDGE_ROWS new tokens
    cpu: str
    threads: int

    def simulation_seconds(self, mode: str) -> float:
        """A simulation's estimated forward time in `mode`: its generation forwards and one float32 judge call,
        which in float32 rides along with a generation forward (the same weights), saving one pass over them."""
        generation = sum(count * self.seconds[mode][str(rows)] for rows, count in PAPER_FORWARDS_PER_SIMULATION.items())
        riding = self.seconds["float32"]["1"] if mode == "float32" else 0.0
        return generation + self.judge_seconds - riding

    def paper_estimate(self, mode: str) -> PaperEstimate:
        """A paper-budget answer in `mode`, estimated."""
        return PaperEstimate(self.simulation_seconds(mode))

    def fastest(self) -> tuple[str, str]:
        """(mode, why): the mode with the fastest estimated simulation, float32 unless another beats it by
        FASTER_BY."""
        cost = {mode: self.simulation_seconds(mode) for mode in self.seconds}
        best = min(cost, key=cost.get)
        if cost[best] > (1 - FASTER_BY) * cost["float32"]:
            best = "float32"
        timings = ", ".join(f"{mode} {value:.2f} s" for mode, value in sorted(cost.items(), key=lambda i: i[1]))
        return best, (f"auto: {best} generation measured fastest on this CPU (a simulation's forwards, estimated "
                      f"from 1- and 10-row forwards after {PROBE_CACHE_TOKENS} cached tokens, {self.threads} "
                      f"threads: {timings})")


def _stored_probe(stored_value: dict) -> SpeedProbe | None:
    probe = SpeedProbe(**stored_value)
    valid = "float32" in probe.seconds and all(
        isinstance(value, float) and value > 0 for shapes in probe.seconds.values() for value in shapes.values())
    return probe if valid and probe.judge_seconds > 0 else None


def _median_forward(engine, prefix: list[int], rows: int, fresh: itertools.count) -> float:
    """Median seconds of forwards computing `rows` new sibling tokens after `prefix` (each forward new tokens)."""
    timings = []
    for repeat in range(PROBE_REPEATS + 1):
        states = [prefix + [next(fresh)] for _ in range(rows)]
        started = time.perf_counter()
        engine.next_logits(states)
        if repeat:
            timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def time_forwards(model: torch.nn.Module, rows: tuple[int, ...] = PROBE_ROWS) -> dict[str, float]:
    """Median forward seconds per row count on `model`, after PROBE_CACHE_TOKENS tokens, through the engine a run
    of that length gets on it (the trie, or the prefix-cached engine where the trie is not exact, e.g. a short
    sliding window)."""
    vocabulary = model.config.get_text_config().vocab_size
    engine = choose_engine(model, PROBE_CACHE_TOKENS + 2 * max(rows)).build(model, 256 << 20)
    prefix = [(7919 * position) % vocabulary for position in range(1, PROBE_CACHE_TOKENS + 1)]
    engine.next_logits([prefix])
    fresh = itertools.count(1)                       # token ids: each forward computes positions never seen
    return {str(count): _median_forward(engine, prefix, count, fresh) for count in rows}


def measure(model: torch.nn.Module) -> SpeedProbe:
    """Time every mode in PROBED_MODES on copies of the float32 `model` (a few seconds on 2 CPU cores)."""
    seconds = {}
    for mode in PROBED_MODES:
        copy_ = generation_copy(model, mode)
        seconds[mode] = time_forwards(copy_)
        del copy_
    judge = time_forwards(model, (PROBE_JUDGE_ROWS,))[str(PROBE_JUDGE_ROWS)]
    return SpeedProbe(seconds, judge, cpu_flags()[0] or "unknown CPU", torch.get_num_threads())


def probe_key(fingerprint: str) -> str:
    """What the probe's timings depend on: the model, this CPU (model name and flags), threads, library versions."""
    name, flags = cpu_flags()
    machine = hashlib.sha256(" ".join([name, *sorted(flags)]).encode()).hexdigest()[:16]
    return store_key(fingerprint, "precision probe", str(PROBE_VERSION), machine, str(torch.get_num_threads()),
                     str(os.cpu_count()))


def stored_probe(model: torch.nn.Module, root: Path | None = None) -> SpeedProbe:
    """The probe for this float32 `model` on this machine: stored, else measured now and stored."""
    return stored("precision_probes", probe_key(model_fingerprint(model)), lambda: measure(model), _stored_probe,
                  "precision probe cache", "remeasuring", root)


# --- resolving the two precisions

@dataclass(frozen=True)
class Precision:
    """The two precisions and why they were chosen (printed by the CLI, stored in the tree JSON)."""

    dtype: torch.dtype                       # generation activations (and weights, unless int8)
    judge_dtype: torch.dtype
    reason: str
    judge_explicit: bool = False             # `judge_dtype` was given rather than `auto`
    int8: bool = False                       # generation Linear weights are int8 (`Int8Linear`)
    probe: SpeedProbe | None = None          # the measurement auto chose by, if any

    @property
    def names(self) -> tuple[str, str]:
        return INT8 if self.int8 else name(self.dtype), name(self.judge_dtype)

    def describe(self) -> str:
        generation, judge = self.names
        return f"precision: generation {generation}, judge {judge} ({self.reason})"

    def sharing_judge(self, parameters: int) -> Precision:
        """The judge on the generation weights when `auto` would copy a model too large to hold twice."""
        if self.judge_dtype == self.dtype or self.judge_explicit or parameters <= JUDGE_COPY_MAX_PARAMETERS:
            return self
        return Precision(self.dtype, self.dtype, f"{self.reason}; the judge shares the generation weights: "
                         f"{parameters / 1e9:.1f}B parameters are too many to hold twice (ask with --judge-dtype)",
                         int8=self.int8, probe=self.probe)


def name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _explicit(dtype: str) -> torch.dtype:
    if dtype == INT8:
        return torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use {', '.join(PRECISIONS)}")
    return DTYPES[dtype]


def needs_probe(dtype: str, device: torch.device) -> bool:
    """`auto` on a CPU is chosen by measurement (`stored_probe`)."""
    return dtype == "auto" and device.type != "cuda"


def resolve_precision(dtype: str, judge_dtype: str, device: torch.device,
                      probe: SpeedProbe | None = None) -> Precision:
    """Resolve `auto` (module docstring). On a CPU without a `probe`, auto generation is float32 (what the probe
    runs on; `Runtime` then resolves again with the probe)."""
    reasons = []
    int8 = dtype == INT8
    if judge_dtype == INT8:
        raise ModelLoadError("the judge runs in float32, bfloat16 or float16: its signal does not survive int8")
    if dtype != "auto":
        generation = _explicit(dtype)
    elif device.type == "cuda":
        generation = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        reasons.append("auto: a GPU")
    elif probe is None:
        generation = torch.float32
        reasons.append("auto: float32 until the probe has measured this CPU")
    else:
        mode, why = probe.fastest()
        int8 = mode == INT8
        generation = _explicit(mode)
        reasons.append(why)
    if judge_dtype != "auto":
        judge = _explicit(judge_dtype)
    elif device.type == "cuda":
        judge = generation
    else:
        judge = torch.float32
        if generation != torch.float32 or int8:
            reasons.append("the judge stays float32 on CPU: its signal is a few hundredths of a logit")
    return Precision(generation, judge, "; ".join(reasons) or "as asked", judge_explicit=judge_dtype != "auto",
                     int8=int8, probe=probe)
