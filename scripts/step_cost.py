"""What one vLLM engine step costs on this machine: seconds = a + b * tokens, fitted by least squares.

    HF_HUB_OFFLINE=1 .venv-vllm/bin/python scripts/step_cost.py [--batches 1,4,16,64] [--prefill 64,256]

One engine on the embedded model (as `--backend vllm` builds it). Each point submits a batch at once and times
it to the end, reading the steps and their tokens from vLLM's own iteration statistics (`VllmEngine.steps`):
- decode points: B requests with distinct 16-token prompts, 32 generated tokens each (about B tokens per step);
- prefill points: 8 requests of P distinct prompt tokens and one generated token (about 8P tokens per step).
Each point gives (tokens per step, seconds per step); the fit over all of them is the step cost docs/scaling.md
uses. The engine is busy for the whole of a point (everything submitted before anything is awaited), so wall time
over steps is the step's cost; the first and last steps of a batch are part of it, as in a search.
Then the host's share: 8 bench searches at once on the same engine (`rain.tools.throughput`), and the CPU time
this process spent per simulation (every search's Python, tokenizer and MiniLM, and vLLM's output handling: the
work no accelerator takes over). Prints one `point:` line per point, `step_cost: a_ms=A b_ms_per_token=B` and
`host: cpu_s_per_simulation=H`.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rain.backends.vllm_runtime import VllmEngine, VllmRuntime, model_folder  # noqa: E402  (the checkout)
from rain.core.config import preset  # noqa: E402
from rain.tools.throughput import MOVES, SIMS_PER_MOVE, throughput  # noqa: E402

DECODE_PROMPT, DECODE_TOKENS, PREFILL_ROWS = 16, 32, 8


def point(engine: VllmEngine, rows: int, prompt: int, generated: int, offset: int) -> tuple[float, float]:
    """(tokens per step, seconds per step) of `rows` requests submitted at once; distinct prompts (no cache hits)."""
    generator = torch.Generator().manual_seed(offset)
    prompts = [torch.randint(1000, 40000, (prompt,), generator=generator).tolist() for _ in range(rows)]
    params = engine.params(max_tokens=generated, min_tokens=generated, temperature=0.0, ignore_eos=True)
    steps_before, tokens_before = engine.steps()
    started = time.perf_counter()
    for future in [engine.submit(tokens, params) for tokens in prompts]:
        future.result()
    seconds = time.perf_counter() - started
    steps, tokens = engine.steps()
    steps -= steps_before
    return (tokens - tokens_before) / steps, seconds / steps


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of seconds = a + b * tokens, least squares."""
    x = torch.tensor([[1.0, tokens] for tokens, _ in points], dtype=torch.float64)
    y = torch.tensor([seconds for _, seconds in points], dtype=torch.float64)
    a, b = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1).tolist()
    return a, b


def host_seconds_per_simulation(engine: VllmEngine, concurrency: int = 8) -> float:
    """CPU seconds this process spends per simulation with `concurrency` bench searches on `engine`."""
    runtime = VllmRuntime(None, server=engine)
    config = preset("hh", sims_per_move=SIMS_PER_MOVE, max_moves=MOVES, max_new_tokens=64)
    throughput(runtime, config, 1, "fewshot", rounds=1)                  # warm-up: the judge scale, first calls
    before = resource.getrusage(resource.RUSAGE_SELF)
    level = throughput(runtime, config, concurrency, "fewshot", rounds=1)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return cpu / level.simulations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,4,16,64", help="decode batch sizes")
    parser.add_argument("--prefill", default="64,256", help="prompt lengths of the 8-row prefill points")
    args = parser.parse_args()
    engine = VllmEngine(model_folder(None), max_model_len=2048)
    point(engine, 2, DECODE_PROMPT, 4, offset=0)                     # warm-up: first-call costs are not steps
    points = []
    for index, rows in enumerate(int(b) for b in args.batches.split(",")):
        tokens, seconds = point(engine, rows, DECODE_PROMPT, DECODE_TOKENS, offset=100 + index)
        print(f"point: decode rows={rows} tokens_per_step={tokens:.1f} ms_per_step={seconds * 1000:.1f}", flush=True)
        points.append((tokens, seconds))
    for index, length in enumerate(int(p) for p in args.prefill.split(",")):
        tokens, seconds = point(engine, PREFILL_ROWS, length, 1, offset=200 + index)
        print(f"point: prefill rows={PREFILL_ROWS} prompt={length} tokens_per_step={tokens:.1f} "
              f"ms_per_step={seconds * 1000:.1f}", flush=True)
        points.append((tokens, seconds))
    a, b = fit(points)
    print(f"step_cost: a_ms={a * 1000:.2f} b_ms_per_token={b * 1000:.3f}", flush=True)
    print(f"host: cpu_s_per_simulation={host_seconds_per_simulation(engine):.3f}", flush=True)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
