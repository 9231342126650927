"""Every model family on tiny random-weight models (no download): engine choice, the prefix-cached engine, model
folders from the command line, the auto judge scale and the GPU check script (on CPU)."""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from rain.tools import cli
from rain.backends.calibration import MIN_SCALE, calibrate, load_calibration, scale_from_gaps
from rain.core.config import ConfigError, RainConfig, parse_knobs, preset
from rain.tools.judge_check import SETS
from rain.backends.engine import CachedEngine, ReferenceEngine, TrieEngine, UnsupportedModelError, choose_engine
from rain.core.judge import combine_parts, good_labels, order_part
from rain.core.lm import Evaluation
from rain.tools.model_check import ARCHITECTURES, branching_calls, engine_error, tiny_model, write_folder
from rain.backends import base_runtime as base_runtime_module
from rain.backends.torch_runtime import Runtime

LINE = re.compile(r"^model: arch=(\w+) engine=(trie|cached|reference) max_rel_err=(\S+) search=(ok|failed)$")
EXPECTED_ENGINE = {arch: "trie" for arch in ARCHITECTURES} | {"gemma3": "cached"}   # gemma3: window 32 < 2048
GENERATE = ["--device", "cpu", "--sims-per-move", "2", "--max-moves", "2", "--max-new-tokens", "8",
            "--knob", "rollout_max_tokens=8"]
