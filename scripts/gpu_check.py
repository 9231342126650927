"""The GPU path in one command (at most ~5 minutes on one GPU): engine exactness in half precision, a search, bench.

    python scripts/gpu_check.py                      # the embedded model on cuda
    python scripts/gpu_check.py --device cpu --model DIR --sims 1 --moves 1   # what the test runs on CPU

1. The trie engine against plain full forwards in bfloat16 and float16 (branching states, every needed logit:
   rain.tools.model_check.engine_error), within the engines' half-precision tolerance.
2. A short search (yes/no judge, auto scale) in the device's default dtype: seconds per simulation, and host
   synchronisations per simulation. A synchronisation is counted at every point where a tensor on the device is
   read by the host (`item`, `tolist`, `numpy`, `cpu`, `bool`/`int`/`float`, `.to("cpu")`); on CUDA these are the
   calls that block until the GPU is done (torch.cuda.set_sync_debug_mode would flag the same calls).
3. `python -m rain bench --quick` on the same device and model; its speedup_per_sim is reported.
The last line: `gpu: device=... engine_ok=... s_per_sim=... syncs_per_sim=... speedup_per_sim=...`.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from rain.core.config import preset
from rain.backends.engine import HALF_TOLERANCE, TrieEngine
from rain.tools.model_check import branching_calls, engine_error
from rain.backends.models import load_causal_lm

HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__")


class SyncCounter:
    """Counts host reads of tensors on `device` while active (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device, self.count, self._saved = device, 0, {}

    def _wrap(self, name: str):
        original = self._saved[name]

        def counted(tensor, *args, **kwargs):
            if tensor.device.type == self.device.type:
                self.count += 1
            return original(tensor, *args, **kwargs)
        return counted

    def _wrap_to(self):
        original = self._saved["to"]

        def to(tensor, *args, **kwargs):
            target = kwargs.get("device", args[0] if args else None)
            if tensor.device.type == self.device.type and self.device.type != "cpu" and \
                    str(target).startswith("cpu"):
                self.count += 1
            return original(tensor, *args, **kwargs)
        return to

    def __enter__(self) -> "SyncCounter":
        for name in (*HOST_READS, "to"):
            self._saved[name] = getattr(torch.Tensor, name)
        for name in HOST_READS:
            setattr(torch.Tensor, name, self._wrap(name))
        torch.Tensor.to = self._wrap_to()
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self._saved.items():
            setattr(torch.Tensor, name, original)


def check_half_precision(model, device: torch.device, dtypes: list[str]) -> tuple[bool, list[str]]:
    """The trie engine against full forwards in each half dtype (the model is cast back to float32 after)."""
    lines, ok = [], True
    for name in dtypes:
        model.to(getattr(torch, name))
        engine = TrieEngine(model, verify=True)
        error = engine_error(model, engine, branching_calls(engine.vocab_size))
        ok = ok and error <= HALF_TOLERANCE
        lines.append(f"engine: dtype={name} max_rel_err={error:.2e} tolerance={HALF_TOLERANCE}")
    model.to(torch.float32)
    return ok, lines


def short_search(runtime, sims: int, moves: int, device: torch.device) -> tuple[float, float, str]:
    """(seconds per simulation, host syncs per simulation, engine) of one short search."""
    config = preset("hh", sims_per_move=sims, max_moves=moves, max_new_tokens=32, rollout_max_tokens=32)
    conversation = runtime.conversation("How do I pick a lock?", config)
    search = runtime.search(conversation, config)
    started = time.perf_counter()
    with SyncCounter(device) as counter:
        for _ in search.run():
            pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    simulations = max(search.simulations, 1)
    return seconds / simulations, counter.count / simulations, search.backends.lm.name


def run_bench(model: str | None, device: str, dtype: str) -> tuple[float | None, str]:
    """`python -m rain bench --quick` in this process; its speedup_per_sim and its last line."""
    from rain.tools.cli import main as cli

    out = io.StringIO()
    arguments = ["bench", "--quick", "--device", device, "--dtype", dtype] + (["--model", model] if model else [])
    with contextlib.redirect_stdout(out):
        code = cli(arguments)
    last = [line for line in out.getvalue().splitlines() if line.startswith("bench:") and "speedup_per_sim=" in line]
    match = re.search(r"speedup_per_sim=([0-9.]+)", last[-1]) if last else None
    return (float(match.group(1)) if code == 0 and match else None), (last[-1] if last else f"bench exit {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--model", default=None, help="hub id, folder or FILE.gguf (default: the embedded model)")
    parser.add_argument("--sims", type=int, default=4, help="simulations per move of the short search")
    parser.add_argument("--moves", type=int, default=3, help="moves of the short search")
    parser.add_argument("--no-bench", action="store_true", help="skip bench --quick")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu: no CUDA device here (run with --device cpu to check the script itself)", file=sys.stderr)
        return 2
    from rain.backends.torch_runtime import Runtime

    device = torch.device(args.device)
    model, tokenizer = load_causal_lm(args.model, device=args.device, dtype="float32")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    dtypes = ["bfloat16", "float16"]
    engine_ok, lines = check_half_precision(model, device, dtypes)
    for line in lines:
        print(line)
    search_dtype = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else \
        "float16" if device.type == "cuda" else "float32"
    model.to(getattr(torch, search_dtype))
    runtime = Runtime(args.model, device=args.device, loaded=(model, tokenizer))
    s_per_sim, syncs_per_sim, engine = short_search(runtime, args.sims, args.moves, device)
    print(f"search: engine={engine} dtype={search_dtype} s_per_sim={s_per_sim:.3f} syncs_per_sim={syncs_per_sim:.1f}")
    del runtime, model
    speedup, bench_line = (None, "bench skipped") if args.no_bench else \
        run_bench(args.model, args.device, search_dtype if device.type == "cuda" else "float32")
    print(bench_line)
    speedup_text = f"{speedup:.2f}" if speedup is not None else "n/a"
    print(f"gpu: device={name} engine_ok={engine_ok} s_per_sim={s_per_sim:.3f} syncs_per_sim={syncs_per_sim:.1f} "
          f"speedup_per_sim={speedup_text}")
    return 0 if engine_ok else 1


if __name__ == "__main__":
    sys.exit(main())
