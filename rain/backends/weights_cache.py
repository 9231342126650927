"""An on-disk cache of dequantised GGUF weights, so a model loads in seconds after its first start.

Loading a GGUF file through transformers parses and dequantises it every time (~20 s for the embedded 135M model
on 2 cores). `cached_model_dir` does that once per (file, dtype) and keeps the result as a plain Hugging Face
folder (safetensors weights, config.json without `quantization_config`, generation config, tokenizer), which
`from_pretrained(folder)` loads in about a second and which other backends that refuse GGUF (vLLM) can read.

Layout under the cache root (`$RAIN_CACHE_DIR`, else `$XDG_CACHE_HOME/rain`, else `~/.cache/rain`):
- `models/<file stem>-<sha256[:16]>-<dtype>/`: one entry; `manifest.json` (every file's size) is written last,
  so an entry without it, or whose files do not match it, is partial or corrupt and gets rebuilt.
- `hashes.json`: a memo (absolute path, size, mtime_ns) -> sha256, so the ~100 MB file is hashed once rather
  than on every start (0.2 s each time on these machines); a file that changes size or mtime is hashed again.
Entries are built in a temporary folder next to the final one and published with one `os.rename`, so two
processes may build the same entry at once: the first rename wins and the other discards its copy.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

CACHE_ENV = "RAIN_CACHE_DIR"
MANIFEST = "manifest.json"
MEMO = "hashes.json"
MANIFEST_VERSION = 1


def cache_root() -> Path:
    """`$RAIN_CACHE_DIR`, else the XDG cache folder's `rain/`."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rain"


def note_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def file_sha256(path: Path, root: Path) -> str:
    """sha256 of `path`, memoised in `root/hashes.json` by (absolute path, size, mtime_ns)."""
    stat = path.stat()
    key = str(path.resolve())
    memo_path = root / MEMO
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    write_atomic(memo_path, json.dumps(memo, indent=1))
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def entry_problem(folder: Path) -> str | None:
    """Why `folder` is not a complete cache entry (None when it is): no manifest, or a file missing or resized."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("version") != MANIFEST_VERSION or not isinstance(files, dict) or not files:
            return "its manifest is unreadable"
    except (OSError, ValueError, KeyError, TypeError):
        return "it has no readable manifest (an interrupted build?)"
    for name, size in files.items():
        try:
            actual = (folder / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} has {actual} bytes, the manifest says {size}"
    return None


def _dtype_name(dtype: torch.dtype | str) -> str:
    return dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")


def entry_dir(gguf_path: Path, dtype: torch.dtype | str, root: Path | None = None) -> Path:
    """Where the entry of (`gguf_path`, `dtype`) lives (it may not exist yet)."""
    root = root or cache_root()
    digest = file_sha256(gguf_path, root)
    return root / "models" / f"{gguf_path.stem}-{digest[:16]}-{_dtype_name(dtype)}"


def _build(gguf_path: Path, dtype: torch.dtype, folder: Path) -> None:
    """Dequantise `gguf_path` and write a plain HF folder into `folder` (FIELD-NOTES: vLLM on CPU).

    A model loaded from GGUF refuses `save_pretrained`, so its weights go into a fresh model built from its
    config; `quantization_config` is dropped so loaders treat the folder as ordinary weights.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=dtype)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config_path = folder / "config.json"
    data = json.loads(config_path.read_text(encoding="utf-8"))
    data.pop("quantization_config", None)
    config_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    write_atomic(folder / MANIFEST, json.dumps({"version": MANIFEST_VERSION, "source": str(gguf_path),
                                                 "dtype": _dtype_name(dtype), "files": files}, indent=1))


def cached_model_dir(gguf_path: str | Path, dtype: torch.dtype | str = torch.float32, root: Path | None = None,
                     note: Callable[[str], None] = note_stderr) -> Path:
    """A plain Hugging Face folder holding `gguf_path` dequantised to `dtype`, built on first use.

    Safe with several processes: each builds into its own temporary folder and publishes it with `os.rename`.
    A partial or corrupt entry is rebuilt after a one-line `note`.
    """
    gguf_path = Path(gguf_path).expanduser()
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    folder = entry_dir(gguf_path, torch_dtype, root)
    if folder.exists():
        problem = entry_problem(folder)
        if problem is None:
            return folder
        note(f"weights cache: rebuilding {folder.name}: {problem}")
    else:
        note(f"weights cache: dequantising {gguf_path.name} to {_dtype_name(torch_dtype)} once, into {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.building-"))
    try:
        _build(gguf_path, torch_dtype, building)
        os.chmod(building, 0o755)                                     # mkdtemp makes it private
        if folder.exists() and entry_problem(folder) is not None:      # move the broken entry out of the way
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(building, folder)
        except OSError:
            if entry_problem(folder) is not None:                      # nobody else published a good one
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder
