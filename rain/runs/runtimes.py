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


def load_runtime(model_spec: str | None = None, backend: str | None = None, **options: Any):
    """A runtime on `backend` (default $RAIN_BACKEND, else trie) for `model_spec` (None: the embedded model).

    `options` (device, dtype, trust_remote_code, judge_dtype) go to the torch runtime; the vLLM runtime
    (rain/backends/vllm_runtime.py, in .venv-vllm) serves float32 on its own engine and takes none."""
    backend = backend or os.environ.get(BACKEND_ENV, "trie")
    if backend == "vllm":
        from rain.backends.vllm_runtime import VllmRuntime      # lazy: vLLM is optional and heavy

        return VllmRuntime(model_spec)
    if backend != "trie":
        raise ValueError(f"unknown backend {backend!r} (${BACKEND_ENV}): use trie or vllm")
    from rain.backends.torch_runtime import Runtime             # lazy: torch and transformers load only here

    return Runtime(model_spec, **options)
