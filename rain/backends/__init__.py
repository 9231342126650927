"""The compute: what turns the core's protocols into forwards on real weights.

engine/ (the trie, cached and reference engines over Hugging Face models), models (loading), precision,
weights_cache, calibration (the judge's auto scale), embedder, and the two runtimes: torch_runtime (weights in
this process) and vllm_runtime (one shared vLLM engine; needs .venv-vllm). Imports only rain.core.
"""
