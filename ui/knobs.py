"""The search knobs of the page, described once: by RainConfig's fields (their type, default and `knob` metadata).

A field with metadata is a control. Its kind follows its annotation: a bool is a checkbox, a Literal a radio of its
values, a tuple of ints a text box ("1,2,4,10"), a number a slider over the metadata's range (a number input when
it has none). A slider of an optional number (`int | None`, `float | Literal["auto"]`) reads 0 as None or "auto",
as its hint says. The page's own choices are the order of the controls (also the order of /run's parameters)
and the CPU budget it starts from.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from rain.core.config import HINTS, PRESETS, ConfigError, RainConfig, knob_value, preset

# The page's order of the controls; /run takes the knobs in this order after its first six parameters.
ORDER = ("c_puct", "similarity_gamma", "similarity_threshold", "max_simulations", "min_window", "min_visits",
         "value_threshold", "candidates", "token_set_lengths", "candidate_temperature", "candidate_top_k",
         "max_new_tokens", "sims_per_move", "max_moves", "seed", "puct_visits", "puct_value", "commit",
         "similarity_update", "dynamic_addition", "judge_logit_scale")
# The budget a CPU demo can afford (the authors' budget is sims_per_move=0, max_new_tokens=128: see "Paper").
QUICK_BUDGET = {"sims_per_move": 5, "max_moves": 0, "max_new_tokens": 48, "max_simulations": 50, "min_visits": 6}
PAPER_BUDGET = {"sims_per_move": 0, "max_moves": 0, "max_new_tokens": 128, "max_simulations": 50, "min_visits": 6}
KEPT_ON_PRESET = {"max_new_tokens", "sims_per_move", "max_moves", "seed"}   # a preset leaves the budget alone


@dataclass(frozen=True)
class Knob:
    """One control: the RainConfig field it sets and how the page shows it."""

    name: str
    label: str
    kind: str                    # slider, int, text, radio, check
    default: Any                 # the control's starting value (as the control holds it)
    info: str = ""
    lo: float = 0
    hi: float = 1
    step: float = 1
    choices: tuple = ()
    zero: Any = 0                # what a slider's 0 means for an optional number (None, "auto"), else 0 itself


def _knob(spec: dataclasses.Field) -> Knob:
    hint, meta = HINTS[spec.name], spec.metadata
    lo, hi, step = meta["range"]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    literals = [v for a in args if typing.get_origin(a) is Literal for v in typing.get_args(a)]
    default = QUICK_BUDGET.get(spec.name, spec.default)
    common = dict(name=spec.name, label=meta["label"], info=meta["info"])
    if hint is bool:
        return Knob(kind="check", default=default, **common)
    if typing.get_origin(hint) is Literal:
        return Knob(kind="radio", default=default, choices=typing.get_args(hint), **common)
    if typing.get_origin(hint) is tuple:
        return Knob(kind="text", default=",".join(map(str, default)), **common)
    zero = None if type(None) in typing.get_args(hint) else literals[0] if literals else 0
    if default is None or default in literals:
        default = 0                                      # the slider's 0 stands for None / "auto"
    if lo is None:
        return Knob(kind="int", default=default, zero=zero, **common)
    return Knob(kind="slider", default=default, lo=lo, hi=hi, step=step, zero=zero, **common)


FIELDS = {spec.name: spec for spec in dataclasses.fields(RainConfig)}
KNOBS: tuple[Knob, ...] = tuple(_knob(FIELDS[name]) for name in ORDER)
KNOB_NAMES = tuple(k.name for k in KNOBS)
assert set(KNOB_NAMES) == {name for name, spec in FIELDS.items() if spec.metadata}, "ORDER lists every knob field"


def field_value(knob: Knob, value: Any) -> Any:
    """The control's value as the RainConfig field takes it: a slider's 0 as its `zero` (None, "auto"), anything
    else read by the config's one knob reader (`rain.core.config.knob_value`); RainConfig checks the range."""
    if knob.kind in ("slider", "int") and not isinstance(value, bool) and isinstance(value, (int, float)) \
            and value == 0 and knob.zero != 0:
        return knob.zero
    return knob_value(knob.name, value)


def build_config(preset_name: str, judge_format: str, knobs: dict[str, Any]) -> RainConfig:
    """A validated RainConfig from the page's values; raises ConfigError with a message for people."""
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    by_name = {k.name: k for k in KNOBS}
    overrides: dict[str, Any] = {}
    for name, value in knobs.items():
        if name not in by_name:
            raise ConfigError(f"unknown setting {name!r}")
        overrides[name] = field_value(by_name[name], value)
    if judge_format:
        overrides["judge_format"] = judge_format
    return preset(preset_name, **overrides)


def control_value(knob: Knob, config: RainConfig) -> Any:
    """The control's value for a config (the inverse of `field_value`)."""
    value = getattr(config, knob.name)
    if knob.kind == "text":
        return ",".join(map(str, value))
    return 0 if knob.zero != 0 and value == knob.zero else value


def preset_values(preset_name: str, skip: Any) -> list[Any]:
    """Each control's value under a preset; `skip` (gr.skip()) for the budget the user set, or for all when the
    preset is unknown."""
    try:
        config = preset(preset_name)
    except ConfigError:
        return [skip for _ in KNOBS]
    return [skip if knob.name in KEPT_ON_PRESET else control_value(knob, config) for knob in KNOBS]


def preset_judge_format(preset_name: str) -> str:
    """The judge format a preset asks for (imdb: ab_soft, App. B.3's three options; the others: yesno_logit)."""
    return PRESETS.get(preset_name, {}).get("judge_format", RainConfig.judge_format)


def budget_values(budget: dict[str, Any], skip: Any) -> list[Any]:
    return [budget[k.name] if k.name in budget else skip for k in KNOBS]
