"""A runtime by its spec, without importing a backend until one is asked for.

`load_runtime(spec, backend)` is how the CLI, the app and the Ray workers get a loaded model. This module imports
neither torch nor vLLM: the backend's module is imported inside `load_runtime`, on purpose (a lazy import of an
optional heavy dependency), so that `import rain`, the page and tree-file tools run without loading either.
"""
from __future__ import annotations

import os
from typing import Any

BACKEND_ENV = "RAIN_BACKEND"        # the app's backend: trie (default) or vllm (one engine shared by all visitors)
BACKENDS = ("trie", "vllm")


def backend_choice(backend: str | None = None) -> str:
    """The backend asked for, else $RAIN_BACKEND, else trie."""
    return backend or os.environ.get(BACKEND_ENV, "trie")


def serving_defaults(backend: str | None = None) -> tuple[int, int]:
    """(runs at once, requests waiting) that suit a backend when an app serves visitors.

    The trie engine gives every search its own forwards on a share of the cores, so a few at once; one vLLM engine
    puts every search it holds into the same steps, and more searches per step is more simulations per second
    (docs/scaling.md: 16 visitors on the 2-core box, more with cores or a GPU)."""
    return (16, 64) if backend_choice(backend) == "vllm" else (2, 16)


def load_runtime(model_spec: str | None = None, backend: str | None = None, **options: Any):
    """A runtime on `backend` (default $RAIN_BACKEND, else trie) for `model_spec` (None: the embedded model).

    `options` (device, dtype, trust_remote_code, judge_dtype) go to the torch runtime; the vLLM runtime
    (rain/backends/vllm_runtime.py, in .venv-vllm) serves float32 on its own engine and takes none."""
    backend = backend_choice(backend)
    if backend == "vllm":
        from rain.backends.vllm_runtime import VllmRuntime  # lazy: vLLM is optional and heavy

        return VllmRuntime(model_spec)
    if backend != "trie":
        raise ValueError(f"unknown backend {backend!r} (${BACKEND_ENV}): use trie or vllm")
    from rain.backends.torch_runtime import Runtime  # lazy: torch and transformers load only here

    return Runtime(model_spec, **options)
