"""The commands that measure: judge-check, check-models, bench (and its throughput mode), eval and sweep.
Each is a thin handler over its module in rain/tools/; the parser is rain/tools/cli.py's."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from rain.backends.embedder import MiniLMEmbedder
from rain.core.config import parse_knobs, preset
from rain.core.errors import UsageError
from rain.core.judge import FORMATS
from rain.tools import evaluation as ev
from rain.tools import options, sweep
from rain.tools.bench import main as bench_main
from rain.tools.eval_figures import write_figure
from rain.tools.eval_judges import load_external_judges
from rain.tools.eval_summary import summarise, write_summary
from rain.tools.judge_check import default_set, format_table, judge_check, load_pairs
from rain.tools.model_check import ARCHITECTURES, check_models, load_tokenizer, summary_line
from rain.tools.options import config_from
from rain.tools.throughput import main as throughput_main


def cmd_judge_check(args: argparse.Namespace) -> int:
    scale = parse_knobs([f"judge_logit_scale={args.judge_logit_scale}"])["judge_logit_scale"]   # fails before loading
    principle = options.principle_overrides(args)
    preset("hh", criterion=args.criterion, **principle)                                        # so does a bad principle
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise UsageError(f"unknown judge format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    pairs = Path(args.set) if args.set else default_set(args.criterion)
    if not pairs.is_file():
        raise UsageError(f"no such judge-check set: {pairs}")
    try:
        load_pairs(pairs, None, args.criterion)
    except ValueError as error:
        raise UsageError(str(error)) from None
    runtime = options.runtime_for(args)
    results = judge_check(runtime, pairs, formats, args.limit, args.criterion, scale,
                          principle.get("principle", ""), principle.get("principle_good", "yes"))
    print(format_table(results, runtime.name, args.criterion, principle.get("principle", "")))
    return 0


def cmd_check_models(args: argparse.Namespace) -> int:
    """Tiny random-weight models of every family: engine error against full forwards, and a short search."""
    archs = args.archs.split(",") if args.archs else list(ARCHITECTURES)
    unknown = sorted(set(archs) - set(ARCHITECTURES))
    if unknown:
        raise UsageError(f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}")
    print("loading the embedded tokenizer and the embedder ...", file=sys.stderr)
    tokenizer, embedder = load_tokenizer(args.tokenizer), MiniLMEmbedder(device="cpu")
    results = check_models(tokenizer, embedder, archs, progress=lambda result: print(result.line(), flush=True))
    for result in results:
        print(f"  {result.arch}: {result.note} ({result.seconds:.1f} s)", file=sys.stderr)
    print(summary_line(results))
    return 0 if all(result.ok for result in results) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    if args.concurrency is not None:
        return throughput_main(args)

    return bench_main(args)


def _run_pairs_with_bar(todo, runner, results_path: Path, desc: str) -> None:
    """Run the pending (prompt, method) pairs of eval or sweep, appending each result as it finishes."""

    bar = tqdm(total=len(todo), desc=desc, unit="run", file=sys.stderr)
    try:
        for result in ev.run_pairs(todo, runner, results_path):
            bar.set_postfix_str(f"{result.id}/{result.method} score={result.self_score:+.2f}")
            bar.update(1)
    finally:
        bar.close()


def cmd_eval(args: argparse.Namespace) -> int:
    """vanilla / RAIN / Best-of-N on a prompt set: DIR/results.jsonl (resumable), DIR/summary.md and .html."""
    config = config_from(args)
    out = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = ev.parse_methods(args.methods)                  # an EvalError is a RainError: one line, exit 2
    prompts = ev.load_prompts(Path(args.input), args.limit)
    if args.n < 1 or args.temperature <= 0:
        raise ev.EvalError("--n must be >= 1 and --temperature > 0")
    setup = {"model": args.model or "embedded", "config": config.to_dict(), "prompt_format": args.prompt_format,
             "judge": args.judge, "n": args.n, "temperature": args.temperature}
    ev.check_setup(out, setup, fresh=args.fresh)
    results_path = out / ev.RESULTS_FILE
    todo = ev.pending(prompts, methods, ev.read_results(results_path))
    external = []
    if args.judge:
        print(f"loading judge(s) {args.judge} ...", file=sys.stderr)
        external = load_external_judges(args.judge, device=args.device, dtype=args.dtype,
                                        trust_remote_code=args.trust_remote_code, criterion=config.criterion,
                                        kv_cache_bytes=config.kv_cache_bytes, logit_scale=config.judge_logit_scale)
    if todo:
        runtime = options.runtime_for(args, *(ev.lane_config(config, method) for method in methods))
        runner = ev.MethodRunner.on(runtime, config, external=external,
                                    n=args.n, temperature=args.temperature, prompt_format=args.prompt_format)
        _run_pairs_with_bar(todo, runner, results_path, "eval")
    wanted = {(p.id, m) for p in prompts for m in methods}
    results = [r for r in ev.read_results(results_path) if (r.id, r.method) in wanted]
    budget = (f"sims_per_move={config.sims_per_move or 'auto (early stop)'}, max_moves={config.max_moves or '-'}, "
              f"max_new_tokens={config.max_new_tokens}, judge_format={config.judge_format} "
              f"(logit scale {config.judge_logit_scale}), "
              f"Best-of-N n={args.n} at T={args.temperature}, seed={config.seed}")
    header = (f"RAIN evaluation: {args.model or 'embedded SmolLM2-135M-Instruct'}, {len(prompts)} prompts "
              f"({Path(args.input).name}), preset {config.preset}\n\nBudget: {budget}")
    summary = summarise(results, methods, external[0].name if external else None, header,
                        [judge.name for judge in external])
    print(write_summary(out, summary), end="")
    print(f"wrote {results_path}, {out / ev.SUMMARY_FILE}, {write_figure(out, summary, results)}", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Table 4's ablation on a prompt set: DIR/results.jsonl (resumable), DIR/summary.md, DIR/summary.png."""
    config = config_from(args)
    out = Path(args.out)
    try:
        variants = sweep.parse_variants(args.variants)
        prompts = ev.load_prompts(Path(args.input), args.limit)
        ev.check_setup(out, {"model": args.model or "embedded", "config": config.to_dict(),
                             "prompt_format": args.prompt_format, "command": "sweep"}, fresh=args.fresh)
    except ev.EvalError as error:
        raise UsageError(str(error)) from None
    results_path = out / ev.RESULTS_FILE
    todo = ev.pending(prompts, variants, ev.read_results(results_path))
    if todo:
        runtime = options.runtime_for(args, config)
        _run_pairs_with_bar(todo, sweep.sweep_runner(runtime, config, args.prompt_format), results_path, "sweep")
    wanted = {(p.id, v) for p in prompts for v in variants}
    results = [r for r in ev.read_results(results_path) if (r.id, r.method) in wanted]
    header = (f"RAIN ablation (Table 4): {args.model or 'embedded SmolLM2-135M-Instruct'}, {len(prompts)} prompts "
              f"({Path(args.input).name}), preset {config.preset}, sims_per_move={config.sims_per_move or 'auto'}, "
              f"max_moves={config.max_moves or '-'}, max_new_tokens={config.max_new_tokens}, seed={config.seed}")
    print(sweep.write_summary(out, results, variants, header), end="")
    print(f"wrote {results_path}, {out / sweep.SUMMARY_FILE}, {out / sweep.PLOT_FILE}", file=sys.stderr)
    return 0
