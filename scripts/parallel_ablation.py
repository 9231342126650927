"""docs/speed.md's "Parallel simulations" table: RAIN at k = 1, 2, 4, 8 parallel simulations on a prompt set.

    HF_HUB_OFFLINE=1 python scripts/parallel_ablation.py assets/eval_prompts.jsonl --out DIR \
        [--sims-per-move 4 --max-moves 4 --max-new-tokens 32 | --paper --max-new-tokens 64] [--dtype float32 --ks 1,2,4,8]

The recorded sweep's budget (assets/sweep/run.json) by default; `--paper`: the hh preset's own budget, the one
`bench --paper` times (the authors' early-stop rule: minT 6, Vt, maxT 50), answers of --max-new-tokens tokens. One model, and every prompt runs all k values one
after the other before the next prompt, so the seconds compare within one run under the same load (reported as
ratios to k = 1). Per k: the mean self-judge score of the final answer (one self-judge on its own engine, as the
sweep scores), simulations, forward calls per simulation (deterministic) and seconds per simulation. Rows are
`rain.tools.evaluation.Result`s in DIR/results.jsonl, method "k<K>"; a rerun resumes.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from statistics import mean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rain.core.config import preset  # noqa: E402
from rain.core.errors import RainError  # noqa: E402
from rain.tools import evaluation as ev  # noqa: E402


def table(results: list[ev.Result], ks: list[int]) -> str:
    """One row per k over the prompts every k finished; seconds per simulation as a ratio to the first k."""
    methods = [f"k{k}" for k in ks]
    done = {r.id for r in results if all(any(o.id == r.id and o.method == m for o in results) for m in methods)}
    rows = {m: [r for r in results if r.method == m and r.id in done] for m in methods}
    per_sim = {m: (sum(r.forward_calls for r in g) / max(sum(r.details.get("simulations", 0) for r in g), 1),
                   sum(r.seconds for r in g) / max(sum(r.details.get("simulations", 0) for r in g), 1))
               for m, g in rows.items()}
    per_answer = {m: sum(r.seconds for r in g) / max(len(g), 1) for m, g in rows.items()}
    base_forwards, base_seconds = per_sim[methods[0]]
    lines = [f"{len(done)} prompts finished by every k", "",
             "| k | self-judge score (mean) | refusal rate | simulations per answer | forward calls per simulation "
             "| forwards × k=1 | seconds per simulation × k=1 | seconds per answer × k=1 |",
             "|---|---|---|---|---|---|---|---|"]
    for k, m in zip(ks, methods):
        group = rows[m]
        forwards, seconds = per_sim[m]
        lines.append(f"| {k} | {mean(r.self_score for r in group):+.3f} | {mean(r.refused for r in group):.0%} | "
                     f"{mean(r.details.get('simulations', 0) for r in group):.1f} | {forwards:.2f} | "
                     f"{forwards / base_forwards:.2f} | {seconds / base_seconds:.2f} | "
                     f"{per_answer[m] / per_answer[methods[0]]:.2f} |")
    return "\n".join(lines) + "\n"


def k_values(text: str) -> list[int]:
    """--ks: whole numbers of at least 1, comma-separated."""
    try:
        ks = [int(k) for k in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"whole numbers separated by commas, e.g. 1,2,4, got {text!r}") from None
    if min(ks) < 1:
        raise argparse.ArgumentTypeError(f"every k is at least 1, got {text!r}")
    return ks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", metavar="PROMPTS.jsonl")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--ks", type=k_values, default="1,2,4,8")
    parser.add_argument("--sims-per-move", type=int, default=4)
    parser.add_argument("--max-moves", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--paper", action="store_true", help="the authors' early-stop budget (hh preset)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    try:
        config = preset("hh", max_new_tokens=args.max_new_tokens) if args.paper else \
            preset("hh", sims_per_move=args.sims_per_move, max_moves=args.max_moves, max_new_tokens=args.max_new_tokens)
        prompts = ev.load_prompts(Path(args.input), args.limit)          # a bad file is refused before DIR is made
        out = Path(args.out)
        ev.check_setup(out, {"model": "embedded", "config": config.to_dict(), "dtype": args.dtype,
                             "command": "parallel_ablation"})
        results_path = out / ev.RESULTS_FILE
        todo = ev.pending(prompts, [f"k{k}" for k in args.ks], ev.read_results(results_path))
        if todo:
            from rain.runs.runtimes import load_runtime

            runtime = load_runtime(None, "trie", device="cpu", dtype=args.dtype)
            base = ev.MethodRunner.on(runtime, config)

            def run(prompt: ev.EvalPrompt, method: str) -> ev.Result:
                k = int(method[1:])
                runner = dataclasses.replace(base, config=runtime.resolved(config.replace(parallel_simulations=k)))
                return dataclasses.replace(runner(prompt, "rain"), method=method)

            for result in ev.run_pairs(todo, run, results_path):
                print(f"{result.id} {result.method}: score {result.self_score:+.3f}, "
                      f"{result.details.get('simulations')} simulations, {result.forward_calls} forwards, "
                      f"{result.seconds:.1f} s", file=sys.stderr, flush=True)
        print(table(ev.read_results(results_path), args.ks), end="")
        return 0
    except RainError as error:                          # a missing prompt file, another run's DIR, a bad model
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
