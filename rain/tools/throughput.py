"""`python -m rain bench --concurrency 1,4,8 --backend trie,vllm`: searches per second when many run at once.

For every (backend, concurrency C) pair, C worker threads run 2C searches between them (the bench prompts in turn,
seeds 0..2C-1, the same fixed budget: S simulations per move, M moves), each worker taking the next search as soon
as its last one ends, as `run --concurrency` and the app's visitors keep a shared engine busy. The wall time until
the last one ends gives `throughput: backend=B concurrency=C simulations_per_s=X answers_per_min=Y
steps_per_simulation=S tokens_per_step=T`: S engine steps per simulation and T tokens per step say how many
searches each step advances (docs/scaling.md turns them into a throughput model). vLLM counts its steps itself
(`VllmEngine.steps`, one engine for all searches); the trie engine's steps are its forward calls, one engine per
search, so they never share. Why two rounds: a step advances every search with a request in flight, so C searches
started together take about as many steps as the longest of them alone (measured: 8 searches alone took 39 to 88
steps, 483 in all; all 8 at once, 96), and the level's last steps serve that one search; a second round keeps
the pool full for most of the level. The C = 1 run of each backend also gives its single-search latency
(`single: backend=B seconds_per_simulation=X`). All pairs run in one process, one after the other, so their
ratios share the machine's state as far as they can.
"""
from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rain.core.config import RainConfig, preset
from rain.core.errors import UsageError
from rain.runs.runtimes import BACKENDS, load_runtime
from rain.tools.bench import PROMPTS

TRIE_TRANSFORMERS = (5, 20)           # .venv-vllm pins an older one (< 5.20); requirements.txt 5.24 takes the mask
SIMS_PER_MOVE, MOVES = 3, 2          # a short fixed budget: every search does the same number of simulations
ROUNDS = 2                           # searches per worker thread in a level (the module docstring says why)


def parse_list(text: str, name: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items or (allowed and any(item not in allowed for item in items)):
        raise ValueError(f"--{name} must be a comma-separated list of {', '.join(allowed or ('positive integers',))}")
    return items


@dataclass(frozen=True)
class Level:
    """What `concurrency` searches run at once did: their simulations, the engine steps and the tokens those
    steps computed (prompt tokens not served from a cache, plus generated ones), and the wall time."""

    concurrency: int
    answers: int
    simulations: int
    steps: int
    tokens: int
    seconds: float

    def line(self, backend: str) -> str:
        return (f"throughput: backend={backend} concurrency={self.concurrency} "
                f"simulations_per_s={self.simulations / self.seconds:.3f} "
                f"answers_per_min={self.answers / self.seconds * 60:.3f} "
                f"steps_per_simulation={self.steps / max(self.simulations, 1):.3f} "
                f"tokens_per_step={self.tokens / max(self.steps, 1):.2f}")


def engine_steps(runtime, searches) -> tuple[int, int]:
    """(steps, tokens) so far: one shared engine's own count where the runtime has one (vLLM), else the
    searches' forward calls and forwarded tokens (the trie engine: every search forwards on its own)."""
    shared = getattr(getattr(runtime, "server", None), "steps", None)
    if shared is not None:
        return shared()
    counts = [search.compute_stats() for search in searches]
    return sum(c.forward_calls for c in counts), sum(c.forwarded_tokens for c in counts)


def throughput(runtime, config: RainConfig, concurrency: int, prompt_format: str, rounds: int = ROUNDS) -> Level:
    """`rounds` x `concurrency` searches, `concurrency` at a time, measured."""
    def one(index: int):
        seeded = RainConfig.from_dict({**config.to_dict(), "seed": index})
        conversation = runtime.conversation(PROMPTS[index % len(PROMPTS)], seeded, prompt_format)
        search = runtime.search(conversation, seeded)
        for _ in search.run():
            pass
        return search

    steps_before, tokens_before = engine_steps(runtime, [])
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        searches = list(pool.map(one, range(concurrency * rounds)))
    seconds = time.perf_counter() - started
    steps, tokens = engine_steps(runtime, searches)
    return Level(concurrency, len(searches), sum(search.simulations for search in searches), steps - steps_before,
                 tokens - tokens_before, seconds)


def build_runtime(backend: str, model: str | None):
    return load_runtime(model, backend)


def trie_runs_here() -> bool:
    """The trie engine is checked on requirements.txt's transformers; .venv-vllm pins an older one (< 5.20) whose
    attention rejects the engine's tree mask, so there the trie part runs in the main interpreter instead. (The
    version is compared, not read from requirements.txt: an installed package has no requirements.txt.)"""
    import transformers

    release = tuple(int(part) for part in transformers.__version__.split(".")[:2])
    return sys.prefix == sys.base_prefix or release >= TRIE_TRANSFORMERS


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
        throughput(runtime, config, 1, args.prompt_format, rounds=1)  # warm-up: first-call costs are not throughput
        for level in levels if 1 in levels else [1, *levels]:
            measured = throughput(runtime, config, level, args.prompt_format)
            print(measured.line(backend), flush=True)
            if level == 1:
                print(f"single: backend={backend} "
                      f"seconds_per_simulation={measured.seconds / max(measured.simulations, 1):.4f}", flush=True)
        if hasattr(runtime, "close"):
            runtime.close()
    return 0
