"""`python -m rain ...`: generate, replay, run (datasets), judge-check, bench, eval, check-models, convert, fork,
sweep, explain.

Bad input gets one line on stderr and a non-zero exit, never a traceback. One file, over 400 lines, on purpose:
every command is a thin parser block plus a handler that calls the library, and a reader finds all of the
command line in one place.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from rain.core.config import RainConfig, parse_knobs, preset
from rain.core.errors import RainError, UsageError
from rain.core.events import Committed
from rain.core.export import RunRecord, TreeFileError, load, save
from rain.backends.models import ModelLoadError
from rain.core.judge import FORMATS, JudgeError
from rain.core.prompts import PromptError, prompt_of
from rain.runs.runtimes import BACKEND_ENV, BACKENDS, load_runtime
from rain.runs.teaching import TeachingError, describe_divergence


def _model_options(parser: argparse.ArgumentParser, backend: bool = True) -> None:
    if backend:
        parser.add_argument("--backend", choices=BACKENDS, default=os.environ.get(BACKEND_ENV, "trie"),
                            help="trie: our instrumented engine; vllm: a shared vLLM engine (needs `make vllm`, "
                                 "run with .venv-vllm/bin/python); default $RAIN_BACKEND or trie")
    parser.add_argument("--model", default=None, help="hub id, local folder or FILE.gguf (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="generation precision; auto: bfloat16 on GPUs and on CPUs with native bfloat16, "
                             "else float32")
    parser.add_argument("--judge-dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="self-judge precision; auto: float32 on CPU (a second copy of a small model's "
                             "weights), the generation's on GPU")
    parser.add_argument("--trust-remote-code", action="store_true", help="run code shipped with a hub model (off by default)")


def _search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["hh", "adv", "truth", "imdb"], default="hh")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="answer length cap (default 128)")
    parser.add_argument("--sims-per-move", type=int, default=None, help="exactly N simulations per move, early stop off")
    parser.add_argument("--max-moves", type=int, default=None, help="stop after N committed token sets")
    parser.add_argument("--judge-format", choices=FORMATS, default=None)
    parser.add_argument("--prompt-format", choices=["auto", "chat", "fewshot"], default="auto")
    _principle_options(parser)
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="set any RainConfig field, e.g. --knob c_puct=1.5 --knob token_set_lengths=1,2,4 "
                             "(repeatable; applied after the flags above)")


def _principle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--principle", default=None, metavar="QUESTION",
                        help='your own yes/no question for the judge, e.g. "Is the response polite?" (replaces the '
                             "preset's criterion in both option orders; one line, at most 300 characters)")
    parser.add_argument("--good", choices=["yes", "no"], default=None,
                        help="which answer to --principle is good (default yes)")


def principle_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--principle/--good as config fields; RainConfig.validate checks the text (rain.core.config.principle_problem)."""
    principle, good = getattr(args, "principle", None), getattr(args, "good", None)
    if principle is None:
        if good is not None:
            raise UsageError("--good needs --principle")
        return {}
    if not principle.strip():
        raise UsageError("--principle is empty")
    return {"principle": principle, "principle_good": good or "yes"}


