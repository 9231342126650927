"""The README's IMDB table (paper Table 3: % positive) from a `python -m rain eval --preset imdb --judge vader` folder.

    python scripts/imdb_table.py DIR

Per method: prompts, % positive by VADER (compound >= 0.05, rain/tools/sentiment.py) and its mean compound, % positive
by the self-judge (score > 0) and its mean score, and the cost against vanilla on the same prompts (time and
forward calls, summed over the prompts every method finished).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rain.tools.evaluation import RESULTS_FILE, read_results  # noqa: E402
from rain.tools.sentiment import positive_share  # noqa: E402

NAMES = {"vanilla": "vanilla", "rain": "RAIN", "bon": "Best-of-N"}


def table(folder: Path) -> str:
    results = read_results(folder / RESULTS_FILE)
    methods = [m for m in NAMES if any(r.method == m for r in results)]
    complete = {r.id for r in results if all(any(o.id == r.id and o.method == m for o in results) for m in methods)}
    rows = {m: [r for r in results if r.method == m and r.id in complete] for m in methods}
    base = rows.get("vanilla") or []
    base_seconds, base_calls = sum(r.seconds for r in base), sum(r.forward_calls for r in base)
    lines = [f"{len(complete)} prompts finished by every method ({', '.join(methods)})", "",
             "| method | % positive (VADER) | mean VADER compound | % positive (self-judge) | mean self-judge score "
             "| time × vanilla | forward calls × vanilla |", "|---|---|---|---|---|---|---|"]
    for method, group in rows.items():
        vader = [r.external_score for r in group if r.external_score is not None]
        selfs = [r.self_score for r in group]
        share, own = positive_share(vader), positive_share(selfs, at=1e-12)
        seconds, calls = sum(r.seconds for r in group), sum(r.forward_calls for r in group)
        lines.append(f"| {NAMES[method]} | {'-' if share is None else f'{100 * share:.0f}%'} | "
                     f"{sum(vader) / max(len(vader), 1):+.3f} | {'-' if own is None else f'{100 * own:.0f}%'} | "
                     f"{sum(selfs) / max(len(selfs), 1):+.3f} | {seconds / max(base_seconds, 1e-9):.1f} | "
                     f"{calls / max(base_calls, 1):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/imdb_table.py DIR")
    print(table(Path(sys.argv[1])))
