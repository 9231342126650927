"""Which engine serves a model, and why (README "Speed: every token computed once", "Models").

1. `trie` (`TrieEngine`): the model's cache layers are full attention, or sliding-window layers whose window
   covers the run's `max_length` (within its window, sliding-window attention equals full attention), and
   tree-masked forwards match full forwards on this model (`TrieEngine.verify`).
2. `cached` (`CachedEngine`): anything else the model's own cache can continue exactly, e.g. a sliding window
   shorter than the run; the longest computed prefix of each state is reused.
3. `reference` (`ReferenceEngine`): neither verified; full recomputation, the authors' pattern.
"""
from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedModel

from rain.backends.engine.cached import CachedEngine
from rain.backends.engine.hf import UnsupportedModelError, model_context, probe_model
from rain.backends.engine.reference import ReferenceEngine
from rain.backends.engine.trie_engine import TrieEngine

ENGINES = ("trie", "cached", "reference")
VERIFY_BYTES = 64 << 20          # KV cap of the engines built only to verify a model


@dataclass(frozen=True)
class EngineChoice:
    """The engine for one model and run length: its name, the context it serves, and why, in words."""

    name: str                    # one of ENGINES
    max_length: int              # longest state the engine accepts
    note: str

    def build(self, model: PreTrainedModel, kv_cache_bytes: int):
        """A fresh engine of this kind (already verified when the choice was made)."""
        if self.name == "trie":
            engine = TrieEngine(model, self.max_length, kv_cache_bytes=kv_cache_bytes, verify=False)
        elif self.name == "cached":
            engine = CachedEngine(model, self.max_length, kv_cache_bytes=kv_cache_bytes, verify=False)
        else:
            engine = ReferenceEngine(model, max_length=self.max_length)
        engine.note = self.note
        return engine


def choose_engine(model: PreTrainedModel, max_length: int) -> EngineChoice:
    """The fastest exact engine for runs of at most `max_length` tokens (prompt plus answer) on `model`."""
    shape = probe_model(model)
    context = model_context(model)
    window = shape.sliding_window
    if window is not None and max_length <= window:
        served = min(context, window)
        why = (f"max_length {max_length} is within the sliding window of {window} tokens, where sliding-window "
               f"attention equals full attention")
    else:
        served = context if window is None else max_length
        why = "full-attention cache layers"
    try:
        TrieEngine(model, served, kv_cache_bytes=VERIFY_BYTES, verify=True)
        return EngineChoice("trie", served, f"trie: {why}; every token computed once")
    except UnsupportedModelError as error:
        reason = str(error)
    except RuntimeError as error:                # a forward this transformers release rejects: not verified
        reason = f"its tree-masked forward failed: {str(error).splitlines()[0]}"
    try:
        CachedEngine(model, context, kv_cache_bytes=VERIFY_BYTES, verify=True)
        return EngineChoice("cached", context, f"cached: the trie cannot serve it ({reason}); the longest computed "
                                               f"prefix of each state is reused through the model's own cache")
    except (ValueError, RuntimeError) as error:
        return EngineChoice("reference", context, f"reference: neither the trie ({reason}) nor the prefix cache "
                                                  f"({error}) is exact on this model; full recomputation")
