"""Shared fixtures. Real weights are loaded at most once per session (the embedded GGUF takes ~15 s)."""
from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"           # nothing in the tests may touch the network
# the dequantised-weights cache (rain/backends/weights_cache.py) of this session lives in a temp dir, never in $HOME
_CACHE = tempfile.TemporaryDirectory(prefix="rain-test-cache-")
os.environ["RAIN_CACHE_DIR"] = _CACHE.name

import pytest  # noqa: E402 (the environment above comes first)
import torch  # noqa: E402

DEFAULT_THREADS = min(2, os.cpu_count() or 1)     # what the recorded goldens (tests/golden/) were measured with
torch.set_num_threads(DEFAULT_THREADS)


@pytest.fixture(autouse=True)
def torch_threads(request):
    """Every test starts at its own torch thread count, whatever an earlier test or fixture left (torch's count is
    process-wide): 1 with the served app (as app.py gives each of 2 runs on 2 cores) or `one_torch_thread`, else
    DEFAULT_THREADS. Without this, every module after the first app test ran on 1 thread."""
    wanted = 1 if {"app_url", "one_torch_thread"} & set(request.fixturenames) else DEFAULT_THREADS
    torch.set_num_threads(wanted)
    yield


# --- real models (tests/test_engine.py) ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def real_model():
    """(model, tokenizer) of the embedded SmolLM2-135M GGUF, float32 on CPU, loaded once."""
    from rain.backends.models import load_causal_lm
    return load_causal_lm(None, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_llama():
    """A random-weight 2-layer Llama with the embedded tokenizer's vocabulary: engine tests without real weights."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         initializer_range=0.2)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="session")
def embedded_tokenizer():
    """The embedded model's tokenizer alone (its vocabulary and chat template), for tiny random-weight models."""
    from rain.tools.model_check import load_tokenizer
    return load_tokenizer()


@pytest.fixture(scope="session")
def tokenizer_dir(embedded_tokenizer, tmp_path_factory):
    """The embedded tokenizer saved as a folder (loads in well under a second, unlike the GGUF)."""
    folder = tmp_path_factory.mktemp("tokenizer")
    embedded_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def real_embedder():
    """The embedded all-MiniLM-L6-v2 on CPU, loaded once."""
    from rain.backends.embedder import MiniLMEmbedder
    return MiniLMEmbedder(device="cpu")


@pytest.fixture(scope="session")
def runtime(real_model):
    """A Runtime on the already-loaded embedded model (CLI, app and end-to-end tests)."""
    from rain.backends.torch_runtime import Runtime
    return Runtime(None, device="cpu", dtype="float32", loaded=real_model)


# --- the app, served once per session (tests/test_app.py, tests/test_browser.py) ----------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_on_a_free_port(demo, attempts: int = 5, **kwargs) -> int:
    """Launch `demo` on a port the OS just gave out; another process may take it between the probe and Gradio's
    bind (Gradio then raises OSError), so a taken port means another port, never a failed session."""
    for attempt in range(attempts):
        port = free_port()
        try:
            demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **kwargs)
            return port
        except OSError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def app_url(runtime):
    """The app on a free localhost port; every client or browser page gets its own Gradio session.

    Its embedded model is the session's float32 `runtime`: `auto` picks bfloat16 generation on a CPU with native
    bfloat16, and the app's and browsers' tests count the simulations of float32 runs (no early end of turn).
    Every page opens on the quick budget, however fast this machine's runs were (the paper budget opens the page
    where its answer is estimated at a minute or less: tests/test_estimate.py checks that rule)."""
    from app import create_app
    from ui import estimate, runtimes
    from ui.layout import LAUNCH_KWARGS

    real_load = runtimes.load_runtime
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(estimate, "DEFAULT_SECONDS", 0)
        patch.setattr(runtimes, "load_runtime",
                      lambda spec=None, backend=None: runtime if spec is None else real_load(spec, backend))
        torch.set_num_threads(1)          # as app.py does for 2 runs on 2 cores (tests: the torch_threads fixture)
        runtimes.get_runtime(runtimes.EMBEDDED)            # the model is in the app's cache before anything is timed
        demo = create_app()
        port = launch_on_a_free_port(demo, **LAUNCH_KWARGS)
        yield f"http://127.0.0.1:{port}/"
        demo.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-model tests: on 2 shared cores a second thread makes tiny forwards
    crawl (4-10x slower measured). Opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
