"""The flags that several commands share, and what they become: a config, a runtime, the `stats:` line."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rain.core.config import RainConfig, parse_knobs, preset
from rain.core.errors import UsageError
from rain.core.judge import FORMATS
from rain.backends.evaluators import load_evaluator
from rain.runs.runtimes import BACKEND_ENV, BACKENDS, load_runtime
from rain.runs.session import RunStats


def model_options(parser: argparse.ArgumentParser, backend: bool = True) -> None:
    if backend:
        parser.add_argument("--backend", choices=BACKENDS, default=os.environ.get(BACKEND_ENV, "trie"),
                            help="trie: our instrumented engine; vllm: a shared vLLM engine (needs `make vllm`, "
                                 "run with .venv-vllm/bin/python); default $RAIN_BACKEND or trie")
    parser.add_argument("--model", default=None, help="hub id, local folder or FILE.gguf (default: embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when present, else cpu")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16", "int8"],
                        help="generation precision (int8: int8 weights per channel, float32 activations); auto: "
                             "bfloat16 on GPUs, on a CPU the mode measured fastest there (never slower than float32)")
    parser.add_argument("--judge-dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="self-judge precision; auto: float32 on CPU (a second copy of a small model's "
                             "weights), the generation's on GPU")
    parser.add_argument("--trust-remote-code", action="store_true", help="run code shipped with a hub model (off by default)")


def search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=["hh", "adv", "truth", "imdb"], default="hh")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="answer length cap (default 128)")
    parser.add_argument("--sims-per-move", type=int, default=None, help="exactly N simulations per move, early stop off")
    parser.add_argument("--max-moves", type=int, default=None, help="stop after N committed token sets")
    parser.add_argument("--judge-format", choices=FORMATS, default=None)
    parser.add_argument("--prompt-format", choices=["auto", "chat", "fewshot"], default="auto")
    principle_options(parser)
    evaluator_option(parser)
    knob_option(parser)


def knob_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                        help="set any RainConfig field, e.g. --knob c_puct=1.5 --knob token_set_lengths=1,2,4 "
                             "(repeatable; applied after the flags above)")


def principle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--principle", default=None, metavar="QUESTION",
                        help='your own yes/no question for the judge, e.g. "Is the response polite?" (replaces the '
                             "preset's criterion in both option orders; one line, at most 300 characters)")
    parser.add_argument("--good", choices=["yes", "no"], default=None,
                        help="which answer to --principle is good (default yes)")


def evaluator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--evaluator", default=None, metavar="SPEC",
                        help="the judge the search asks: self (RAIN, default), vader, model:ID_OR_DIR or "
                             "classifier:ID_OR_DIR; anything but self is the same search with another judge")


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
    for name in ("max_new_tokens", "sims_per_move", "max_moves", "judge_format", "evaluator"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    overrides.update(principle_overrides(args))
    overrides.update(parse_knobs(getattr(args, "knob", None) or []))
    return preset(args.preset, **overrides)


def runtime_for(args: argparse.Namespace, *configs: RainConfig):
    """The runtime the command's flags ask for (rain/runs/runtimes.py); commands call it as
    `options.runtime_for(args)`, so a test can hand them one. The evaluators `configs` name are loaded first, so a
    bad one is refused before the generation model loads."""
    evaluators = evaluators_for(args, configs)
    print(f"loading {args.model or 'the embedded model (SmolLM2-135M-Instruct)'} ...", file=sys.stderr)
    if getattr(args, "backend", "trie") == "vllm":
        runtime = load_runtime(args.model, "vllm")
    else:
        runtime = load_runtime(args.model, "trie", device=args.device, dtype=args.dtype,
                               trust_remote_code=args.trust_remote_code, judge_dtype=getattr(args, "judge_dtype", "auto"))
        print(runtime.precision.describe(), file=sys.stderr)
    for evaluator in evaluators:
        runtime.use_evaluator(evaluator)
    return runtime


def evaluators_for(args: argparse.Namespace, configs) -> list:
    """Each evaluator other than self that `configs` name, loaded and checked against its config's judge."""
    loaded: dict[str, Any] = {}
    for config in configs:
        if config.evaluator == "self" or config.evaluator in loaded:
            continue
        loaded[config.evaluator] = load_evaluator(config.evaluator, config, args.device,
                                                  getattr(args, "judge_dtype", "auto"), args.trust_remote_code)
        print(f"evaluator {config.evaluator}: loaded", file=sys.stderr)     # after: a bad spec prints one line
    return list(loaded.values())


def stats_line(stats: RunStats) -> str:
    """The one `stats:` line: these keys of the record's stats, in this order, those it has."""
    flat = stats.to_dict()
    keys = ("simulations", "moves", "answer_tokens", "nodes", "seconds", "seconds_per_simulation",
            "forward_calls", "forwarded_tokens", "recompute_ratio", "judge_prefix_hit_rate",
            "vanilla_seconds", "rain_over_vanilla", "engine", "judge_logit_scale", "judge_scale_source",
            "divergence_token", "divergence_move")
    return "stats: " + " ".join(f"{k}={flat[k]}" for k in keys if k in flat)


def readable(path: str) -> Path:
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"no such file: {source}")
    return source
