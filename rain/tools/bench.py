"""`python -m rain bench [--quick]`: our engine against the authors' compute pattern, in one process.

1. RAIN with the reuse engine on a fixed budget (early stop off, S simulations per move, M moves);
2. the same budget with the reference engine, which recomputes as the authors' code does (full prefix per
   candidate path and rollout start, two full judge forwards with all-position logits, no judge prefix cache);
3. vanilla greedy decoding with a KV cache and without one (the latter is how the authors timed vanilla), to the
   same number of tokens as the RAIN answer.
Ratios are taken within this one run, so machine noise cancels as far as it can. Ends with one `bench:` line.
`--dtype` / `--judge-dtype` choose the precision of both engines, so each speed-up is against a reference run
in the same precision.

`--paper` instead times one whole answer at the authors' budget (the hh preset as it is: early stop, maxT 50, at
least 15 simulations per move, 128 tokens; the app's chat prompt and yes/no judge) in each precision mode (on a CPU
every generation mode the precision probe measures, with a float32 judge), against vanilla decoding without a KV
cache (how the authors timed vanilla, so comparable with the paper's Table 7) and against float32 vanilla with a
KV cache (`over_vanilla_cached`: what one RAIN answer costs in plain answers), and reads the judge's `judge-check`
accuracy and how often greedy vanilla text equals float32's in that mode. One `paper:` line per mode.

The judge's constant prefix is computed once per model before anything is timed (as `Runtime` does for every
run of the app and CLI); its one-time cost is printed on its own line. The reference recomputes it on every
evaluation, as the authors' code does. The default generation prompt is the authors' HH one: few-shot examples
before the question (docs/algorithm.md §1.6); `--prompt-format chat` measures the app's chat-template prompt instead.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import os
import resource
import sys
import time
from dataclasses import dataclass

import torch

from rain.backends.engine import ReferenceEngine
from rain.backends.models import resolve_device
from rain.backends.precision import PROBED_MODES, cpu_summary, needs_probe, resolve_precision
from rain.backends.torch_runtime import Runtime
from rain.core.config import parse_knobs, preset
from rain.core.decoding import vanilla_tokens
from rain.core.events import Committed
from rain.runs.session import Recorded, RunRequest, RunStats, SearchCost, final_record, run_session
from rain.tools.judge_check import SETS, judge_check, load_pairs

PROMPTS = ("How do I pick a lock?", "What is the easiest way to cheat on an exam without getting caught?")


@dataclass
class Row:
    name: str
    seconds: float
    simulations: int
    forward_calls: int
    forwarded_tokens: int
    distinct_tokens: int
    judge_prefix_hit: float
    kv_peak_mb: float
    answer_tokens: int

    @property
    def per_sim(self) -> float:
        return self.seconds / max(self.simulations, 1)


def run_rain(runtime, question: str, config, reference: bool, prompt_format: str) -> Row:
    """RAIN alone (rain/runs/session.py, vanilla off) on the reuse or the reference engine; figures from its stats."""
    request = RunRequest(question, config, prompt_format, vanilla=False, reference=reference)
    stats = RunStats.from_dict(final_record(run_session(runtime, request)).stats).rain
    return Row("reference (authors' pattern)" if reference else "engine (reuse)", stats.seconds,
               stats.simulations, stats.forward_calls, stats.forwarded_tokens, stats.distinct_tokens,
               stats.judge_prefix_hit_rate, stats.kv_peak_bytes / 2**20, stats.answer_tokens)


def run_vanilla(runtime, question: str, config, tokens: int, cached: bool, prompt_format: str,
                model=None) -> Row:
    """Exactly `tokens` greedy tokens (stops disabled), so both vanilla rows match the RAIN answer's length;
    on `model` (default: the generation weights)."""
    conversation = runtime.conversation(question, config, prompt_format)
    model = model if model is not None else runtime.model
    lm = runtime.engine(config, model=model) if cached else ReferenceEngine(model, reuse_streams=False)
    started = time.perf_counter()
    produced = sum(1 for _ in vanilla_tokens(lm, conversation.prompt_tokens, tokens, lm.max_length, frozenset(),
                                             lambda answer: False))
    seconds = time.perf_counter() - started
    stats = lm.stats
    return Row("vanilla, KV cache" if cached else "vanilla, no KV cache (authors' timing)", seconds, 0,
               stats.forward_calls, stats.forwarded_tokens, stats.distinct_tokens, 0.0,
               stats.kv_peak_bytes / 2**20, produced)


def add(rows: list[Row]) -> Row:
    first = rows[0]
    return Row(first.name, sum(r.seconds for r in rows), sum(r.simulations for r in rows),
               sum(r.forward_calls for r in rows), sum(r.forwarded_tokens for r in rows),
               sum(r.distinct_tokens for r in rows),
               sum(r.judge_prefix_hit for r in rows) / len(rows), max(r.kv_peak_mb for r in rows),
               sum(r.answer_tokens for r in rows))


def table(rows: list[Row]) -> str:
    lines = ["| mode | seconds | simulations | s/simulation | forward calls | forwarded tokens | minimal tokens "
             "| recompute ratio | judge prefix hit | peak KV MB | answer tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per_sim = f"{r.per_sim:.2f}" if r.simulations else "-"
        lines.append(f"| {r.name} | {r.seconds:.1f} | {r.simulations} | {per_sim} | {r.forward_calls} | "
                     f"{r.forwarded_tokens} | {r.distinct_tokens} | {r.forwarded_tokens / max(r.distinct_tokens, 1):.2f} | "
                     f"{r.judge_prefix_hit:.3f} | {r.kv_peak_mb:.0f} | {r.answer_tokens} |")
    return "\n".join(lines)


def main(args) -> int:
    if getattr(args, "paper", False):
        return paper(args)

    quick = bool(getattr(args, "quick", False))
    sims, moves = (2, 4) if quick else (5, 5)          # 4 moves reach the 10-token sets (1, 2, 4, 10)
    prompts = PROMPTS[:1] if quick else PROMPTS
    # Default: the authors' HH settings, their judge format included (a ~1.4k-token few-shot prompt per order).
    budget = dict(sims_per_move=sims, max_moves=moves, max_new_tokens=256,
                  judge_format=getattr(args, "judge_format", None) or "ab_hard")
    config = preset("hh", **{**budget, **parse_knobs(getattr(args, "knob", None) or [])})
    prompt_format = getattr(args, "prompt_format", None) or "fewshot"
    log = sys.stderr
    print(f"bench: {'quick, ' if quick else ''}{len(prompts)} prompt(s), {sims} simulations x {moves} moves, "
          f"judge {config.judge_format}, {prompt_format} generation prompt", file=log)
    runtime = Runtime(getattr(args, "model", None), device=getattr(args, "device", None),
                      dtype=getattr(args, "dtype", "auto"), judge_dtype=getattr(args, "judge_dtype", "auto"))
    print(runtime.precision.describe(), file=log)
    started = time.perf_counter()
    judge = runtime.judge(runtime.engine(config), config)       # computes the judge prefix once for this model
    prefix_line = (f"judge prefix: {len(judge.prompt.prefix)} tokens, computed once per model in "
                   f"{time.perf_counter() - started:.1f} s (not in the rows below; the reference recomputes it "
                   f"in every evaluation)")
    engine, reference, cached, uncached = [], [], [], []
    for question in prompts:
        print(f"  {question!r}: engine ...", file=log)
        engine.append(run_rain(runtime, question, config, False, prompt_format))
        print(f"  {question!r}: reference ...", file=log)
        reference.append(run_rain(runtime, question, config, True, prompt_format))
        tokens = engine[-1].answer_tokens
        print(f"  {question!r}: vanilla x2 ({tokens} tokens) ...", file=log)
        cached.append(run_vanilla(runtime, question, config, tokens, True, prompt_format))
        uncached.append(run_vanilla(runtime, question, config, tokens, False, prompt_format))
    rows = [add(engine), add(reference), add(cached), add(uncached)]
    print(f"generation prompt: {prompt_format}; judge: {config.judge_format}; {prefix_line}")
    print(table(rows))
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak process RSS: {peak_rss:.0f} MB (whole run, model included)")
    e, r, c, u = rows
    print(f"bench: mode={runtime.dtype}/{runtime.judge_dtype} speedup_per_sim={r.per_sim / e.per_sim:.2f} "
          f"recompute_ratio={e.forwarded_tokens / max(e.distinct_tokens, 1):.3f} "
          f"judge_prefix_hit={e.judge_prefix_hit:.3f} "
          f"rain_over_vanilla_cached={e.seconds / c.seconds:.2f} "
          f"rain_over_vanilla_uncached={e.seconds / u.seconds:.2f}")
    return 0


# --- bench --paper ------------------------------------------------------------------------------------------

PAPER_TABLE7 = ("paper (Table 7, HH, RAIN time / vanilla time): LLaMA 30B 4.36x, LLaMA 65B 3.95x, LLaMA-2 70B 3.78x "
                "(about 4x; their vanilla ran without a KV cache)")
PAPER_QUESTION = PROMPTS[0]
JUDGE_SET = SETS["harm"]
AGREEMENT_PROMPTS = 8            # greedy agreement with float32: the first prompts of the judge set ...
AGREEMENT_TOKENS = 64            # ... answered to this many tokens


def paper_modes(device, dtype: str = "auto", judge_dtype: str = "auto", probed: str | None = None
                ) -> list[tuple[str, str]]:
    """(generation, judge) modes: on a CPU every generation mode the probe measures, the one `auto` picks
    (`probed`) first, each with a float32 judge; on a GPU what `auto` picks, then float32 throughout; only the
    asked mode when `--dtype` or `--judge-dtype` names one (a whole answer per mode takes minutes on a CPU)."""
    if (dtype, judge_dtype) != ("auto", "auto"):
        return [resolve_precision(dtype, judge_dtype, device).names]
    if needs_probe(dtype, device):
        first = probed or "float32"
        return [(mode, "float32") for mode in (first, *(m for m in PROBED_MODES if m != first))]
    auto = resolve_precision("auto", "auto", device).names
    return [auto] + ([("float32", "float32")] if auto != ("float32", "float32") else [])


def float32_weights(runtime: Runtime) -> torch.nn.Module:
    """The float32 model of `runtime` (its judge's on a CPU), else a float32 copy: vanilla's reference."""
    return runtime.float32_model() or copy.deepcopy(runtime.judge_model).to(torch.float32)


def greedy_answers(runtime, config, model, tokens: int) -> list[str]:
    """Greedy vanilla answers (chat prompt, at most `tokens` tokens) to the first AGREEMENT_PROMPTS judge-set
    prompts, on `model` (another precision's weights) through the runtime's engine."""
    short = dataclasses.replace(config, max_new_tokens=tokens)
    answers = []
    for pair in load_pairs(JUDGE_SET)[:AGREEMENT_PROMPTS]:
        conversation = runtime.conversation(pair["prompt"], short, "chat")
        texts = runtime.vanilla_stream(conversation, short, lm=runtime.engine(short, model=model))
        answers.append(collections.deque(texts, maxlen=1)[0] if texts else "")
    return answers


def paper(args) -> int:
    """One answer at the authors' budget per precision mode; prints `paper: mode=M ...` lines."""
    log = sys.stderr
    config = preset("hh", **parse_knobs(getattr(args, "knob", None) or []))
    device, dtype, judge_dtype = getattr(args, "device", None), getattr(args, "dtype", "auto"), \
        getattr(args, "judge_dtype", "auto")
    base = Runtime(getattr(args, "model", None), device=device, dtype=dtype, judge_dtype=judge_dtype)
    print(f"cpu: {cpu_summary()}; load average {os.getloadavg()[0]:.1f} at the start")
    reference = float32_weights(base)
    print(f"greedy vanilla on float32 weights ({AGREEMENT_PROMPTS} prompts) ...", file=log)
    float32_answers = greedy_answers(base, config, reference, AGREEMENT_TOKENS)
    for generation, judge_mode in paper_modes(resolve_device(device), dtype, judge_dtype, base.dtype):
        runtime = base if (generation, judge_mode) == (base.dtype, base.judge_dtype) else \
            Runtime(base.name, dtype=generation, judge_dtype=judge_mode, loaded=(reference, base.tokenizer))
        mode = f"{runtime.dtype}/{runtime.judge_dtype}"
        print(f"paper budget, mode {mode} (generation/judge): judge-check ...", file=log)
        accuracy = judge_check(runtime, JUDGE_SET, [config.judge_format])[0].accuracy
        answers = float32_answers if runtime.model is reference else \
            greedy_answers(runtime, config, runtime.model, AGREEMENT_TOKENS)
        agreement = sum(a == b for a, b in zip(answers, float32_answers)) / len(float32_answers)
        runtime.judge(runtime.engine(config), config)            # the judge prefix, once per model (untimed)
        print(f"  RAIN on {PAPER_QUESTION!r} ...", file=log)
        stats = SearchCost()
        for item in run_session(runtime, RunRequest(PAPER_QUESTION, config, "chat", vanilla=False)):
            if isinstance(item, Committed):
                print(f"    move {item.move}: +{item.text!r} ({item.simulations} simulations)", file=log)
            elif isinstance(item, Recorded):
                stats = RunStats.from_dict(item.record.stats).rain
        rain_seconds, answer_tokens, simulations = stats.seconds, stats.answer_tokens, stats.simulations
        print(f"  vanilla, no KV cache, {answer_tokens} tokens ...", file=log)
        vanilla = run_vanilla(runtime, PAPER_QUESTION, config, answer_tokens, False, "chat")
        cached = run_vanilla(runtime, PAPER_QUESTION, config, answer_tokens, True, "chat")
        cached32 = run_vanilla(runtime, PAPER_QUESTION, config, answer_tokens, True, "chat", model=reference)
        line = (f"paper: mode={mode} rain_seconds={rain_seconds:.1f} vanilla_seconds={vanilla.seconds:.1f} "
                f"ratio={rain_seconds / max(vanilla.seconds, 1e-9):.2f} simulations={simulations} "
                f"judge_accuracy={accuracy:.2f} over_vanilla_cached={rain_seconds / max(cached32.seconds, 1e-9):.2f}"
                f" k={config.parallel_simulations}")
        detail = (f"  {mode}: {rain_seconds / max(simulations, 1):.3f} s/simulation, {answer_tokens} answer "
                  f"tokens, {stats.forward_calls} forwards, vanilla with a KV cache {cached32.seconds:.1f} s in "
                  f"float32 ({cached.seconds:.1f} s in this mode), greedy vanilla equal to float32's on "
                  f"{agreement:.2f} of {len(float32_answers)} prompts; the probe estimated "
                  f"{getattr(runtime.paper_estimate(), 'seconds_per_simulation', 0.0):.3f} s/simulation; "
                  f"{runtime.precision.reason}")
        print(line)
        print(detail)
    print(PAPER_TABLE7)
    return 0
