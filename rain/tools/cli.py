"""`python -m rain ...`: generate, replay, run (datasets), judge-check, bench, eval, check-models, convert, fork,
sweep, explain.

This module is the parser and `main`; the handlers are rain/tools/run_commands.py (the search and its trees) and
rain/tools/measure_commands.py (the measurements), the shared flags rain/tools/options.py. Bad input gets one
line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rain.core.errors import RainError
from rain.core.judge import FORMATS
from rain.runs.runtimes import BACKEND_ENV
from rain.tools import measure_commands, run_commands
from rain.tools.options import evaluator_option, knob_option, model_options, principle_options, search_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rain", description="RAIN: rewindable auto-regressive inference")
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser("generate", help="vanilla and RAIN answers for one prompt")
    generate.add_argument("prompt")
    model_options(generate)
    search_options(generate)
    generate.add_argument("--json", metavar="PATH", help="write the search tree as JSON")
    generate.set_defaults(handler=run_commands.cmd_generate)

    replay = commands.add_parser("replay", help="print a saved tree's answer and stats (no model)")
    replay.add_argument("tree")
    replay.set_defaults(handler=run_commands.cmd_replay)

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
    model_options(run)
    search_options(run)
    run.set_defaults(handler=run_commands.cmd_run)

    check = commands.add_parser("judge-check", help="how well the model judges its own answers, per judge format")
    model_options(check, backend=False)
    check.add_argument("--set", default=None, help="JSONL of pairs (default: rain/data/judge_set.jsonl for harm, "
                                                   "rain/data/judge_set_sentiment.jsonl for sentiment)")
    check.add_argument("--formats", default=",".join(FORMATS))
    check.add_argument("--criterion", default="harm", choices=["harm", "sentiment"])
    principle_options(check)
    check.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    check.add_argument("--judge-logit-scale", default="auto",
                       help="yesno_logit scale: auto (calibrated on rain/data/judge_calibration.jsonl) or a number")
    check.set_defaults(handler=measure_commands.cmd_judge_check)

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
    bench.add_argument("--backend", default=os.environ.get(BACKEND_ENV, "trie"), metavar="B1,B2",
                       help="with --concurrency: trie, vllm or trie,vllm")
    model_options(bench, backend=False)
    knob_option(bench)
    bench.set_defaults(handler=measure_commands.cmd_bench)
    evaluate = commands.add_parser("eval", help="vanilla, RAIN and Best-of-N on a prompt set: scores, refusals, cost")
    evaluate.add_argument("input", metavar="IN.jsonl", help='JSONL of {"id", "category", "prompt"}')
    evaluate.add_argument("--out", required=True, metavar="DIR", help="results.jsonl, summary.md, summary.html")
    evaluate.add_argument("--methods", default="vanilla,rain,bon",
                          help="comma-separated: vanilla, rain, bon; rain@SPEC and bon@SPEC search or pick against "
                               "evaluator SPEC (e.g. rain@vader)")
    evaluate.add_argument("--judge", metavar="MODEL[,MODEL]", default=None,
                          help="external judge(s), comma-separated: a causal LM (hub id, folder, .gguf), a sequence "
                               "classifier, vader or afinn (offline sentiment, for --preset imdb)")
    evaluate.add_argument("--n", type=int, default=4, help="Best-of-N: answers sampled per prompt (default 4)")
    evaluate.add_argument("--temperature", type=float, default=1.0, help="Best-of-N sampling temperature")
    evaluate.add_argument("--limit", type=int, default=None, metavar="K", help="only the first K prompts")
    evaluate.add_argument("--fresh", action="store_true", help="discard DIR's results instead of resuming")
    evaluate.add_argument("--threads", type=int, default=None,
                          help="torch CPU threads (1 is often much faster when the cores are shared)")
    model_options(evaluate)
    search_options(evaluate)
    evaluate.set_defaults(handler=measure_commands.cmd_eval)

    models = commands.add_parser("check-models", help="the engines on tiny random-weight models of every family")
    models.add_argument("--archs", default=None, help="comma-separated families (default: all)")
    models.add_argument("--tokenizer", default=None, metavar="DIR",
                        help="a saved tokenizer folder (default: the embedded model's, read from its GGUF)")
    models.set_defaults(handler=measure_commands.cmd_check_models)

    convert = commands.add_parser("convert", help="tree JSON to llm-reasoners' TreeLog (--to treelog) and back")
    convert.add_argument("input", metavar="IN.json")
    convert.add_argument("output", metavar="OUT.json")
    convert.add_argument("--to", choices=["treelog"], default=None, help="IN is a tree JSON; write a TreeLog")
    convert.add_argument("--from", dest="from_format", choices=["treelog"], default=None,
                         help="IN is a TreeLog; write a tree JSON")
    convert.set_defaults(handler=run_commands.cmd_convert)

    forking = commands.add_parser("fork", help="what if: re-run the rest of a recorded answer from a committed node "
                                               "with other knobs and the same seed")
    forking.add_argument("tree", metavar="TREE.json")
    forking.add_argument("--at", type=int, required=True, metavar="NODE_ID", help="a committed node (0: the prompt)")
    forking.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                         help="change a RainConfig field, e.g. --knob similarity_update=off (repeatable)")
    forking.add_argument("--json", required=True, metavar="OUT.json", help="where the forked tree goes")
    evaluator_option(forking)
    model_options(forking)
    forking.set_defaults(handler=run_commands.cmd_fork)

    ablation = commands.add_parser("sweep", help="the paper's Table 4 ablation on a prompt set (variants cumulative)")
    ablation.add_argument("input", metavar="PROMPTS.jsonl", help='JSONL of {"id", "category", "prompt"}')
    ablation.add_argument("--out", required=True, metavar="DIR", help="results.jsonl, summary.md, summary.png")
    ablation.add_argument("--variants", default="full,no_similarity,no_addition,c0",
                          help="comma-separated: full, no_similarity, no_addition (also no similarity update), "
                               "c0 (also neither)")
    ablation.add_argument("--limit", type=int, default=None, metavar="K", help="only the first K prompts")
    ablation.add_argument("--fresh", action="store_true", help="discard DIR's results instead of resuming")
    model_options(ablation)
    search_options(ablation)
    ablation.set_defaults(handler=measure_commands.cmd_sweep)

    explain = commands.add_parser("explain", help="step through a tree file: one sentence per event, or the "
                                                  "why-table of one simulation (no model)")
    explain.add_argument("tree", metavar="TREE.json")
    explain.add_argument("--from", dest="start", type=int, default=1, metavar="N", help="first event to print (1-based)")
    explain.add_argument("--to", type=int, default=None, metavar="M", help="last event to print")
    explain.add_argument("--why", default=None, metavar="SIMULATION[:NODE]",
                         help="Eq. (1) for every child of NODE as at SIMULATION (default node: its leaf's parent)")
    explain.set_defaults(handler=run_commands.cmd_explain)
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
