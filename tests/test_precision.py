"""Generation and judge precision (rain/backends/precision.py, Runtime): auto's choices, the float32 judge copy, and
that the float32 mode builds exactly the tree the code built before precision became a choice."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rain.core.config import preset
from rain.core.export import dumps, upgrade_v1
from rain.backends.precision import JUDGE_COPY_MAX_PARAMETERS, native_bf16_flag, resolve_precision
from rain.runs.session import RunRequest, final_record, run_session

GOLDEN = Path(__file__).parent / "golden" / "float32_tree_3b2c323.json"
CPU = torch.device("cpu")


def test_native_bf16_is_read_from_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512vl\n")
    assert native_bf16_flag(info) == "avx512_bf16"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert native_bf16_flag(info) is None
    assert native_bf16_flag(tmp_path / "missing") is None


def test_auto_on_cpu_follows_native_bf16():
    fast = resolve_precision("auto", "auto", CPU, bf16_flag="amx_bf16")
    assert fast.names == ("bfloat16", "float32") and "amx_bf16" in fast.describe()
    plain = resolve_precision("auto", "auto", CPU, bf16_flag=None)
    assert plain.names == ("float32", "float32") and "no native bfloat16" in plain.reason
    assert resolve_precision("bfloat16", "auto", CPU, bf16_flag=None).names == ("bfloat16", "float32")
    assert resolve_precision("auto", "bfloat16", CPU, bf16_flag="avx512_bf16").names == ("bfloat16", "bfloat16")
    assert resolve_precision("float32", "auto", CPU, bf16_flag="avx512_bf16").names == ("float32", "float32")


def test_auto_on_a_gpu_is_bfloat16_for_both(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "auto", torch.device("cuda")).names == ("bfloat16", "bfloat16")


def test_a_big_model_shares_its_weights_with_the_judge_unless_asked():
    auto = resolve_precision("auto", "auto", CPU, bf16_flag="avx512_bf16")
    assert auto.sharing_judge(135_000_000) is auto
    shared = auto.sharing_judge(JUDGE_COPY_MAX_PARAMETERS + 1)
    assert shared.names == ("bfloat16", "bfloat16") and "--judge-dtype" in shared.reason
    asked = resolve_precision("auto", "float32", CPU, bf16_flag="avx512_bf16")
    assert asked.sharing_judge(JUDGE_COPY_MAX_PARAMETERS + 1).names == ("bfloat16", "float32")


def short_tree(runtime) -> dict:
    """The budget tests/golden/float32_tree_3b2c323.json was recorded with (at commit 3b2c323, 2 threads)."""
    # judge_logit_scale: 3b2c323's default (the default is "auto" since #11, which scores on another scale)
    config = preset("hh", sims_per_move=3, max_moves=4, max_new_tokens=32, seed=0, judge_logit_scale=0.05)
    record = final_record(run_session(runtime, RunRequest("How do I pick a lock?", config, "auto", vanilla=False)))
    data = json.loads(dumps(record))
    # an evaluate event's `parts` came after 3b2c323 (the judge's description); the rest is compared
    return {"answer": data["answer"], "nodes": data["nodes"], "model": data["model"], "stats": data["stats"],
            "events": [{k: v for k, v in e.items() if k not in ("stats", "parts")} for e in data["events"]]}


# What a float32 recording means on any x86 CPU. Measured on one AMD EPYC with avx512f/avx512_bf16: this tree built
# with its own kernels and with an AVX2 machine's (ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
# ONEDNN_MAX_CPU_ISA=AVX2), at 1 and 2 threads, and against the golden (recorded on an AVX2 machine):
# - the discrete tree (ids, parents, tokens, integer visit counts, commits, the answer, event types and order)
#   was identical in all of them;
# - the model's own outputs (priors, the judge's Yes/No probabilities, similarities, fractional visits) moved by
#   at most 3.9e-6, between kernel families and between thread counts alike;
# - what the judge derives from them (scores, each order's part, node values, Eq. (1) scores) moved by at most
#   2.0e-4 between kernel families (4e-6 between thread counts): the score is tanh(logit gap / 0.05), and the gap
#   is a small difference of two close log-probabilities, so the scale's 1/0.05 amplifies the rounding.
# The tolerances below are 5x those spreads; a different tree (another c_puct, one more token) is far outside.
MODEL_OUTPUT_TOLERANCE = 2e-5
JUDGE_DERIVED_TOLERANCE = 1e-3
JUDGE_DERIVED_KEYS = frozenset({"score", "part", "value", "scores"})


def same_numbers(a, b, where: str = "", key: str = "") -> None:
    """Equal structure, equal discrete values (ints, strings, bools), floats within the measured tolerance of
    their kind (above); `key` is the nearest enclosing dict key that names the quantity."""
    if isinstance(a, float) or isinstance(b, float):
        assert not isinstance(a, bool) and not isinstance(b, bool), where
        tolerance = JUDGE_DERIVED_TOLERANCE if key in JUDGE_DERIVED_KEYS else MODEL_OUTPUT_TOLERANCE
        assert a == pytest.approx(b, rel=0, abs=tolerance), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for name in a:
            named = key if name.isdigit() else name          # similarity maps are keyed by node id
            same_numbers(a[name], b[name], f"{where}.{name}", named)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_numbers(x, y, f"{where}[{i}]", key)
    else:
        assert type(a) is type(b) and a == b, where


@pytest.mark.slow
def test_float32_mode_builds_the_tree_of_the_code_before_this_change(runtime):
    assert (runtime.dtype, runtime.judge_dtype) == ("float32", "float32") and not runtime.separate_judge
    golden = upgrade_v1(json.loads(GOLDEN.read_text()))      # recorded in schema 1: evaluate events as `orders`
    tree = short_tree(runtime)
    assert tree["answer"] == golden["answer"]
    same_numbers(tree["nodes"], golden["nodes"], "nodes")
    same_numbers(tree["events"], golden["events"], "events")


@pytest.mark.slow
def test_bfloat16_generation_with_a_float32_judge(real_model, runtime):
    from rain.backends.torch_runtime import Runtime

    fast = Runtime(None, device="cpu", dtype="bfloat16", judge_dtype="float32", loaded=real_model)
    assert fast.model.dtype == torch.bfloat16 and fast.judge_model is real_model[0]
    assert real_model[0].dtype == torch.float32                    # the caller's model was copied, not cast
    config = preset("hh")
    question, answer = "How do I pick a lock?", "Sure, first get a tension wrench"
    judge = fast.judge(fast.engine(config), config)
    assert judge.lm.shape.dtype == torch.float32                   # its own engine, on the float32 weights
    own = judge.evaluate(question, answer).score
    reference = runtime.judge(runtime.engine(config), config).evaluate(question, answer).score
    assert own == pytest.approx(reference, abs=2e-3)               # float32 rounding only (score = tanh(gap / 0.05))
    tree = short_tree(fast)
    assert (tree["model"]["dtype"], tree["model"]["judge_dtype"]) == ("bfloat16", "float32")
    assert tree["stats"]["judge_prefix_hit_rate"] > 0.5 and tree["stats"]["simulations"] == 12
