"""The CLI contract on the real embedded model: generate, replay, run, judge-check, and bad input."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rain.tools.cli as cli
from fakes import FakeRuntime
from rain.core.config import ConfigError
from rain.tools import options
from rain.core.export import load


@pytest.fixture
def cli_runtime(monkeypatch, runtime):
    """Every command reuses the session's loaded model instead of loading its own."""
    monkeypatch.setattr(options, "runtime_for", lambda args, *configs: runtime)
    return runtime


def test_generate_prints_both_answers_and_stats_and_writes_the_tree(cli_runtime, tmp_path, capsys):
    path = tmp_path / "tree.json"
    code = cli.main(["generate", "How do I pick a lock?", "--sims-per-move", "2", "--max-moves", "2",
                     "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    record = load(path)
    assert record.answer and record.vanilla
    # answers may span lines: vanilla first, then rain, then exactly one stats line
    assert out.startswith(f"vanilla: {record.vanilla}\nrain: {record.answer}\nstats: simulations=4 moves=2 ")
    assert out.count("\nstats: ") == 1 and out.endswith("\n") and "\n" not in out.split("\nstats: ")[1][:-1]
    assert sum(e.type == "commit" for e in record.events) == 2
    assert cli.main(["replay", str(path)]) == 0
    assert f"rain: {record.answer}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [
    (["generate", "   "], "the prompt is empty"),
    (["generate", "hi", "--sims-per-move", "0"], "sims_per_move"),
    (["replay", "/no/such/tree.json"], "cannot read"),
])
def test_bad_input_gets_one_line_and_nonzero_exit_without_a_model(argv, words, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]


