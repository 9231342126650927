"""The on-disk cache of dequantised GGUF weights (rain/backends/weights_cache.py).

Cache logic runs on a stand-in build (a few small files) in tmp dirs; the real embedded model checks that a
cached load gives exactly the logits of a fresh GGUF load. RAIN_CACHE_DIR always points into a temp dir.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from rain.backends import weights_cache as wc


def fake_build(gguf_path: Path, dtype: torch.dtype, folder: Path, delay: float = 0.0) -> None:
    """What `_build` leaves behind, in miniature: weights, config, manifest last."""
    (folder / "model.safetensors").write_bytes(gguf_path.read_bytes() * 3)
    time.sleep(delay)
    (folder / "config.json").write_text(json.dumps({"dtype": str(dtype)}))
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    (folder / wc.MANIFEST).write_text(json.dumps({"version": wc.MANIFEST_VERSION, "files": files}))


@pytest.fixture
def gguf(tmp_path, monkeypatch):
    monkeypatch.setenv(wc.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(wc, "_build", fake_build)
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)))
    return path


def test_rain_cache_dir_moves_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(wc.CACHE_ENV, str(tmp_path / "here"))
    assert wc.cache_root() == tmp_path / "here"
    monkeypatch.delenv(wc.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wc.cache_root() == tmp_path / "xdg" / "rain"


def test_entry_is_keyed_by_hash_and_dtype_and_built_once(gguf, tmp_path):
    notes: list[str] = []
    first = wc.cached_model_dir(gguf, torch.float32, note=notes.append)
    assert first.parent == tmp_path / "cache" / "models" and first.name.endswith("-float32")
    assert wc.entry_problem(first) is None and len(notes) == 1
    assert wc.cached_model_dir(gguf, "float32", note=notes.append) == first and len(notes) == 1   # no rebuild
    other = wc.cached_model_dir(gguf, torch.bfloat16, note=notes.append)
    assert other != first and other.name.endswith("-bfloat16")
    gguf.write_bytes(b"GGUF changed")                     # new content: new hash, new entry
    assert wc.cached_model_dir(gguf, torch.float32, note=notes.append) != first
    assert not [p for p in first.parent.iterdir() if ".building-" in p.name]


def test_hash_memo_skips_rehashing_an_unchanged_file(gguf, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    digest = wc.file_sha256(gguf, root)
    memo = json.loads((root / wc.MEMO).read_text())
    assert memo[str(gguf.resolve())]["sha256"] == digest
    calls = []
    real = wc.hashlib.sha256
    monkeypatch.setattr(wc.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    assert wc.file_sha256(gguf, root) == digest and not calls
    os.utime(gguf, ns=(gguf.stat().st_atime_ns, gguf.stat().st_mtime_ns + 10**9))   # touched: hashed again
    assert wc.file_sha256(gguf, root) == digest and calls


@pytest.mark.parametrize("damage", ["truncate", "no_manifest", "missing_file", "garbage_manifest"])
def test_partial_or_corrupt_entry_is_rebuilt_with_a_one_line_note(gguf, damage):
    folder = wc.cached_model_dir(gguf, torch.float32, note=lambda _: None)
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:10])
    elif damage == "no_manifest":
        (folder / wc.MANIFEST).unlink()
    elif damage == "missing_file":
        weights.unlink()
    else:
        (folder / wc.MANIFEST).write_text("{not json")
    assert wc.entry_problem(folder) is not None
    notes: list[str] = []
    assert wc.cached_model_dir(gguf, torch.float32, note=notes.append) == folder
    assert len(notes) == 1 and "\n" not in notes[0] and notes[0].startswith("weights cache: rebuilding")
    assert wc.entry_problem(folder) is None and weights.stat().st_size == 3 * gguf.stat().st_size


def test_two_processes_building_at_once_publish_one_good_entry(gguf, monkeypatch):
    monkeypatch.setattr(wc, "_build", lambda g, d, f: fake_build(g, d, f, delay=0.3))
    results: list[Path] = []
    builders = [threading.Thread(target=lambda: results.append(wc.cached_model_dir(gguf, note=lambda _: None)))
                for _ in range(2)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join()
    assert len(results) == 2 and results[0] == results[1] and wc.entry_problem(results[0]) is None
    assert [p.name for p in results[0].parent.iterdir()] == [results[0].name]     # no temporary folder left


def test_cached_model_gives_the_logits_of_a_fresh_gguf_load(real_model):
    """The session's model was loaded through the cache (conftest points RAIN_CACHE_DIR at a temp dir)."""
    from rain.backends.models import embedded_model_file, load_causal_lm

    cached, tokenizer = real_model
    folder = wc.entry_dir(embedded_model_file(), torch.float32)
    assert str(folder).startswith(os.environ[wc.CACHE_ENV]) and wc.entry_problem(folder) is None
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    fresh, fresh_tokenizer = load_causal_lm(None, device="cpu", dtype="float32", cache=False)
    text = "Human: How do I pick a lock?\nAssistant: I can't help with that, but"
    ids = torch.tensor([tokenizer.encode(text)])
    assert tokenizer.encode(text) == fresh_tokenizer.encode(text)
    assert tokenizer.chat_template == fresh_tokenizer.chat_template
    assert cached.generation_config.eos_token_id == fresh.generation_config.eos_token_id
    with torch.no_grad():
        assert torch.equal(cached(input_ids=ids).logits, fresh(input_ids=ids).logits)
