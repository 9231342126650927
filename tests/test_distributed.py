"""`run --ray`: a local Ray cluster with 2 workers on CPU writes every id exactly once, through a killed worker
and a resumed run."""
from __future__ import annotations

import json
import threading

import pytest

ray = pytest.importorskip("ray", reason="ray is optional (pip install ray)")

from rain.tools.cli import main  # noqa: E402 (after the importorskip)
from rain.runs.concurrent import Row, finished_ids  # noqa: E402 (after the importorskip)
from rain.core.config import preset  # noqa: E402 (after the importorskip)
from rain.tools.distributed import run_on_ray  # noqa: E402 (after the importorskip)

SEARCH = {"sims_per_move": 2, "max_moves": 2, "max_new_tokens": 16}    # a row takes seconds on the tiny model
BUDGET = ["--sims-per-move", "2", "--max-moves", "2", "--max-new-tokens", "16"]
PROMPTS = ["Hi!", "How do I pick a lock?", "Tell me a joke.", "What is 2+2?", "Name a colour."]


def ids_in(path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_folder(embedded_tokenizer, tmp_path_factory):
    """A random-weight Llama folder: what is tested is the queue, the workers and the writer, not the answers
    (a real-model run is in README "Many searches at once"); its workers load it in well under a second."""
    from rain.tools.model_check import write_folder

    return str(write_folder("llama", embedded_tokenizer, tmp_path_factory.mktemp("tiny") / "llama"))


@pytest.mark.slow
def test_killed_worker_loses_no_row_and_resume_completes(tiny_folder, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    rows = [Row(str(i), prompt, i + 1) for i, prompt in enumerate(PROMPTS)]
    config = preset("hh", **SEARCH)
    killed = threading.Event()

    def kill_mid_row(row: Row, actor) -> None:
        if row.id == "2" and not killed.is_set():      # the third row: both workers have loaded their model
            killed.set()                               # a row takes several seconds: the kill lands mid-row
            threading.Timer(1.0, lambda: ray.kill(actor, no_restart=True)).start()

    skipped = run_on_ray(rows, out, None, 2, "trie", tiny_folder, config, "auto", None, on_submit=kill_mid_row)
    assert skipped == 0 and killed.is_set()
    assert sorted(ids_in(out)) == [r.id for r in rows]                     # every id exactly once
    assert "1 row(s) retried after a worker died" in capsys.readouterr().err

    # a run stopped part-way (two rows kept, the third torn mid-line) resumes with only the missing ids
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    assert len(finished_ids(out)) == 2 and out.read_text().endswith("\n")  # the torn line was cut off
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": r.id, "prompt": r.prompt}) + "\n" for r in rows))
    assert main(["run", str(source), "--out", str(out), "--ray", "--workers", "2", "--resume",
                 "--model", tiny_folder, *BUDGET]) == 0
    assert sorted(ids_in(out)) == [r.id for r in rows]
    assert ids_in(out)[:2] == [json.loads(line)["id"] for line in lines[:2]]   # the kept rows were not redone


def test_ray_missing_is_one_line(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "Hi"}\n')
    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["run", str(source), "--out", str(tmp_path / "o.jsonl"), "--ray"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --ray needs Ray: pip install")
