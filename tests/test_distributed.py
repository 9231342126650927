"""`run --ray`: a local Ray cluster with 2 workers on CPU writes every id exactly once, through a killed worker
and a resumed run."""
from __future__ import annotations

import json
import sys

import pytest

from rain.tools.cli import main
from rain.runs.concurrent import Row, finished_ids
from rain.core.config import preset
from rain.tools.distributed import run_on_ray

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
    """The third row's worker is killed as soon as the row is handed to it: whether Ray has started the row yet or
    not, that attempt is lost, so the row must be retried on a new worker (no clock decides what is tested)."""
    ray = pytest.importorskip("ray", reason="ray is optional (pip install ray)")
    out = tmp_path / "out.jsonl"
    rows = [Row(str(i), prompt, i + 1) for i, prompt in enumerate(PROMPTS)]
    config = preset("hh", **SEARCH)
    killed: list[str] = []

    def kill_on_submit(row: Row, actor) -> None:
        if row.id == "2" and not killed:
            killed.append(row.id)
            ray.kill(actor, no_restart=True)

    skipped = run_on_ray(rows, out, None, 2, "trie", tiny_folder, config, "auto", None, on_submit=kill_on_submit)
    assert skipped == 0 and killed == ["2"]
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
    """Runs with or without Ray installed: a None entry in sys.modules makes `import ray` raise ImportError."""
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "prompt": "Hi"}\n')
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["run", str(source), "--out", str(tmp_path / "o.jsonl"), "--ray"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --ray needs Ray: pip install")
