"""Generation and judge precision (rain/backends/precision.py, Runtime): auto's choices, the float32 judge copy, and
that the float32 mode builds exactly the tree the code built before precision became a choice."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from rain.core.config import preset
from rain.core.export import dumps, upgrade_v1
from rain.backends.precision import (JUDGE_COPY_MAX_PARAMETERS, Int8Linear, SpeedProbe, is_int8, cpu_flags, cpu_summary, quantize_int8,
                            resolve_precision)
from rain.runs.session import RunRequest, final_record, run_session

GOLDEN = Path(__file__).parent / "golden" / "float32_tree_3b2c323.json"
CPU = torch.device("cpu")


def test_the_cpu_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 9B14\n")
    assert cpu_flags(info) == ("AMD EPYC 9B14", ["fpu", "sse", "avx2", "avx512f", "avx512_bf16"])
    assert cpu_summary(info).startswith("AMD EPYC 9B14; flags avx2 avx512f avx512_bf16; ")
    assert cpu_flags(tmp_path / "missing") == ("", [])


def probe(float32: tuple[float, float], bfloat16: tuple[float, float], int8: tuple[float, float]) -> SpeedProbe:
    """A stored probe's figures: (1-row, 10-row) forward seconds per mode."""
    seconds = {mode: {"1": one, "10": ten} for mode, (one, ten) in
               (("float32", float32), ("bfloat16", bfloat16), ("int8", int8))}
    return SpeedProbe(seconds, judge_seconds=0.2, cpu="test CPU", threads=2)


def test_auto_on_cpu_picks_the_mode_measured_fastest_never_one_slower_than_float32():
    fast_int8 = resolve_precision("auto", "auto", CPU, probe((0.043, 0.086), (0.026, 0.028), (0.015, 0.030)))
    assert fast_int8.names == ("int8", "float32") and fast_int8.int8
    # a simulation: 4.3 one-row and 6.8 ten-row forwards plus the 0.2 s judge call (float32: riding along, 1 fewer)
    int8_seconds = 4.3 * 0.015 + 6.8 * 0.030 + 0.2
    float32_seconds = 4.3 * 0.043 + 6.8 * 0.086 + 0.2 - 0.043
    assert fast_int8.probe.simulation_seconds("int8") == pytest.approx(int8_seconds)
    assert fast_int8.probe.simulation_seconds("float32") == pytest.approx(float32_seconds)
    assert "int8 generation measured fastest" in fast_int8.reason
    assert f"int8 {int8_seconds:.2f} s" in fast_int8.reason and f"float32 {float32_seconds:.2f} s" in fast_int8.reason
    assert "the judge stays float32" in fast_int8.describe()
    bf16 = resolve_precision("auto", "auto", CPU, probe((0.043, 0.086), (0.026, 0.028), (0.030, 0.060)))
    assert bf16.names == ("bfloat16", "float32")
    emulated = probe((0.043, 0.086), (0.090, 0.200), (0.060, 0.120))       # bfloat16 and int8 both slower
    assert resolve_precision("auto", "auto", CPU, emulated).names == ("float32", "float32")
    tie = probe((0.043, 0.086), (0.090, 0.200), (0.037, 0.078))           # 4% faster, within FASTER_BY: noise
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):                    # whatever the timings, the pick is never estimated slower than float32
        one, ten = (0.01 + 0.1 * torch.rand(2, 3, generator=generator)).tolist()
        measured = probe(*zip(one, ten))
        picked = resolve_precision("auto", "auto", CPU, measured).names[0]
        assert measured.simulation_seconds(picked) <= measured.simulation_seconds("float32")
    assert resolve_precision("auto", "auto", CPU, tie).names == ("float32", "float32")
    assert resolve_precision("bfloat16", "auto", CPU).names == ("bfloat16", "float32")
    assert resolve_precision("int8", "auto", CPU).names == ("int8", "float32")
    assert resolve_precision("auto", "bfloat16", CPU, emulated).names == ("float32", "bfloat16")
    assert resolve_precision("float32", "auto", CPU).names == ("float32", "float32")


def test_auto_reads_the_stored_probe_without_timing_anything(real_model, tmp_path, monkeypatch):
    from rain.backends import precision
    from rain.backends.calibration import model_fingerprint

    model = real_model[0]
    stored = probe((0.043, 0.086), (0.026, 0.028), (0.015, 0.030))
    path = tmp_path / "precision_probes" / f"{precision.probe_key(model_fingerprint(model))}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(dataclasses.asdict(stored)))
    monkeypatch.setattr(precision, "measure", lambda model: pytest.fail("the stored probe was measured again"))
    assert precision.stored_probe(model, tmp_path) == stored
    assert resolve_precision("auto", "auto", CPU, precision.stored_probe(model, tmp_path)).names == ("int8", "float32")
    path.write_text(json.dumps({**dataclasses.asdict(stored), "judge_seconds": -1.0}))    # invalid: measured anew
    monkeypatch.setattr(precision, "measure", lambda model: stored)
    assert precision.stored_probe(model, tmp_path) == stored
    assert json.loads(path.read_text())["judge_seconds"] == 0.2


