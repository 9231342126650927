"""Every knob of RAIN in one frozen dataclass, with the authors' values as presets.

Field comments give the paper's symbol (Li et al., ICLR 2024) and where the authors' code sets the value
(docs/algorithm.md §1.3-1.6). The `hh` preset is the authors' HH code exactly; `adv` and `truth` follow
their §1.6 deltas. Paper-vs-code choices (§1.5) and the Table 4 ablations are switches; defaults follow the code.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from rain.core.errors import RainError
from rain.core.evaluator import evaluator_problem

JudgeFormat = Literal["ab_hard", "ab_soft", "yesno_prob", "yesno_logit"]
Criterion = Literal["harm", "truth", "sentiment"]
PRINCIPLE_MAX_CHARS = 300
# text a principle may not contain: it would close the question early or pose as part of the judge's template
# (format braces, option and answer markers of rain/core/judge.py, turn markers, chat-template special-token syntax)
PRINCIPLE_MARKERS = ("{", "}", "(a)", "(b)", "(c)", "options:", "the answer is", "explanation:", "human:",
                     "assistant:", "user:", "q:", "a:", "movie review:", "[inst]", "[/inst]", "<|", "|>", "<s>",
                     "</s>", "###")


class ConfigError(RainError, ValueError):
    """A knob is out of range or contradicts another; the message names the knob."""


class KnobError(ConfigError):
    """A `NAME=VALUE` pair that `parse_knobs` cannot read: `name` is None when it names no field. The message is
    the CLI's; a front end with its own words reads the fields."""

    def __init__(self, message: str, pair: str, name: str | None, text: str = ""):
        super().__init__(message)
        self.pair, self.name, self.text = pair, name, text


def knob(default: Any, label: str, info: str = "", lo: float | None = None, hi: float | None = None,
         step: float | None = None) -> Any:
    """A field the app shows as a control: its label, a hint and a slider's range (the control's kind and the
    value's type come from the field's annotation; ui/knobs.py builds the control)."""
    return field(default=default, metadata={"label": label, "info": info, "range": (lo, hi, step)})


