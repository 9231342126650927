"""Shared fixtures. Real weights are loaded at most once per session (the embedded GGUF takes ~15 s)."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"           # nothing in the tests may touch the network

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


# --- real models (tests/test_engine.py) ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def real_model():
    """(model, tokenizer) of the embedded SmolLM2-135M GGUF, float32 on CPU, loaded once."""
    from rain.models import load_causal_lm
    return load_causal_lm(None, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def real_embedder():
    """The embedded all-MiniLM-L6-v2 on CPU, loaded once."""
    from rain.embedder import MiniLMEmbedder
    return MiniLMEmbedder(device="cpu")


@pytest.fixture(scope="session")
def runtime(real_model):
    """A Runtime on the already-loaded embedded model (CLI, app and end-to-end tests)."""
    from rain.runtime import Runtime
    return Runtime(None, device="cpu", dtype="float32", loaded=real_model)
