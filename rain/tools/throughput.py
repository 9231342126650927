"""`python -m rain bench --concurrency 1,4,8 --backend trie,vllm`: searches per second when many run at once.

For every (backend, concurrency C) pair, C searches start together on C threads (the bench prompts in turn,
seeds 0..C-1, the same fixed budget: S simulations per move, M moves) and the wall time until the last one ends
gives `throughput: backend=B concurrency=C simulations_per_s=X answers_per_min=Y`. The C = 1 run of each backend
also gives its single-search latency (`single: backend=B seconds_per_simulation=X`). All pairs run in one
process, one after the other, so their ratios share the machine's state as far as they can.
"""
from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rain.core.config import RainConfig, preset
from rain.core.errors import UsageError
from rain.runs.runtimes import BACKENDS, load_runtime
from rain.tools.bench import PROMPTS

SIMS_PER_MOVE, MOVES = 3, 2          # a short fixed budget: every search does the same number of simulations


def parse_list(text: str, name: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or (allowed and any(item not in allowed for item in items)):
        raise ValueError(f"--{name} must be a comma-separated list of {', '.join(allowed or ('positive integers',))}")
    return items


def throughput(runtime, config: RainConfig, concurrency: int, prompt_format: str) -> tuple[int, int, float]:
    """(simulations, answers, wall seconds) of `concurrency` searches run at once."""
    def one(index: int) -> int:
        seeded = RainConfig.from_dict({**config.to_dict(), "seed": index})
        conversation = runtime.conversation(PROMPTS[index % len(PROMPTS)], seeded, prompt_format)
        search = runtime.search(conversation, seeded)
        for _ in search.run():
            pass
        return search.simulations

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        simulations = sum(pool.map(one, range(concurrency)))
    return simulations, concurrency, time.perf_counter() - started


def build_runtime(backend: str, model: str | None):
    return load_runtime(model, backend)


def trie_runs_here() -> bool:
    """The trie engine is checked on requirements.txt's transformers; .venv-vllm pins an older one (< 5.20) whose
    attention rejects the engine's tree mask, so there the trie part runs in the main interpreter instead."""
    import transformers

    pins = (Path(__file__).resolve().parents[2] / "requirements.txt").read_text()
    return sys.prefix == sys.base_prefix or f"transformers=={transformers.__version__}" in pins


def trie_elsewhere(args) -> None:
    """The trie pairs in the main environment's python (the venv's base interpreter), printed as they come."""
    command = [sys._base_executable, "-m", "rain", "bench", "--concurrency", args.concurrency, "--backend", "trie",
               "--prompt-format", args.prompt_format] + (["--model", args.model] if args.model else []) + \
              (["--judge-format", args.judge_format] if args.judge_format else [])
    print(f"trie runs in the main environment: {' '.join(command)}", file=sys.stderr)
    subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[2])


def main(args) -> int:
    try:
        backends = parse_list(args.backend, "backend", BACKENDS)
        levels = [int(c) for c in parse_list(args.concurrency, "concurrency") if c.isdigit() and int(c) >= 1]
        if len(levels) != len(parse_list(args.concurrency, "concurrency")):
            raise ValueError("--concurrency must be a comma-separated list of whole numbers >= 1, e.g. 1,4,8")
    except ValueError as error:
        raise UsageError(str(error)) from None
    overrides = {"sims_per_move": SIMS_PER_MOVE, "max_moves": MOVES, "max_new_tokens": 64}
    if args.judge_format:
        overrides["judge_format"] = args.judge_format
    config = preset("hh", **overrides)
    print(f"throughput bench: {SIMS_PER_MOVE} simulations per move, {MOVES} moves per search, "
          f"prompt format {args.prompt_format}", file=sys.stderr)
    for backend in backends:
        if backend == "trie" and not trie_runs_here():
            trie_elsewhere(args)
            continue
        print(f"loading {backend} ...", file=sys.stderr)
        runtime = build_runtime(backend, args.model)
        throughput(runtime, config, 1, args.prompt_format)           # warm-up: first-call costs are not throughput
        for level in levels if 1 in levels else [1, *levels]:
            simulations, answers, seconds = throughput(runtime, config, level, args.prompt_format)
            print(f"throughput: backend={backend} concurrency={level} simulations_per_s={simulations / seconds:.3f} "
                  f"answers_per_min={answers / seconds * 60:.3f}", flush=True)
            if level == 1:
                print(f"single: backend={backend} seconds_per_simulation={seconds / max(simulations, 1):.4f}",
                      flush=True)
        if hasattr(runtime, "close"):
            runtime.close()
    return 0