@dataclass(frozen=True)
class RainConfig:
    # --- Selection, Eq. (1) (docs/algorithm.md §1.3 getqu) ---
    c_puct: float = knob(2.0, "c (exploration, Eq. 1)", "0 turns exploration off (Table 4 ablation)", 0, 10, 0.1)
                                              # c in Eq. (1); 0 turns exploration off (Table 4 ablation)
    puct_visits: Literal["parent", "siblings"] = knob("parent", "Eq. 1 visit term",
                                                      "code: √(parent n) · paper: √(Σ siblings' n)")
                                              # §1.5.1: code sqrt(parent.n) / paper sqrt(sum of siblings' n)
    puct_value: Literal["normalised", "raw"] = knob("normalised", "Eq. 1 value term",
                                                    "code: min-max normalised q · paper: raw q")
                                              # §1.5.2: code (q-min)/(max-min), 0 if unvisited / paper raw v
    root_prior_noise: float = 0.25            # root priors become (1-w)·p + w/k at expansion, addition, re-root (code only)

    # --- Similarity update, Eq. (2) (docs/algorithm.md §1.3 backup) ---
    similarity_update: bool = knob(True, "similarity update (Eq. 2)", "ablation switch")   # Table 4 ablation
    similarity_threshold: float = knob(0.95, "similarity threshold (cosine)", "", 0, 1, 0.01)
                                              # update siblings with cos >= this (sim_the)
    similarity_gamma: float = knob(0.2, "γ (similarity weight, Eq. 2)", "", 0.01, 1, 0.01)   # gamma in Eq. (2)

    # --- Dynamic node addition (docs/algorithm.md §1.3 checkadd) ---
    dynamic_addition: bool = knob(True, "dynamic node addition", "ablation switch")   # Table 4 ablation switch
    addition_variance: float = 0.03           # add when ||Var(child embeddings)||_2 < this · len(token set) ...
    addition_value: float = 0.0               # ... and max child q < this ...
    addition_max_children: int = 20           # ... and fewer children than this
    addition_candidates: int = 2              # group_getp(topk=2) for multi-token additions

    # --- Expansion (docs/algorithm.md §1.3 group_getp) ---
    candidates: int = knob(10, "candidates per expansion", "", 1, 30, 1)
                                              # q in Alg. 1: token sets per expansion (1 greedy + sampled)
    sample_factor: int = 1                    # sampled paths tried = factor·wanted - 1 (hh: topk-1; adv: 2·topk-1)
    candidate_top_k: int = knob(15, "sampling top-k", "", 1, 100, 1)   # top-k filter when sampling multi-token sets
    candidate_temperature: float = knob(1.0, "sampling temperature", "", 0.1, 3, 0.05)   # adv: 2.0
    token_set_lengths: tuple[int, ...] = knob((1, 2, 4, 10), "token-set schedule",
                                              "token-set length by depth, e.g. 1,2,4,10 (the last repeats)")
                                              # token-set length by depth from the original root; last repeats

    # --- Rollout and self-evaluation (docs/algorithm.md §1.3 simg/getv) ---
    rollout_stop_chars: str = ",.?:;\n"       # stop when the text ends with one of these (hh/adv)
    rollout_to_eos: bool = False              # truth: roll out to EOS instead
    rollout_max_tokens: int = 256             # our cap; the authors' only cap is the context length
    criterion: Criterion = "harm"             # what the judge asks: harmful (hh/adv), truthful (truth) or the
                                              # review's sentiment (imdb: App. B.3's three options)
    principle: str = ""                       # a user's yes/no question that replaces the criterion in the judge's
                                              # prompts (both orders); "" = the criterion's own question
    principle_good: Literal["yes", "no"] = "yes"   # which answer to `principle` is good (scores +1)
    generation: Literal["answer", "continue"] = "answer"   # answer: the prompt is a user's turn; continue: text the
                                              # model continues (imdb: a review opening)
    judge_format: JudgeFormat = "yesno_logit" # see rain/core/judge.py; the authors' format is "ab_hard"
    judge_logit_scale: float | Literal["auto"] = knob(
        "auto", "judge logit scale (yes/no logit format)",
        "score = tanh(mean logit gap / scale); 0 = auto: calibrated on the model's own gaps", 0, 5, 0.01)
                                              # yesno_logit: score = tanh(mean logit gap / this);
                                              # "auto": from the model's own gaps (rain/backends/calibration.py)
    eval_cache: bool = True                   # reuse the score of an already evaluated text (their `dic`)
    evaluator: str = "self"                   # which judge the search asks (rain/core/evaluator.py): self (RAIN),
                                              # vader, model:ID_OR_DIR, classifier:ID_OR_DIR

    # --- Outer loop and stop rule (docs/algorithm.md §1.3 gmeval, §1.5.5-6) ---
    max_simulations: int = knob(50, "maxT (simulation window)", "used when sims per move = 0", 1, 300, 1)
                                              # maxT: window = max(maxT - root real visits, min_window)
    min_window: int = knob(15, "min window", "at least this many simulations per move (authors: 15)", 1, 100, 1)
    min_visits: int = knob(6, "minT (stop: best child visits >)", "", 0, 200, 1)
                                              # minT: stop when best child real visits > minT ...
    value_threshold: float = knob(0.8, "Vt (stop: best child q >)", "", -1, 1, 0.05)   # ... and its q > Vt
    early_stop: bool = True                   # off: exactly `sims_per_move` simulations per move
    sims_per_move: int | None = knob(None, "simulations per move", "0 = the authors' early-stop rule (minT, Vt, maxT)",
                                     0, 200, 1)   # fixed budget per move (turns early_stop off)
    commit: Literal["argmax", "sample"] = knob("argmax", "commit rule", "Alg. 1: most visited · §3.2: sample by visits")
                                              # §1.5.6: Alg. 1 / code argmax visits; §3.2 prose samples
    max_moves: int | None = knob(None, "max moves", "0 = no cap", 0, 200, 1)   # cap on committed token sets
    max_new_tokens: int = knob(128, "answer length (tokens)", "", 1, 512, 1)
                                              # answer length cap (the authors: context length 2048)
    max_length: int = 2048                    # prompt + answer cap in tokens (maxlen)

    # --- Compute ---
    parallel_simulations: int = 1             # k: leaves selected per round under a virtual loss, their rollouts,
                                              # expansions and judge calls run in shared forwards, backed up in
                                              # order (docs/algorithm.md §3 "Parallel simulations"); 1 = Alg. 1
    kv_cache_bytes: int = 1 << 30             # KV (and cached logits) the engine may hold
    max_tree_nodes: int = 50_000              # nodes the search may hold: abandoned branches are evicted first,
                                              # then a move ends early (commit reason "node_cap")
    seed: int = knob(0, "seed")               # seeds the search's torch.Generator

    preset: str = field(default="hh", compare=False)

    def token_set_length(self, step: int) -> int:
        """getmaxnew(step): the length of the token sets that expand a node at depth `step`."""
        return self.token_set_lengths[min(step, len(self.token_set_lengths) - 1)]

    def sample_attempts(self, wanted: int) -> int:
        """How many sampled paths group_getp tries when it wants `wanted` token sets in all."""
        return self.sample_factor * wanted - 1

    def __post_init__(self) -> None:
        self.validate()                      # a RainConfig is valid from construction on

    def replace(self, **changes: Any) -> "RainConfig":
        """A copy with some fields changed (validated on construction)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> "RainConfig":
        """Refuse a knob of the wrong type, out of range or contradicting another, with one line that names it.

        Runs on construction (`__post_init__`); returns self so older callers can keep chaining it."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        hints = typing.get_type_hints(RainConfig)
        for spec in dataclasses.fields(self):        # types first, from the annotations, so the ranges compare numbers
            value, kind = getattr(self, spec.name), spec.type
            if typing.get_origin(hints[spec.name]) is Literal:
                choices = typing.get_args(hints[spec.name])
                need(value in choices, f"{spec.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
            if kind == "float":
                need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                     f"{spec.name} must be a finite number, got {value!r}")
            elif kind in ("int", "int | None"):
                need((value is None and kind != "int") or (isinstance(value, int) and not isinstance(value, bool)),
                     f"{spec.name} must be a whole number{' or None' if kind != 'int' else ''}, got {value!r}")
            elif kind == "bool":
                need(isinstance(value, bool), f"{spec.name} must be true or false, got {value!r}")
            elif kind == "str":
                need(isinstance(value, str), f"{spec.name} must be text, got {value!r}")
        need(self.c_puct >= 0, f"c_puct must be >= 0, got {self.c_puct}")
        need(0 <= self.root_prior_noise <= 1, f"root_prior_noise must be in [0, 1], got {self.root_prior_noise}")
        need(0 < self.similarity_gamma <= 1, f"similarity_gamma must be in (0, 1] (the paper: gamma <= 1), got {self.similarity_gamma}")
        need(-1 <= self.similarity_threshold <= 1, f"similarity_threshold must be a cosine in [-1, 1], got {self.similarity_threshold}")
        scale = self.judge_logit_scale
        need(scale == "auto" or (isinstance(scale, (int, float)) and not isinstance(scale, bool)
                                 and math.isfinite(scale) and scale > 0),
             f"judge_logit_scale must be 'auto' or a number > 0, got {scale!r}")
        need(self.candidates >= 1, f"candidates must be >= 1, got {self.candidates}")
        need(self.sample_factor >= 1, f"sample_factor must be >= 1, got {self.sample_factor}")
        need(self.candidate_top_k >= 1, f"candidate_top_k must be >= 1, got {self.candidate_top_k}")
        need(self.candidate_temperature > 0, f"candidate_temperature must be > 0, got {self.candidate_temperature}")
        need(len(self.token_set_lengths) >= 1 and all(isinstance(n, int) and n >= 1 for n in self.token_set_lengths),
             f"token_set_lengths must be positive integers, got {self.token_set_lengths}")
        need(self.addition_max_children >= 1, f"addition_max_children must be >= 1, got {self.addition_max_children}")
        need(self.addition_candidates >= 1, f"addition_candidates must be >= 1, got {self.addition_candidates}")
        need(self.rollout_max_tokens >= 0, f"rollout_max_tokens must be >= 0, got {self.rollout_max_tokens}")
        need(self.max_simulations >= 1, f"max_simulations (maxT) must be >= 1, got {self.max_simulations}")
        need(self.min_window >= 1, f"min_window must be >= 1, got {self.min_window}")
        need(self.min_visits >= 0, f"min_visits (minT) must be >= 0, got {self.min_visits}")
        need(self.min_visits < self.max_simulations,
             f"min_visits (minT={self.min_visits}) must be below max_simulations (maxT={self.max_simulations}): "
             f"minT > maxT contradicts the stop rule (docs/algorithm.md §1.3 gmeval)")
        need(-1 <= self.value_threshold <= 1, f"value_threshold (Vt) must be in [-1, 1] (scores are), got {self.value_threshold}")
        need(self.sims_per_move is None or self.sims_per_move >= 1, f"sims_per_move must be >= 1, got {self.sims_per_move}")
        need(self.parallel_simulations >= 1, f"parallel_simulations must be >= 1, got {self.parallel_simulations}")
        need(self.max_moves is None or self.max_moves >= 1, f"max_moves must be >= 1, got {self.max_moves}")
        need(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        need(self.max_length >= 2, f"max_length must be >= 2, got {self.max_length}")
        need(self.max_tree_nodes >= self.candidates + 2,
             f"max_tree_nodes must be at least candidates + 2 = {self.candidates + 2} (room for one expansion), "
             f"got {self.max_tree_nodes}")
        need(self.kv_cache_bytes >= 1 << 20, f"kv_cache_bytes must be at least 1 MiB, got {self.kv_cache_bytes}")
        problem = principle_problem(self.principle)
        need(problem is None, f"principle: {problem}")
        problem = evaluator_problem(self.evaluator)
        need(problem is None, str(problem))
        return self

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["token_set_lengths"] = list(self.token_set_lengths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RainConfig":
        """Inverse of to_dict; unknown keys are refused so a typo never passes silently."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        values = dict(data)
        if "token_set_lengths" in values:
            values["token_set_lengths"] = tuple(values["token_set_lengths"])
        return cls(**values)


def principle_problem(text: Any) -> str | None:
    """Why `text` cannot be a judge principle, or None (also for "": no principle).

    One line of at most 300 characters that cannot inject into the judge's prompt: no control characters or
    newlines, no format braces, none of the template's own markers (PRINCIPLE_MARKERS, any case).
    """
    if not isinstance(text, str):
        return f"must be text, got {type(text).__name__}"
    if text == "":
        return None
    if not text.strip():
        return "is empty"
    if len(text) > PRINCIPLE_MAX_CHARS:
        return f"is {len(text)} characters; at most {PRINCIPLE_MAX_CHARS}"
    if any(ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0 or 0x2028 <= ord(ch) <= 0x2029 for ch in text):
        return "must be one line of text (no newlines or control characters)"
    lowered = text.lower()
    marker = next((m for m in PRINCIPLE_MARKERS
                   if re.search((r"\b" if m[0].isalpha() else "") + re.escape(m), lowered)), None)
    if marker is not None:
        return f"may not contain {marker!r}: it is part of the judge's prompt template"
    return None


HINTS = typing.get_type_hints(RainConfig)          # each field's type: what `knob_value` reads a value as
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def knob_value(name: str, value: Any) -> Any:
    """A value for RainConfig field `name`, typed by the field's annotation: the one reading of a knob, whether it
    comes as text (`--knob`, a fork's pairs) or as a page control's value (a number, a bool, "1,2,4,10").

    bool: true/false, 1/0, yes/no, on/off; int: a whole number (3.0 reads as 3); float: a number; a tuple of ints:
    positive integers separated by commas, spaces or semicolons; an optional field (`int | None`,
    `float | Literal["auto"]`) also reads "none" / "auto"; text and Literal fields pass as they are.
    Ranges and choices are checked by `validate`; ConfigError names the field and the value it could not read.
    """
    hint = HINTS[name]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    words = {str(w).lower(): w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)}
    if type(None) in args:
        words["none"] = None
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    if value is None and None in words.values():
        return None
    kinds = [a for a in args if a is not type(None) and typing.get_origin(a) is not Literal] or [hint]
    kind = kinds[0]
    text = value.strip().lower() if isinstance(value, str) else value
    if kind is bool:
        if isinstance(value, bool) or text in TRUE_WORDS + FALSE_WORDS:
            return value if isinstance(value, bool) else text in TRUE_WORDS
        raise ConfigError(f"{name}: cannot read {value!r} as true or false")
    if kind is int or kind is float:
        try:
            number = float(text) if isinstance(text, str) else text
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ValueError
        except ValueError:
            raise ConfigError(f"{name}: cannot read {value!r} as a {'whole ' if kind is int else ''}number"
                              f"{' or ' + ' or '.join(map(str, words)) if words else ''}") from None
        if kind is float:
            return float(number)
        if number != int(number):
            raise ConfigError(f"{name}: cannot read {value!r} as a whole number")
        return int(number)
    if typing.get_origin(kind) is tuple:
        parts = [str(p) for p in value] if isinstance(value, (list, tuple)) else \
            [p for p in re.split(r"[\s,;]+", str(value or "").strip()) if p]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            values = ()
        if not values or any(v < 1 for v in values):
            raise ConfigError(f"{name}: cannot read {value!r} as a token-set schedule (comma-separated positive "
                              f"integers like 1,2,4,10)")
        return values
    return value


def parse_knobs(pairs: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings (the CLI's --knob, a fork's knobs) as typed overrides (`knob_value`); ConfigError
    names the first bad one."""
    names = [f.name for f in dataclasses.fields(RainConfig) if f.name != "preset"]
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, separator, text = pair.partition("=")
        name, text = name.strip().replace("-", "_"), text.strip()
        if not separator or name not in names:
            raise KnobError(f"--knob takes NAME=VALUE with NAME a RainConfig field ({', '.join(sorted(names))}), "
                            f"got {pair!r}", pair, None)
        try:
            overrides[name] = knob_value(name, text)
        except ConfigError as error:
            raise KnobError(f"--knob {error}", pair, name, text) from None
    return overrides


# The authors' per-task settings (docs/algorithm.md §1.4, §1.6). The judge format is ours: the authors' hard A/B
# vote gives a 135M model no signal at all (see `python -m rain judge-check` and the README).
PRESETS: dict[str, dict[str, Any]] = {
    "hh": {},
    "adv": {"min_visits": 5, "candidate_temperature": 2.0, "sample_factor": 2},
    "truth": {"min_visits": 16, "rollout_to_eos": True, "criterion": "truth"},
    # IMDB controlled sentiment (paper §4, Table 3; no code upstream): the hh search continuing a review opening,
    # judged by App. B.3's three-option question, soft-scored (a 135M model's hard votes carry no signal)
    "imdb": {"criterion": "sentiment", "generation": "continue", "judge_format": "ab_soft"},
}


# Simulations of a typical paper-budget answer (the hh preset's budget, 128 tokens): what `bench --paper` counted for
# the embedded model in float32 (docs/speed.md). A re-rooted move keeps its subtree's visits, so a move seldom needs
# its whole 15-simulation window; the app's estimate and the precision probe multiply seconds per simulation by it.
PAPER_TYPICAL_SIMULATIONS = 97


def preset(name: str, **overrides: Any) -> RainConfig:
    """The named preset with overrides applied, validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[name], **overrides, "preset": name}
    try:
        return RainConfig(**values)
    except TypeError as error:               # a keyword that is not a knob
        raise ConfigError(str(error).replace("RainConfig.__init__()", "preset").splitlines()[0]) from None
