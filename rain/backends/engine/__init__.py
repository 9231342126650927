"""Compute engines: next-token logits for whole token states (the `rain.core.lm.LanguageModel` interface).

- `trie.py`: the token trie, forward plans and tree attention masks (plain Python and numpy);
- `arena.py`: the key/value arena, one slot per computed token, and `PrefixKV`;
- `hf.py`: the transformers adapter (probing a model, its cache layers, its forward);
- `trie_engine.py`: `TrieEngine`, every distinct position computed once;
- `cached.py`: `CachedEngine`, the fallback: the longest computed prefix per state, through the model's own cache;
- `reference.py`: `ReferenceEngine`, the authors' compute pattern, only the benchmark's reference;
- `select.py`: which of them serves a model, and why.
"""
from rain.backends.engine.arena import MIN_ARENA_SLOTS, PrefixKV
from rain.backends.engine.cached import CachedEngine
from rain.backends.engine.hf import (
                            TREE_ATTENTION_IMPLEMENTATIONS,
                            ModelShape,
                            UnsupportedModelError,
                            model_context,
                            probe_model,
                            tree_attention_problem,
)
from rain.backends.engine.reference import ReferenceEngine
from rain.backends.engine.select import ENGINES, EngineChoice, choose_engine
from rain.backends.engine.trie import NO_SLOT, ROOT_DEPTH, TokenTrie, _TrieNode
from rain.backends.engine.trie_engine import EVICT_FRACTION, HALF_TOLERANCE, VERIFY_TOLERANCE, TrieEngine

__all__ = ["ENGINES", "EVICT_FRACTION", "HALF_TOLERANCE", "MIN_ARENA_SLOTS", "NO_SLOT", "ROOT_DEPTH",
           "TREE_ATTENTION_IMPLEMENTATIONS", "VERIFY_TOLERANCE", "CachedEngine", "EngineChoice", "ModelShape",
           "PrefixKV", "ReferenceEngine", "TokenTrie", "TrieEngine", "UnsupportedModelError", "_TrieNode",
           "choose_engine", "model_context", "probe_model", "tree_attention_problem"]
