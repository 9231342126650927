"""RAIN Explorer: Rewindable Auto-regressive INference (Li et al., ICLR 2024) on any causal LM.

The package has four floors, each importing only the ones beneath it:
- `rain.core`: the algorithm and its data (config, tree, events, replay, export, prompts, model protocols,
  decoding, judge, search);
- `rain.backends`: the compute (engines, model loading, precision, calibration, the torch and vLLM runtimes);
- `rain.runs`: a run as one stream (session, Best-of-N, runtimes by spec, concurrency, fork, teaching, treelog);
- `rain.tools`: the command line (`python -m rain`), bench, eval, sweep, Ray and the checks.
This module re-exports what a user needs and imports neither torch nor a backend.
"""
from rain.core.config import PRESETS, ConfigError, RainConfig, preset
from rain.core.errors import RainError
from rain.core.export import RunRecord, load, save
from rain.runs.runtimes import load_runtime

__all__ = ["PRESETS", "ConfigError", "RainConfig", "RainError", "RunRecord", "load", "load_runtime", "preset",
           "save"]
__version__ = "0.1.0"