def config_from(args: argparse.Namespace) -> RainConfig:
    overrides: dict[str, Any] = {"seed": args.seed}
    for name in ("max_new_tokens", "sims_per_move", "max_moves", "judge_format"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    overrides.update(principle_overrides(args))
    overrides.update(parse_knobs(getattr(args, "knob", None) or []))
    return preset(args.preset, **overrides)


def _runtime(args: argparse.Namespace):
    print(f"loading {args.model or 'the embedded model (SmolLM2-135M-Instruct)'} ...", file=sys.stderr)
    if getattr(args, "backend", "trie") == "vllm":
        return load_runtime(args.model, "vllm")
    runtime = load_runtime(args.model, "trie", device=args.device, dtype=args.dtype,
                           trust_remote_code=args.trust_remote_code, judge_dtype=getattr(args, "judge_dtype", "auto"))
    print(runtime.precision.describe(), file=sys.stderr)
    return runtime


def stats_line(stats: dict[str, Any]) -> str:
    keys = ("simulations", "moves", "answer_tokens", "nodes", "seconds", "seconds_per_simulation",
            "forward_calls", "forwarded_tokens", "recompute_ratio", "judge_prefix_hit_rate",
            "vanilla_seconds", "rain_over_vanilla", "engine", "judge_logit_scale", "judge_scale_source",
            "divergence_token", "divergence_move")
    return "stats: " + " ".join(f"{k}={stats[k]}" for k in keys if k in stats)


def _run_one(runtime, question: str, config: RainConfig, prompt_format: str, progress: bool) -> RunRecord:
    """Vanilla then RAIN on one prompt (rain/runs/session.py); returns the record (its `vanilla` is vanilla's text)."""
    from rain.runs.session import Recorded, RunRequest, VanillaDone, run_session

    record = None
    for item in run_session(runtime, RunRequest(question, config, prompt_format)):
        if progress and isinstance(item, VanillaDone):
            print(f"searching ({runtime.dtype} generation, {runtime.judge_dtype} judge) ...", file=sys.stderr)
        elif progress and isinstance(item, Committed):
            print(f"  move {item.move}: +{item.text!r} ({item.simulations} simulations, {item.reason})",
                  file=sys.stderr)
        elif isinstance(item, Recorded):
            record = item.record
    return record


def cmd_generate(args: argparse.Namespace) -> int:
    config = config_from(args)
    if not args.prompt.strip():
        raise UsageError("the prompt is empty")
    runtime = _runtime(args)
    record = _run_one(runtime, args.prompt, config, args.prompt_format, progress=True)
    print(f"engine: {record.stats.get('engine_note')}", file=sys.stderr)
    print(f"vanilla: {record.vanilla}")
    print(f"rain: {record.answer}")
    print(stats_line(record.stats))                                    # stdout: vanilla, rain, one stats line
    print(describe_divergence(record.extras.get("divergence")), file=sys.stderr)
    if args.json:
        print(f"tree written to {save(record, args.json)}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    record = load(args.tree)
    print(f"prompt: {record.prompt}")
    if record.vanilla is not None:
        print(f"vanilla: {record.vanilla}")
    print(f"rain: {record.answer}")
    tree = record.tree()
    print(f"tree: {len(tree.nodes)} nodes, {sum(1 for e in record.events if e.type == 'commit')} moves, "
          f"{sum(1 for e in record.events if e.type == 'rewind')} simulations")
    print(stats_line(record.stats))
    print(describe_divergence(record.extras.get("divergence"), known="divergence" in record.extras))
    return 0


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, item or None, problem or None) for every non-blank line."""
    rows = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise ValueError("not a JSON object")
                prompt = prompt_of(item)
                if prompt is None or not prompt.strip():
                    raise ValueError('needs a non-empty "prompt" string (or the adv format\'s "goal" and "controls")')
                item = {**item, "prompt": prompt}
                rows.append((number, item, None))
            except ValueError as error:
                rows.append((number, None, str(error).split("\n")[0]))
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rain.runs.concurrent import Row, answer_row, finished_ids, run_concurrently

    config = config_from(args)
    source, out = Path(args.input), Path(args.out)
    if not source.is_file():
        raise UsageError(f"no such input file: {source}")
    if args.concurrency < 1 or args.workers < 1:
        raise UsageError("--concurrency and --workers must be >= 1")
    rows = _read_jsonl(source)
    done: set[str] = set()
    if args.resume:
        done = finished_ids(out)
    elif out.exists():
        out.unlink()
    failures = 0
    todo = []
    for number, item, problem in rows:
        if problem:
            failures += 1
            print(f"line {number}: skipped: {problem}", file=sys.stderr)
        elif str(item.get("id", number)) not in done:
            todo.append(Row(str(item.get("id", number)), item["prompt"], number))
    if args.ray is not None:
        from rain.tools.distributed import RayUnavailableError, run_on_ray

        try:
            failures += run_on_ray(todo, out, args.ray or None, args.workers, args.backend, args.model, config,
                                   args.prompt_format, args.trees)
        except RayUnavailableError as error:
            raise UsageError(str(error)) from None
        print(f"wrote {out} ({failures} line(s) skipped)", file=sys.stderr)
        return 0
    runtime = _runtime(args)

    def answer(row: Row) -> dict:
        return answer_row(runtime, row, config, args.prompt_format, args.trees)

    bar = tqdm(total=len(todo), desc="prompts", unit="prompt", file=sys.stderr)

    def on_row(row: Row, result: dict | None, error: Exception | None) -> None:
        nonlocal failures
        bar.update(1)
        if error is not None:
            if not isinstance(error, (PromptError, JudgeError)):
                raise error
            failures += 1
            tqdm.write(f"line {row.line}: skipped: {error}", file=sys.stderr)

    with out.open("a", encoding="utf-8") as sink:
        try:
            run_concurrently(todo, answer, args.concurrency, sink, on_row)
        finally:
            bar.close()
    print(f"wrote {out} ({failures} line(s) skipped)", file=sys.stderr)
    return 0


def cmd_judge_check(args: argparse.Namespace) -> int:
    from rain.tools.judge_check import judge_check, format_table

    from rain.tools.judge_check import default_set, load_pairs

    scale = parse_knobs([f"judge_logit_scale={args.judge_logit_scale}"])["judge_logit_scale"]   # fails before loading
    principle = principle_overrides(args)
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
    runtime = _runtime(args)
    results = judge_check(runtime, pairs, formats, args.limit, args.criterion, scale,
                          principle.get("principle", ""), principle.get("principle_good", "yes"))
    print(format_table(results, runtime.name, args.criterion, principle.get("principle", "")))
    return 0


def cmd_check_models(args: argparse.Namespace) -> int:
    """Tiny random-weight models of every family: engine error against full forwards, and a short search."""
    from rain.backends.embedder import MiniLMEmbedder
    from rain.tools.model_check import ARCHITECTURES, check_models, load_tokenizer, summary_line

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
        from rain.tools.throughput import main as throughput_main

        return throughput_main(args)
    from rain.tools.bench import main as bench_main

    return bench_main(args)


def _run_pairs_with_bar(todo, runner, results_path: Path, desc: str) -> None:
    """Run the pending (prompt, method) pairs of eval or sweep, appending each result as it finishes."""
    from tqdm import tqdm

    from rain.tools import evaluation as ev

    bar = tqdm(total=len(todo), desc=desc, unit="run", file=sys.stderr)
    try:
        for result in ev.run_pairs(todo, runner, results_path):
            bar.set_postfix_str(f"{result.id}/{result.method} score={result.self_score:+.2f}")
            bar.update(1)
    finally:
        bar.close()


def cmd_eval(args: argparse.Namespace) -> int:
    """vanilla / RAIN / Best-of-N on a prompt set: DIR/results.jsonl (resumable), DIR/summary.md and .html."""
    from rain.tools import evaluation as ev
    from rain.tools.eval_judges import load_external_judge
    from rain.tools.eval_summary import summarise, write_summary
    from rain.tools.eval_figures import write_figure      # the HTML figure is front-end code (rain/ never imports plotly)

    config = config_from(args)
    out = Path(args.out)
    if args.threads:
        import torch

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
    external = None
    if args.judge:
        print(f"loading judge {args.judge} ...", file=sys.stderr)
        external = load_external_judge(args.judge, args.device, args.dtype, args.trust_remote_code,
                                       config.criterion, config.kv_cache_bytes, config.judge_logit_scale)
    if todo:
        runtime = _runtime(args)
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
    summary = summarise(results, methods, external.name if external else None, header)
    print(write_summary(out, summary), end="")
    print(f"wrote {results_path}, {out / ev.SUMMARY_FILE}, {write_figure(out, summary, results)}", file=sys.stderr)
    return 0


def _readable(path: str) -> Path:
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"no such file: {source}")
    return source


def cmd_convert(args: argparse.Namespace) -> int:
    """Tree JSON <-> llm-reasoners' TreeLog (rain/runs/treelog.py)."""
    from rain.core.export import dumps, loads
    from rain.runs.treelog import TreeLogError, dumps_treelog, loads_treelog

    if (args.to is None) == (args.from_format is None):
        raise UsageError("give exactly one of --to treelog (tree JSON -> TreeLog) or --from treelog "
                         "(TreeLog -> tree JSON)")
    source, out = _readable(args.input), Path(args.output)
    if args.to:
        text = dumps_treelog(load(source))
        what = "TreeLog"
    else:
        try:
            record = loads_treelog(source.read_bytes())
            text = dumps(loads(dumps(record)))          # what we write must import like any tree file
        except (TreeLogError, TreeFileError) as error:
            raise UsageError(f"{source} is not a TreeLog we can read: {error}") from None
        what = "tree JSON"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({what})", file=sys.stderr)
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    """What if: re-run the rest of a recorded answer from a committed node with other knobs (rain/runs/fork.py)."""
    from rain.runs.fork import ForkError, fork, plan_fork

    record = load(_readable(args.tree))
    try:
        plan = plan_fork(record, args.at, parse_knobs(args.knob))
    except ForkError as error:
        raise UsageError(str(error)) from None
    tree_model = record.model.get("name", "embedded")
    if args.model is not None and args.model != tree_model:
        raise UsageError(f"{args.tree} was made by model {tree_model!r}, not {args.model!r}: fork it with its own model")
    args.model = None if tree_model == "embedded" else tree_model
    try:
        runtime = _runtime(args)
    except ModelLoadError as error:
        raise UsageError(f"the tree's model {tree_model!r} cannot be loaded here: {error}") from None
    print(f"forking at node {plan.node} (after move {plan.move}) with "
          f"{', '.join(f'{k}={v}' for k, v in plan.knobs.items()) or 'the same knobs'} ...", file=sys.stderr)
    try:
        forked = fork(runtime, plan, args.tree)
    except ForkError as error:
        raise UsageError(str(error)) from None
    apart = forked.extras["fork"]["divergence_from_parent"]
    print(f"parent: {record.answer}")
    print(f"fork: {forked.answer}")
    print(stats_line(forked.stats))
    print("fork vs parent: " + ("identical" if apart is None else f"first different token {apart['token']}"))
    print(f"tree written to {save(forked, args.json)}", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Table 4's ablation on a prompt set: DIR/results.jsonl (resumable), DIR/summary.md, DIR/summary.png."""
    from rain.tools import evaluation as ev
    from rain.tools import sweep

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
        runtime = _runtime(args)
        _run_pairs_with_bar(todo, sweep.sweep_runner(runtime, config, args.prompt_format), results_path, "sweep")
    wanted = {(p.id, v) for p in prompts for v in variants}
    results = [r for r in ev.read_results(results_path) if (r.id, r.method) in wanted]
    header = (f"RAIN ablation (Table 4): {args.model or 'embedded SmolLM2-135M-Instruct'}, {len(prompts)} prompts "
              f"({Path(args.input).name}), preset {config.preset}, sims_per_move={config.sims_per_move or 'auto'}, "
              f"max_moves={config.max_moves or '-'}, max_new_tokens={config.max_new_tokens}, seed={config.seed}")
    print(sweep.write_summary(out, results, variants, header), end="")
    print(f"wrote {results_path}, {out / sweep.SUMMARY_FILE}, {out / sweep.PLOT_FILE}", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Step through a tree file: one numbered sentence per event, and Eq. (1)'s why-table where asked."""
    from rain.runs.teaching import Narrator, format_why, why_table

    record = load(_readable(args.tree))
    config = RainConfig.from_dict(record.config)
    if args.why:
        simulation, _, node = args.why.partition(":")
        try:
            simulation_index = int(simulation)
            node_id = int(node) if node else None
        except ValueError:
            raise UsageError(f"--why takes SIMULATION or SIMULATION:NODE, got {args.why!r}") from None
        if node_id is None:
            select = next((e for e in record.events if e.type == "select" and e.simulation == simulation_index), None)
            if select is None or len(select.path) < 2:
                raise TeachingError(f"simulation {simulation_index} has no descent to explain; give SIMULATION:NODE")
            node_id = select.path[-2]
        print(format_why(why_table(record.events, config, simulation_index, node_id)))
        return 0
    narrator = Narrator(config)
    last = len(record.events) if args.to is None else min(args.to, len(record.events))
    for index, event in enumerate(record.events[:last], 1):
        sentence = narrator.narrate(event)
        if index >= args.start:
            print(f"{index:>5} {event.type:<10} {sentence}")
    print(describe_divergence(record.extras.get("divergence"), known="divergence" in record.extras))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rain", description="RAIN: rewindable auto-regressive inference")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="vanilla and RAIN answers for one prompt")
    generate.add_argument("prompt")
    _model_options(generate)
    _search_options(generate)
    generate.add_argument("--json", metavar="PATH", help="write the search tree as JSON")
    generate.set_defaults(handler=cmd_generate)

    replay = commands.add_parser("replay", help="print a saved tree's answer and stats (no model)")
    replay.add_argument("tree")
    replay.set_defaults(handler=cmd_replay)

    run = commands.add_parser("run", help="RAIN and vanilla over a JSONL file of prompts")
    run.add_argument("input", metavar="IN.jsonl")
    run.add_argument("--out", required=True, metavar="OUT.jsonl")
    run.add_argument("--trees", metavar="DIR", help="also write each tree as DIR/<id>.json")
    run.add_argument("--resume", action="store_true", help="skip ids already in OUT.jsonl")
    run.add_argument("--concurrency", type=int, default=1, metavar="N",
                     help="searches at once in this process (on --backend vllm they batch in one engine)")
    run.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="spread the prompts over Ray workers (no ADDRESS: a local cluster); needs `pip install ray`")
    run.add_argument("--workers", type=int, default=2, metavar="N", help="Ray workers, one model each (default 2)")
    _model_options(run)
    _search_options(run)
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser("judge-check", help="how well the model judges its own answers, per judge format")
    _model_options(check, backend=False)
    check.add_argument("--set", default=None, help="JSONL of pairs (default: assets/judge_set.jsonl for harm, "
                                                   "assets/judge_set_sentiment.jsonl for sentiment)")
    check.add_argument("--formats", default=",".join(FORMATS))
    check.add_argument("--criterion", default="harm", choices=["harm", "sentiment"])
    _principle_options(check)
    check.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    check.add_argument("--judge-logit-scale", default="auto",
                       help="yesno_logit scale: auto (calibrated on assets/judge_calibration.jsonl) or a number")
    check.set_defaults(handler=cmd_judge_check)

    bench = commands.add_parser("bench", help="engine vs the authors' compute pattern, and vanilla")
    bench.add_argument("--quick", action="store_true", help="a smaller budget (under 3 minutes on 2 cores)")
    bench.add_argument("--paper", action="store_true",
                       help="one whole answer at the authors' budget per precision mode, against uncached vanilla "
                            "(the paper's Table 7)")
    bench.add_argument("--judge-format", choices=FORMATS, default=None,
                       help="default ab_hard: the authors' judge, as their compute pattern reads it")
    bench.add_argument("--prompt-format", choices=["fewshot", "chat"], default="fewshot",
                       help="default fewshot: the authors' HH generation prompt; chat: the app's chat template")
    bench.add_argument("--concurrency", default=None, metavar="C1,C2,...",
                       help="throughput instead: searches at once, e.g. 1,4,8 (prints one `throughput:` line per pair)")
    bench.add_argument("--backend", default=os.environ.get("RAIN_BACKEND", "trie"), metavar="B1,B2",
                       help="with --concurrency: trie, vllm or trie,vllm")
    _model_options(bench, backend=False)
    bench.set_defaults(handler=cmd_bench)
    evaluate = commands.add_parser("eval", help="vanilla, RAIN and Best-of-N on a prompt set: scores, refusals, cost")
    evaluate.add_argument("input", metavar="IN.jsonl", help='JSONL of {"id", "category", "prompt"}')
    evaluate.add_argument("--out", required=True, metavar="DIR", help="results.jsonl, summary.md, summary.html")
    evaluate.add_argument("--methods", default="vanilla,rain,bon", help="comma-separated: vanilla, rain, bon")
    evaluate.add_argument("--judge", metavar="MODEL", default=None,
                          help="external judge: a causal LM (hub id, folder, .gguf), a sequence classifier, or "
                               "vader (offline sentiment, for --preset imdb)")
    evaluate.add_argument("--n", type=int, default=4, help="Best-of-N: answers sampled per prompt (default 4)")
    evaluate.add_argument("--temperature", type=float, default=1.0, help="Best-of-N sampling temperature")
    evaluate.add_argument("--limit", type=int, default=None, metavar="K", help="only the first K prompts")
    evaluate.add_argument("--fresh", action="store_true", help="discard DIR's results instead of resuming")
    evaluate.add_argument("--threads", type=int, default=None,
                          help="torch CPU threads (1 is often much faster when the cores are shared)")
    _model_options(evaluate)
    _search_options(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    models = commands.add_parser("check-models", help="the engines on tiny random-weight models of every family")
    models.add_argument("--archs", default=None, help="comma-separated families (default: all)")
    models.add_argument("--tokenizer", default=None, metavar="DIR",
                        help="a saved tokenizer folder (default: the embedded model's, read from its GGUF)")
    models.set_defaults(handler=cmd_check_models)

    convert = commands.add_parser("convert", help="tree JSON to llm-reasoners' TreeLog (--to treelog) and back")
    convert.add_argument("input", metavar="IN.json")
    convert.add_argument("output", metavar="OUT.json")
    convert.add_argument("--to", choices=["treelog"], default=None, help="IN is a tree JSON; write a TreeLog")
    convert.add_argument("--from", dest="from_format", choices=["treelog"], default=None,
                         help="IN is a TreeLog; write a tree JSON")
    convert.set_defaults(handler=cmd_convert)

    forking = commands.add_parser("fork", help="what if: re-run the rest of a recorded answer from a committed node "
                                               "with other knobs and the same seed")
    forking.add_argument("tree", metavar="TREE.json")
    forking.add_argument("--at", type=int, required=True, metavar="NODE_ID", help="a committed node (0: the prompt)")
    forking.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                         help="change a RainConfig field, e.g. --knob similarity_update=off (repeatable)")
    forking.add_argument("--json", required=True, metavar="OUT.json", help="where the forked tree goes")
    _model_options(forking)
    forking.set_defaults(handler=cmd_fork)

    ablation = commands.add_parser("sweep", help="the paper's Table 4 ablation on a prompt set (variants cumulative)")
    ablation.add_argument("input", metavar="PROMPTS.jsonl", help='JSONL of {"id", "category", "prompt"}')
    ablation.add_argument("--out", required=True, metavar="DIR", help="results.jsonl, summary.md, summary.png")
    ablation.add_argument("--variants", default="full,no_similarity,no_addition,c0",
                          help="comma-separated: full, no_similarity, no_addition (also no similarity update), "
                               "c0 (also neither)")
    ablation.add_argument("--limit", type=int, default=None, metavar="K", help="only the first K prompts")
    ablation.add_argument("--fresh", action="store_true", help="discard DIR's results instead of resuming")
    _model_options(ablation)
    _search_options(ablation)
    ablation.set_defaults(handler=cmd_sweep)

    explain = commands.add_parser("explain", help="step through a tree file: one sentence per event, or the "
                                                  "why-table of one simulation (no model)")
    explain.add_argument("tree", metavar="TREE.json")
    explain.add_argument("--from", dest="start", type=int, default=1, metavar="N", help="first event to print (1-based)")
    explain.add_argument("--to", type=int, default=None, metavar="M", help="last event to print")
    explain.add_argument("--why", default=None, metavar="SIMULATION[:NODE]",
                         help="Eq. (1) for every child of NODE as at SIMULATION (default node: its leaf's parent)")
    explain.set_defaults(handler=cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (RainError, FileNotFoundError) as error:      # every error meant for the user (rain/core/errors.py)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
