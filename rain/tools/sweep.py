"""The paper's ablation (Table 4) on your own prompts: RAIN with its components removed one after another.

Table 4 removes them cumulatively (LLaMA-2-chat 13B, GCG white-box ASR: RAIN 19%, − similarity update 22%,
− dynamic node addition 25%, − exploration (c = 0) 27%; spec §3), so `no_addition` also has no similarity update
and `c0` has neither. Every variant shares the budget the knobs set. Rows are `rain.tools.evaluation.Result`s whose
`method` is the variant, appended to DIR/results.jsonl as they finish (resumable: a rerun skips rows already
there, and refuses a folder made with another model or budget). DIR/summary.md has, per variant, the self-judge
score of the final answer, the refusal rate (keyword list), simulations and seconds; DIR/summary.png draws them
with matplotlib (rain/ never imports plotly).
"""
from __future__ import annotations

import dataclasses
import textwrap
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any, Callable, Sequence

from rain.core.config import RainConfig
from rain.tools.evaluation import EvalPrompt, MethodRunner, Result, parse_names

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_similarity": {"similarity_update": False},
    "no_addition": {"similarity_update": False, "dynamic_addition": False},
    "c0": {"similarity_update": False, "dynamic_addition": False, "c_puct": 0.0},
}
PAPER_ASR = {"full": 0.19, "no_similarity": 0.22, "no_addition": 0.25, "c0": 0.27}   # Table 4, for the caption
SUMMARY_FILE, PLOT_FILE = "summary.md", "summary.png"


def parse_variants(text: str) -> list[str]:
    return parse_names(text, VARIANTS, "variant")


def variant_config(config: RainConfig, variant: str) -> RainConfig:
    """`config` with the variant's components switched off (Table 4, cumulative)."""
    return config.replace(**VARIANTS[variant])


def sweep_runner(runtime, config: RainConfig, prompt_format: str = "auto") -> Callable[[EvalPrompt, str], Result]:
    """(prompt, variant) -> the RAIN result of that variant, scored by one self-judge on its own engine."""
    base = MethodRunner.on(runtime, config, prompt_format=prompt_format)

    def run(prompt: EvalPrompt, variant: str) -> Result:
        runner = dataclasses.replace(base, config=runtime.resolved(variant_config(config, variant)))
        return dataclasses.replace(runner(prompt, "rain"), method=variant)

    return run


@dataclass(frozen=True)
class VariantRow:
    variant: str
    prompts: int
    self_score: float
    refusal_rate: float
    simulations: float              # mean per answer
    seconds: float                  # mean per answer
    forward_calls: float            # mean per answer


def summarise(results: Sequence[Result], variants: Sequence[str]) -> list[VariantRow]:
    rows = []
    for variant in variants:
        mine = [r for r in results if r.method == variant]
        if not mine:
            continue
        rows.append(VariantRow(variant, len(mine), mean(r.self_score for r in mine), mean(r.refused for r in mine),
                               mean(r.details.get("simulations", 0) for r in mine), mean(r.seconds for r in mine),
                               mean(r.forward_calls for r in mine)))
    return rows


def format_summary(rows: Sequence[VariantRow], header: str) -> str:
    lines = [header, "", "| variant | removed (cumulative, Table 4) | prompts | self-judge score | refusal rate | "
             "simulations | seconds | forward calls |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        removed = ", ".join(f"{k}={v}" for k, v in VARIANTS[row.variant].items()) or "nothing (RAIN)"
        lines.append(f"| {row.variant} | {removed} | {row.prompts} | {row.self_score:+.3f} | {row.refusal_rate:.0%} "
                     f"| {row.simulations:.1f} | {row.seconds:.1f} | {row.forward_calls:.0f} |")
    lines += ["", "Means per answer. The paper's Table 4 (LLaMA-2-chat 13B, GCG white-box attack success rate, lower "
              "is better): " + ", ".join(f"{k} {v:.0%}" for k, v in PAPER_ASR.items()) + "."]
    return "\n".join(lines) + "\n"


def write_plot(path: Path, rows: Sequence[VariantRow], title: str) -> Path:
    """Four bar panels, one per column of the summary (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row.variant for row in rows]
    panels = (("self-judge score (mean)", [row.self_score for row in rows], "#2563eb"),
              ("refusal rate", [row.refusal_rate for row in rows], "#dc2626"),
              ("simulations per answer", [row.simulations for row in rows], "#0f766e"),
              ("seconds per answer", [row.seconds for row in rows], "#a855f7"))
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for ax, (label, values, colour) in zip(axes.flat, panels):
        bars = ax.bar(names, values, color=colour)
        ax.bar_label(bars, fmt="%.2f")
        ax.set_title(label)
        ax.axhline(0, color="#94a3b8", linewidth=0.8)
    axes[0][0].set_ylim(-1.05, 1.05)
    axes[0][1].set_ylim(0, 1.05)
    figure.suptitle(textwrap.fill(title, 110), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_summary(folder: Path, results: Sequence[Result], variants: Sequence[str], header: str) -> str:
    rows = summarise(results, variants)
    text = format_summary(rows, header)
    (folder / SUMMARY_FILE).write_text(text, encoding="utf-8")
    write_plot(folder / PLOT_FILE, rows, header.splitlines()[0])
    return text