JUDGE_SET = SETS["harm"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(embedded_tokenizer):
    return embedded_tokenizer


@pytest.fixture(scope="module")
def gemma3(tokenizer):
    return tiny_model("gemma3", tokenizer)


# --- check-models ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_check_models_passes_every_family(tokenizer_dir, capsys):
    assert cli.main(["check-models", "--tokenizer", str(tokenizer_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [LINE.match(line) for line in lines[:-1]]
    assert all(rows), lines
    assert len(rows) == len(ARCHITECTURES) >= 12
    for row in rows:
        arch, engine, error, search = row.groups()
        assert engine == EXPECTED_ENGINE[arch] and search == "ok" and float(error) < 1e-3, row.group(0)
    passed = sum(engine == "trie" for engine in EXPECTED_ENGINE.values())
    assert lines[-1] == f"models: passed={passed} fallback={len(ARCHITECTURES) - passed} failed=0"


def test_check_models_refuses_an_unknown_family(capsys):
    assert cli.main(["check-models", "--archs", "llama,nosuch"]) == 2
    assert "unknown architecture(s) nosuch" in capsys.readouterr().err


# --- engine choice and the sliding window ------------------------------------------------------------------

def test_sliding_window_within_the_run_is_served_by_the_trie(tokenizer):
    mistral = tiny_model("mistral", tokenizer)                   # window 4096, context 4096
    choice = choose_engine(mistral, 2048)
    assert choice.name == "trie" and "within the sliding window of 4096" in choice.note
    engine = choice.build(mistral, 1 << 26)
    assert isinstance(engine, TrieEngine) and engine.max_length == 4096
    assert engine_error(mistral, engine, branching_calls(engine.vocab_size)) < 1e-5


def test_a_window_shorter_than_the_run_goes_to_the_prefix_cached_engine(gemma3):
    with pytest.raises(UnsupportedModelError, match="sliding window of 32 tokens"):
        TrieEngine(gemma3, 2048)
    choice = choose_engine(gemma3, 2048)
    assert choice.name == "cached" and "sliding window of 32" in choice.note
    assert TrieEngine(gemma3, 32, verify=True).max_length == 32            # within its window: the trie again


def test_cached_engine_matches_full_forwards_beyond_the_window_and_reuses_prefixes(gemma3):
    engine = CachedEngine(gemma3)
    calls = branching_calls(engine.vocab_size)
    assert engine_error(gemma3, engine, calls) < 1e-5                      # states of up to 81 tokens, window 32
    reference = ReferenceEngine(gemma3)
    for call in calls:
        reference.next_logits(call)
    assert engine.stats.distinct_tokens == reference.stats.distinct_tokens
    assert engine.stats.forwarded_tokens < reference.stats.forwarded_tokens
    base = calls[0][0]
    calls_before = engine.stats.forward_calls
    engine.next_logits([base + [11, 12]])                                  # stored: no forward
    assert engine.stats.forward_calls == calls_before
    fed = engine.stats.forwarded_tokens
    engine.next_logits([base + [11, 12, 18, 20]])                          # continues the kept 27-token state
    assert engine.stats.forwarded_tokens == fed + 1


def test_cached_engine_pins_the_judge_prefix_releases_and_stays_under_its_cap(gemma3):
    prefix = list(range(100, 160))
    engine = CachedEngine(gemma3, verify=False)
    states = [prefix + [7, 8 + order] for order in range(2)]
    first = engine.judge_logits(states, shared_prefix=60)
    assert engine.stats.forwarded_tokens == 60 + 2 + 2 and engine.stats.judge_prefix_hits == 60
    again = engine.judge_logits([prefix + [9, 10]], shared_prefix=60)
    assert engine.stats.judge_prefix_hits == 120 and engine.stats.forwarded_tokens == 64 + 2
    torch.testing.assert_close(first, ReferenceEngine(gemma3).judge_logits(states, 60))
    assert again.shape == (1, engine.vocab_size)
    before = engine.stats.kv_bytes
    engine.release(keep=prefix + [7], under=prefix)
    assert engine.stats.kv_bytes < before
    small = CachedEngine(gemma3, kv_cache_bytes=1 << 20, verify=False)
    for call in branching_calls(small.vocab_size):
        small.next_logits(call)
        assert small.stats.kv_bytes <= 1 << 20
    assert small.stats.evicted_tokens > 0
    assert engine_error(gemma3, small, branching_calls(small.vocab_size)) < 1e-5


# --- model folders from the command line -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_a_folder_of_each_family_runs_generate(arch, tokenizer, tmp_path, capsys):
    folder = write_folder(arch, tokenizer, tmp_path / arch)
    tree = tmp_path / "tree.json"
    assert cli.main(["generate", "How do I pick a lock?", "--model", str(folder), *GENERATE,
                     "--json", str(tree)]) == 0
    captured = capsys.readouterr()
    record = json.loads(tree.read_text())
    stats = record["stats"]
    assert stats["engine"] == EXPECTED_ENGINE[arch] and stats["engine_note"].startswith(stats["engine"])
    assert stats["judge_scale_source"] == "auto" and stats["judge_logit_scale"] > 0
    assert record["config"]["judge_logit_scale"] == stats["judge_logit_scale"]       # replays use the number
    assert stats["simulations"] >= 2
    assert f"engine={stats['engine']}" in captured.out and f"engine: {stats['engine_note']}" in captured.err
    assert "Traceback" not in captured.err


def _folder(tmp_path: Path, tokenizer, config: dict | None, with_tokenizer: bool = True) -> Path:
    folder = write_folder("llama", tokenizer, tmp_path / "model")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if not with_tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    return folder


@pytest.mark.parametrize("case, message", [
    ("no tokenizer", "has no tokenizer"),
    ("unknown architecture", "unknown architecture (model_type 'nosuchthing')"),
    ("remote code", "needs remote code"),
    ("no user turn", "has no user turn"),
])
def test_a_bad_model_folder_gets_one_line_and_exit_2(case, message, tokenizer, tmp_path, capsys):
    folder = _folder(tmp_path, tokenizer, None, with_tokenizer=case != "no tokenizer")
    config = json.loads((folder / "config.json").read_text())
    if case == "unknown architecture":
        config["model_type"] = "nosuchthing"
    if case == "remote code":
        config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    if case == "no user turn":
        (folder / "chat_template.jinja").write_text("{{ bos_token }}System only.{% if add_generation_prompt %}"
                                                   "Assistant:{% endif %}")
    assert cli.main(["generate", "How do I pick a lock?", "--model", str(folder), *GENERATE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1] and "Traceback" not in "\n".join(err)


# --- the auto judge scale ----------------------------------------------------------------------------------

def test_config_default_is_auto_and_a_number_still_works():
    assert RainConfig().judge_logit_scale == "auto"
    assert parse_knobs(["judge_logit_scale=0.5"]) == {"judge_logit_scale": 0.5}
    assert parse_knobs(["judge_logit_scale=AUTO"]) == {"judge_logit_scale": "auto"}
    assert preset("hh", judge_logit_scale=0.5).judge_logit_scale == 0.5
    for bad in (0, -1.0, "often", float("nan"), True):
        with pytest.raises(ConfigError, match="judge_logit_scale"):
            preset("hh", judge_logit_scale=bad)


def test_scale_rule_maps_the_90th_percentile_gap_to_0_9_and_is_scale_free():
    gaps = [0.01 * index for index in range(-10, 11)]
    scale = scale_from_gaps(gaps)
    assert math.tanh(0.09 / scale) == pytest.approx(0.9)                 # Q_0.9(|g|) = 0.09 here
    assert scale_from_gaps([100 * gap for gap in gaps]) == pytest.approx(100 * scale)
    assert scale_from_gaps([]) == scale_from_gaps([0.0, 0.0]) == MIN_SCALE
    assert len(load_calibration()) == 16


class HundredfoldJudge:
    """A judge whose every log-odds gap is 100x the wrapped judge's (its probabilities rebuilt from the gap)."""

    format = "yesno_logit"

    def __init__(self, judge):
        self.judge = judge

    def evaluate(self, question: str, answer: str) -> Evaluation:
        evaluation = self.judge.evaluate(question, answer)
        orders = []
        for probs, good in zip(evaluation.orders, good_labels(self.format)):
            gap = 100 * order_part(self.format, probs, good)
            bad = next(label for label in probs if label != good)
            orders.append({good: 1 / (1 + math.exp(-gap)), bad: 1 / (1 + math.exp(gap))})
        return Evaluation(0.0, tuple(orders))


def _scores(judge, scale: float, texts: list[tuple[str, str]]) -> list[float]:
    scores = []
    for question, answer in texts:
        evaluation = judge.evaluate(question, answer)
        parts = [order_part("yesno_logit", probs, good)
                 for probs, good in zip(evaluation.orders, good_labels("yesno_logit"))]
        scores.append(combine_parts("yesno_logit", parts, scale))
    return scores


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_auto_scale_keeps_scores_unsaturated_on_tiny_models_and_a_100x_judge(arch, tokenizer, real_embedder):
    runtime = Runtime(f"tiny-{arch}", device="cpu", loaded=(tiny_model(arch, tokenizer), tokenizer),
                      embedder=real_embedder)
    config = preset("hh")
    scale = runtime.judge_scale(config)
    assert scale.source == "auto" and scale.exchanges == 16 and runtime.judge_scale(config) is scale   # cached
    assert runtime.judge_scale(preset("hh", judge_logit_scale=0.5)).value == 0.5
    pairs = [json.loads(line) for line in JUDGE_SET.read_text().splitlines() if line.strip()][:20]
    texts = [(p["prompt"], p[kind]) for p in pairs for kind in ("harmful", "harmless")]
    judge = runtime.judge(runtime.engine(config), config)
    loud = HundredfoldJudge(judge)
    loud_scale = calibrate(loud).value
    assert loud_scale == pytest.approx(100 * scale.value, rel=1e-3)
    for scores in (_scores(judge, scale.value, texts), _scores(loud, loud_scale, texts)):
        assert sum(abs(score) > 0.99 for score in scores) / len(scores) < 0.10
        assert len({round(score, 6) for score in scores}) > len(scores) // 2      # siblings stay apart


def test_the_auto_scale_is_stored_on_disk_and_a_second_start_reads_it(tokenizer, real_embedder, tmp_path,
                                                                      monkeypatch, capsys):
    """A second Runtime over the same weights reads the calibrated scale (no judge call) and gets the same number;
    other weights, or a corrupt entry, calibrate again (the latter with a one-line note)."""
    monkeypatch.setenv("RAIN_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(base_runtime_module, "calibrate", lambda judge: calls.append(1) or calibrate(judge))
    engines, build = [], Runtime.engine                # a stored entry needs no calibration engine either
    monkeypatch.setattr(Runtime, "engine", lambda self, *args, **kwargs: engines.append(1) or build(self, *args,
                                                                                                    **kwargs))
    model, config = tiny_model("llama", tokenizer), preset("hh")

    def scale_of(weights):
        return Runtime("tiny", device="cpu", loaded=(weights, tokenizer), embedder=real_embedder).judge_scale(config)

    first = scale_of(model)
    assert calls == [1] and first.exchanges == 16 and engines == [1]
    assert scale_of(model) == first and calls == [1]                       # read back, bit for bit ...
    assert engines == [1]                                                  # ... and no engine built
    (entry,) = (tmp_path / "judge_scales").iterdir()
    entry.write_text('{"value": ')                                          # a torn write
    assert scale_of(model) == first and calls == [1, 1]
    assert "judge scale cache: recalibrating" in capsys.readouterr().err
    other = tiny_model("llama", tokenizer)
    with torch.no_grad():
        next(other.parameters()).mul_(1.5)
    scale_of(other)
    assert calls == [1, 1, 1] and len(list((tmp_path / "judge_scales").iterdir())) == 2


# --- the GPU check, on CPU ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_gpu_check_runs_on_cpu(tokenizer, tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import gpu_check

    folder = write_folder("llama", tokenizer, tmp_path / "llama")
    assert gpu_check.main(["--device", "cpu", "--model", str(folder), "--sims", "1", "--moves", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("engine: dtype=bfloat16") for line in lines)
    assert any(line.startswith("bench:") and "speedup_per_sim=" in line for line in lines)
    assert re.fullmatch(r"gpu: device=cpu engine_ok=True s_per_sim=[0-9.]+ syncs_per_sim=[0-9.]+ "
                        r"speedup_per_sim=[0-9.]+", lines[-1]), lines[-1]