def test_int8_linear_multiplies_by_its_dequantised_weight():
    torch.manual_seed(0)
    linear = torch.nn.Linear(10, 6)
    layer = Int8Linear(linear)
    weight = linear.weight.detach()
    scale = weight.abs().amax(dim=1) / 127
    assert layer.weight_int8.dtype == torch.int8 and int(layer.weight_int8.abs().max()) == 127
    assert torch.equal(layer.scale, scale)
    assert torch.equal(layer.weight_int8, torch.round(weight / scale[:, None]).to(torch.int8))
    assert ((layer.dequantized() - weight).abs() <= scale[:, None] / 2 + 1e-7).all()    # rounding: half a step
    inputs = torch.randn(3, 4, 10)
    expected = inputs @ layer.dequantized().T + linear.bias.detach()
    assert torch.allclose(layer(inputs), expected, atol=1e-5) and layer(inputs).shape == (3, 4, 6)
    # against the float32 layer, the stated tolerance: each weight is off by at most half its row's step, so
    # output j is off by at most scale_j / 2 * sum_k |x_k| (plus float32 rounding)
    bound = scale[None, None, :] / 2 * inputs.abs().sum(-1, keepdim=True) + 1e-5
    assert ((layer(inputs) - linear(inputs).detach()).abs() <= bound).all()


def test_quantize_int8_replaces_every_linear_of_a_copy(tiny_llama):
    quantized = quantize_int8(tiny_llama)
    assert is_int8(quantized) and not is_int8(tiny_llama)
    assert not any(isinstance(m, torch.nn.Linear) for m in quantized.modules())
    assert isinstance(quantized.get_output_embeddings(), Int8Linear)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        full, small = tiny_llama(ids).logits, quantized(ids).logits
    assert (full.argmax(-1) == small.argmax(-1)).float().mean() > 0.7 and (full - small).abs().max() < 0.1 * full.abs().max()


def test_auto_on_a_gpu_is_bfloat16_for_both(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "auto", torch.device("cuda")).names == ("bfloat16", "bfloat16")


def test_a_big_model_shares_its_weights_with_the_judge_unless_asked():
    auto = resolve_precision("auto", "auto", CPU, probe((0.043, 0.086), (0.026, 0.028), (0.030, 0.060)))
    assert auto.sharing_judge(135_000_000) is auto
    shared = auto.sharing_judge(JUDGE_COPY_MAX_PARAMETERS + 1)
    assert shared.names == ("bfloat16", "bfloat16") and "--judge-dtype" in shared.reason
    asked = resolve_precision("bfloat16", "float32", CPU)
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


@pytest.mark.slow
def test_int8_generation_with_a_float32_judge(real_model):
    from rain.backends.torch_runtime import Runtime

    fast = Runtime(None, device="cpu", dtype="int8", judge_dtype="auto", loaded=real_model)
    assert is_int8(fast.model) and fast.judge_model is real_model[0] and not is_int8(real_model[0])
    tree = short_tree(fast)
    assert (tree["model"]["dtype"], tree["model"]["judge_dtype"]) == ("int8", "float32")
    assert tree["stats"]["simulations"] == 12 and tree["stats"]["recompute_ratio"] == 1.0


@pytest.mark.slow
def test_the_paper_line_reports_rain_over_float32_cached_vanilla(real_model, monkeypatch, capsys):
    from types import SimpleNamespace

    from rain.backends import precision
    from rain.tools import bench

    monkeypatch.setattr(bench, "judge_check", lambda *args: [SimpleNamespace(accuracy=0.5)])
    monkeypatch.setattr(precision, "measure", lambda model: probe((0.043, 0.086), (0.026, 0.028), (0.015, 0.030)))
    monkeypatch.setattr(bench, "AGREEMENT_PROMPTS", 1)
    monkeypatch.setattr(bench, "AGREEMENT_TOKENS", 3)
    vanilla, float32_models = bench.run_vanilla, []

    def timed(runtime, question, config, tokens, cached, prompt_format, model=None):
        row = vanilla(runtime, question, config, tokens, cached, prompt_format, model)
        if model is not None:                                  # the float32 cached row: a known time
            float32_models.append(model)
            row.seconds = 0.25
        return row

    monkeypatch.setattr(bench, "run_vanilla", timed)
    args = SimpleNamespace(paper=True, dtype="int8", judge_dtype="auto", device="cpu", model=None,
                           knob=["max_new_tokens=4"])
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    line = next(text for text in out.splitlines() if text.startswith("paper: "))
    fields = dict(field.split("=") for field in line.split()[1:])
    assert fields["mode"] == "int8/float32" and fields["judge_accuracy"] == "0.50"
    assert float(fields["over_vanilla_cached"]) == pytest.approx(float(fields["rain_seconds"]) / 0.25, abs=0.21)
    assert len(float32_models) == 1 and float32_models[0].dtype == torch.float32 and not is_int8(float32_models[0])
    assert "vanilla with a KV cache 0.2 s in float32" in out and out.startswith("cpu: ")
