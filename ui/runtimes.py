"""Which models the app may load (the environment's settings) and the cache of loaded Runtimes: the one piece
of module state (models cannot live in gr.State), guarded by a lock."""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Any

from rain.core.errors import RainError
# Imported here, in the importing (main) thread: transformers resolves its classes lazily, and two request
# threads doing that first import at once got "cannot import name 'AutoModelForCausalLM'" (scripts/cancel_cycles.py).
from rain.runs.runtimes import load_runtime
from ui import estimate

log = logging.getLogger("rain.app")

EMBEDDED = "embedded"
EMBEDDED_LABEL = "embedded: SmolLM2-135M-Instruct (CPU, offline)"


# --- settings from the environment ----------------------------------------------------------------------


def space_mode() -> bool:
    return os.environ.get("RAIN_SPACE_MODE", "").strip().lower() in ("1", "true", "yes", "on")


def default_model() -> str:
    return os.environ.get("RAIN_DEFAULT_MODEL", "").strip() or EMBEDDED


def model_allowlist() -> list[str]:
    """Models a Space may load: the embedded one, RAIN_DEFAULT_MODEL and RAIN_MODEL_ALLOWLIST (comma-separated)."""
    names = [EMBEDDED, default_model()]
    names += [n.strip() for n in os.environ.get("RAIN_MODEL_ALLOWLIST", "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def model_choices() -> list[tuple[str, str]]:
    return [(EMBEDDED_LABEL if name == EMBEDDED else name, name) for name in model_allowlist()]


class ModelNotAllowed(RainError, ValueError):
    """A model this Space does not load (RAIN_MODEL_ALLOWLIST)."""


def resolve_model(choice: str | None, custom: str | None) -> str:
    """The model spec to load: the free-text field wins when filled (refused in Space mode unless allowlisted)."""
    custom = (custom or "").strip()
    spec = custom or (choice or "").strip() or default_model()
    if spec == EMBEDDED_LABEL:
        spec = EMBEDDED
    if space_mode() and spec not in model_allowlist():
        raise ModelNotAllowed(f"model {spec!r} is not enabled on this Space; choose one of: "
                              f"{', '.join(model_allowlist())}")
    return spec


# --- the model cache (the only module-level mutable state) ----------------------------------------------

_RUNTIMES: "OrderedDict[str, Any]" = OrderedDict()
_RUNTIMES_LOCK = threading.Lock()
_LOAD_LOCKS: dict[str, threading.Lock] = {}
MAX_CACHED_MODELS = int(os.environ.get("RAIN_MAX_MODELS", "2"))


def cached_runtime(spec: str):
    with _RUNTIMES_LOCK:
        runtime = _RUNTIMES.get(spec)
        if runtime is not None:
            _RUNTIMES.move_to_end(spec)
        return runtime


def get_runtime(spec: str):
    """The loaded Runtime for `spec`, loading it once even when several requests ask at the same time."""
    runtime = cached_runtime(spec)
    if runtime is not None:
        return runtime
    with _RUNTIMES_LOCK:
        lock = _LOAD_LOCKS.setdefault(spec, threading.Lock())
    with lock:
        runtime = cached_runtime(spec)
        if runtime is not None:
            return runtime
        runtime = load_runtime(None if spec == EMBEDDED else spec)   # $RAIN_BACKEND picks trie or vllm
        with _RUNTIMES_LOCK:
            _RUNTIMES[spec] = runtime
            while len(_RUNTIMES) > max(1, MAX_CACHED_MODELS):
                _RUNTIMES.popitem(last=False)
        return runtime


def preload(spec: str | None = None) -> threading.Thread:
    """Load the default model in the background so the first visitor does not wait for it."""
    def work() -> None:
        try:
            runtime = get_runtime(spec or default_model())
            estimate.probe(spec or default_model(), runtime)   # the library's stored speed probe
        except Exception as error:  # reported again, clearly, when someone runs
            log.warning("preloading %s failed: %s", spec or default_model(), error)
    thread = threading.Thread(target=work, name="rain-preload", daemon=True)
    thread.start()
    return thread
