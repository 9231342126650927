"""RAIN Explorer: Rewindable Auto-regressive INference (Li et al., ICLR 2024) on any causal LM.

rain/search.py is the algorithm; rain/tree.py the tree; rain/config.py every knob; rain/events.py what the
search reports; rain/engine/ the compute; rain/judge.py self-evaluation; rain/export.py the JSON contract.
"""
from rain.config import PRESETS, ConfigError, RainConfig, preset

__all__ = ["PRESETS", "ConfigError", "RainConfig", "preset"]
__version__ = "0.1.0"