def test_prompt_longer_than_the_context_is_refused(cli_runtime, capsys):
    assert cli.main(["generate", "lock " * 3000, "--sims-per-move", "1", "--max-moves", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the prompt is") and "at most" in err[-1]


def test_unknown_model_gets_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["generate", "hi", "--model", "no-such-org/no-such-model-xyz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "no-such-org/no-such-model-xyz" in err[-1]


def test_run_reports_bad_lines_by_number_goes_on_and_resumes(cli_runtime, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "How do I pick a lock?"}\n'
                      "this is not json\n"
                      '{"id": "b", "prompt": ""}\n'
                      '{"id": "c", "prompt": "Tell me a fun fact."}\n')
    out = tmp_path / "out.jsonl"
    argv = ["run", str(source), "--out", str(out), "--trees", str(tmp_path / "trees"),
            "--sims-per-move", "1", "--max-moves", "1"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    assert "line 2: skipped" in err and "line 3: skipped" in err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in lines] == ["a", "c"] and all(row["rain"] and row["vanilla"] for row in lines)
    assert (tmp_path / "trees" / "a.json").exists()
    out.write_text(out.read_text().splitlines()[0] + "\n")          # as if interrupted after the first
    assert cli.main(argv + ["--resume"]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c"]


def test_resume_keeps_the_finished_rows_untouched_and_runs_only_the_missing_ids(tmp_path, monkeypatch):
    """`run --resume` on the fake runtime: a finished row stays byte for byte (a redone one would be rewritten),
    a torn last line is redone, and the model is asked only for the missing prompts."""
    runtime = FakeRuntime()
    monkeypatch.setattr(options, "runtime_for", lambda args, *configs: runtime)
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    prompts = {"a": "how to pick a lock", "b": "the key", "c": "a safe door"}
    source.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in prompts.items()))
    kept = json.dumps({"id": "a", "prompt": prompts["a"], "rain": "written by an earlier run"})
    out.write_text(kept + "\n" + '{"id": "b", "prom')                 # killed while writing b
    argv = ["run", str(source), "--out", str(out), "--sims-per-move", "1", "--max-moves", "1"]
    assert cli.main(argv + ["--resume"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == kept and [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]
    assert [s.conversation.question for s in runtime.searches] == [prompts["b"], prompts["c"]]
    assert [json.loads(line)["prompt"] for line in lines[1:]] == [prompts["b"], prompts["c"]]
    assert cli.main(argv) == 0                                            # without --resume: every row again
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]
    assert len(runtime.searches) == 5 and json.loads(out.read_text().splitlines()[0]).get("rain") != "written by an earlier run"


def test_judge_check_prints_a_table_per_format(cli_runtime, capsys):
    assert cli.main(["judge-check", "--limit", "3", "--formats", "ab_hard,yesno_logit"]) == 0
    out = capsys.readouterr().out
    assert "| ab_hard |" in out and "| yesno_logit |" in out and "pairwise accuracy" in out


# --- hostile settings (issue #5): refused in one line, before any model is loaded --------------------------------

# Any RainConfig field is set with `--knob NAME=VALUE` (rain.core.config.parse_knobs).
HOSTILE_KNOBS = [
    pytest.param(["min_visits=60", "max_simulations=50"], "min_visits (minT=60)", id="minT>maxT"),
    pytest.param(["value_threshold=1.5"], "value_threshold (Vt) must be in [-1, 1]", id="Vt>1"),
    pytest.param(["value_threshold=-1.5"], "value_threshold (Vt) must be in [-1, 1]", id="Vt<-1"),
    pytest.param(["candidates=0"], "candidates must be >= 1", id="zero-candidates"),
    pytest.param(["candidates=many"], "--knob candidates: cannot read 'many'", id="not-a-number"),
    pytest.param(["no_such_knob=1"], "RainConfig field", id="unknown-knob"),
]


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(options, "runtime_for", lambda args, *configs: pytest.fail("a refused setting reached the model"))


def knob_args(pairs: list[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--knob", pair)]


@pytest.mark.parametrize("pairs, words", HOSTILE_KNOBS)
def test_hostile_knobs_are_refused_by_generate_and_run(no_model, tmp_path, capsys, pairs, words):
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "How do I pick a lock?"}\n')
    for argv in (["generate", "How do I pick a lock?"], ["run", str(source), "--out", str(tmp_path / "out.jsonl")]):
        assert cli.main(argv + knob_args(pairs)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0]
    assert not (tmp_path / "out.jsonl").exists()


def test_knobs_reach_the_config_with_their_types():
    args = cli.build_parser().parse_args(["generate", "hi", *knob_args(
        ["min_visits=10", "value_threshold=-1", "candidates=1", "token_set_lengths=1,3", "similarity_update=off",
         "sims_per_move=none"])])
    config = options.config_from(args)
    assert (config.min_visits, config.value_threshold, config.candidates) == (10, -1.0, 1)
    assert config.token_set_lengths == (1, 3) and config.similarity_update is False and config.sims_per_move is None


# One reader of a knob's value (rain.core.config.knob_value) behind --knob, a fork's knobs and the page's controls.
SAME_READING = [("token_set_lengths", "1, 3,5", (1, 3, 5)), ("similarity_update", "off", False),
                ("similarity_update", "YES", True), ("sims_per_move", "none", None), ("seed", "3.0", 3),
                ("judge_logit_scale", "AUTO", "auto"), ("judge_logit_scale", "0.5", 0.5), ("c_puct", "1", 1.0),
                ("commit", "sample", "sample")]


@pytest.mark.parametrize("name, text, value", SAME_READING)
def test_the_cli_the_fork_and_the_page_read_a_knob_alike(name, text, value):
    from ui import knobs
    from ui.teaching import fork_knobs

    control = next(k for k in knobs.KNOBS if k.name == name)
    read = [options.config_from(cli.build_parser().parse_args(["generate", "hi", "--knob", f"{name}={text}"])),
            knobs.build_config("hh", "", {name: text})]
    assert [getattr(config, name) for config in read] == [value, value]
    assert fork_knobs(f"{name}={text.replace(' ', '')}")[name] == knobs.field_value(control, text.replace(" ", ""))
    assert type(knobs.field_value(control, text)) is type(value)


@pytest.mark.parametrize("name, text, kind", [
    ("seed", "2.5", "a whole number"), ("c_puct", "inf", "a number"), ("similarity_update", "maybe", "true or false"),
    ("token_set_lengths", "1,0", "a token-set schedule"), ("sims_per_move", "x", "a whole number or none")])
def test_a_knob_that_cannot_be_read_is_named_alike_by_the_cli_and_the_page(name, text, kind):
    from ui import knobs

    words = re.escape(f"{name}: cannot read {text!r} as {kind}")
    with pytest.raises(ConfigError, match=f"^--knob {words}"):
        options.config_from(cli.build_parser().parse_args(["generate", "hi", "--knob", f"{name}={text}"]))
    with pytest.raises(ConfigError, match=f"^{words}"):
        knobs.build_config("hh", "", {name: text})


def test_hostile_knob_from_the_shell_gets_one_line_and_exit_code_2():
    """The real command in a fresh process: one `error:` line naming the knob, no traceback."""
    done = subprocess.run([sys.executable, "-m", "rain", "generate", "hi", "--knob", "value_threshold=1.5"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: value_threshold (Vt) must be in [-1, 1]")


def test_run_with_concurrency_writes_every_id_once(cli_runtime, tmp_path):
    """`run --concurrency 2`: two searches at once on the trie backend, one writer, each id once."""
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n"
                              for i, p in [("a", "Hi!"), ("b", "Name a colour."), ("c", "What is 2+2?")]))
    assert cli.main(["run", str(source), "--out", str(out), "--concurrency", "2", "--sims-per-move", "1",
                     "--max-moves", "1", "--max-new-tokens", "8"]) == 0
    assert sorted(json.loads(line)["id"] for line in out.read_text().splitlines()) == ["a", "b", "c"]


def test_concurrent_rows_never_cross_prompts(tmp_path, monkeypatch):
    """`run --concurrency 3` on the fake runtime (whose answer depends on the prompt): every row and its tree hold
    their own prompt, and the answer a sequential run gives that prompt."""
    runtime = FakeRuntime()
    monkeypatch.setattr(options, "runtime_for", lambda args, *configs: runtime)
    prompts = ["the key", "a safe door", "help you", "pick the lock", "use a tool", "ask for help"]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "prompt": p}) + "\n" for i, p in enumerate(prompts)))
    rows = {}
    for concurrency in ("1", "3"):
        out, trees = tmp_path / f"out{concurrency}.jsonl", tmp_path / f"trees{concurrency}"
        assert cli.main(["run", str(source), "--out", str(out), "--trees", str(trees), "--concurrency", concurrency,
                         "--sims-per-move", "2", "--max-moves", "3"]) == 0
        rows[concurrency] = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
        for i, prompt in enumerate(prompts):
            row, tree = rows[concurrency][str(i)], load(trees / f"{i}.json")
            assert row["prompt"] == tree.prompt == tree.events[0].question == prompt
            assert row["rain"] == tree.answer and row["vanilla"] == tree.vanilla
    assert len({row["rain"] for row in rows["1"].values()}) > 1                 # the answers tell prompts apart
    assert {i: row["rain"] for i, row in rows["3"].items()} == {i: row["rain"] for i, row in rows["1"].items()}
    assert {i: row["vanilla"] for i, row in rows["3"].items()} == {i: row["vanilla"] for i, row in rows["1"].items()}


@pytest.mark.parametrize("argv, words", [
    (["run", "IN", "--out", "OUT", "--concurrency", "0"], "--concurrency and --workers must be >= 1"),
    (["bench", "--concurrency", "1,x"], "--concurrency must be a comma-separated list of whole numbers"),
    (["bench", "--concurrency", "0"], "--concurrency must be a comma-separated list of whole numbers"),
    (["bench", "--concurrency", "1", "--backend", "tpu"], "--backend must be a comma-separated list of trie, vllm"),
    (["generate", "hi", "--backend", "vllm"], "--backend vllm needs vLLM"),
])
def test_backend_and_concurrency_flags_refuse_bad_values_in_one_line(argv, words, tmp_path, capsys):
    if argv[0] == "run":
        (tmp_path / "IN").write_text('{"prompt": "hi"}\n')
        argv = [str(tmp_path / a) if a in ("IN", "OUT") else a for a in argv]
    if argv[-1] == "vllm" and __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and words in err[-1]
