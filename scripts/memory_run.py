"""Memory caps hold: a 200-simulation RAIN run on the embedded model stays under `max_tree_nodes` and
`kv_cache_bytes`, and this prints the peak resident memory it needed.

    HF_HUB_OFFLINE=1 python scripts/memory_run.py [--simulations 200] [--kv-mb 32] [--tree-nodes 300]

The run uses the library (rain.backends.torch_runtime.Runtime, rain.core.config.preset) with tight caps and stops after exactly
`--simulations` simulations. It samples the tree size and resident memory after every event, and reads the
engine's own KV high-water mark (`stats.kv_peak_bytes`). Last line:

    memory: simulations=200 peak_rss_mb=... kv_peak_mb=... kv_cap_mb=... tree_nodes_peak=... tree_cap=...

Exit code 1 when a cap was exceeded or the run ended before the requested simulations.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from rain.core.config import preset  # noqa: E402
from rain.core.events import Committed, Rewound  # noqa: E402
from rain.backends.torch_runtime import Runtime  # noqa: E402

PROMPT = "Write a long, detailed, step-by-step guide to planning a week-long hiking trip in the mountains."
MB = 2**20


def rss_mb() -> float:
    """This process's resident memory now, in MB (Linux /proc/self/statm counts pages)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / MB


def peak_rss_mb() -> float:
    """The process's lifetime peak resident memory in MB (getrusage reports kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulations", type=int, default=200)
    parser.add_argument("--sims-per-move", type=int, default=25)
    parser.add_argument("--kv-mb", type=int, default=32, help="kv_cache_bytes cap in MiB")
    parser.add_argument("--tree-nodes", type=int, default=300, help="max_tree_nodes cap")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    runtime = Runtime(None, device="cpu", dtype="float32")
    config = preset("hh", sims_per_move=args.sims_per_move, max_moves=None, max_new_tokens=512,
                    kv_cache_bytes=args.kv_mb * MB, max_tree_nodes=args.tree_nodes)
    search = runtime.search(runtime.conversation(PROMPT, config), config)
    loaded_rss = rss_mb()
    run_peak_rss, tree_peak, simulations, moves, started = loaded_rss, 0, 0, 0, time.perf_counter()
    events = search.run()
    for event in events:
        tree_peak = max(tree_peak, search.tree.size)
        run_peak_rss = max(run_peak_rss, rss_mb())
        moves += isinstance(event, Committed)
        if isinstance(event, Rewound):
            simulations += 1
            if simulations >= args.simulations:
                break
    events.close()
    seconds = time.perf_counter() - started
    stats = search.backends.lm.stats
    print(f"after loading: rss {loaded_rss:.0f} MB; during the run: peak rss {run_peak_rss:.0f} MB "
          f"(+{run_peak_rss - loaded_rss:.0f} MB); {seconds:.0f} s, {seconds / max(simulations, 1):.2f} s/simulation, "
          f"{args.threads} torch thread(s)")
    print(f"tree: {len(search.tree.nodes)} nodes created, {search.tree.evicted} evicted, peak held {tree_peak} "
          f"(cap {config.max_tree_nodes}), {moves} moves; KV: {stats.evicted_tokens} tokens evicted")
    print(f"memory: simulations={simulations} peak_rss_mb={peak_rss_mb():.0f} kv_peak_mb={stats.kv_peak_bytes / MB:.1f} "
          f"kv_cap_mb={config.kv_cache_bytes / MB:.1f} tree_nodes_peak={tree_peak} tree_cap={config.max_tree_nodes}")
    within = stats.kv_peak_bytes <= config.kv_cache_bytes and tree_peak <= config.max_tree_nodes
    if not within or simulations < args.simulations:
        print("FAILED: a cap was exceeded or the run ended early", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
