"""Compute engines: next-token logits for whole token states (the `rain.lm.LanguageModel` interface).

- `trie.py`: the token trie, forward plans and tree attention masks (plain Python and numpy);
- `arena.py`: the key/value arena, one slot per computed token, and `PrefixKV`;
- `hf.py`: the transformers adapter (probing a model, its cache layers, its forward);
- `trie_engine.py`: `TrieEngine`, every distinct position computed once;
- `reference.py`: `ReferenceEngine`, the authors' compute pattern, to measure against.
"""
from rain.engine.arena import MIN_ARENA_SLOTS, PrefixKV
from rain.engine.hf import TREE_ATTENTION_IMPLEMENTATIONS, ModelShape, UnsupportedModelError, probe_model
from rain.engine.reference import ReferenceEngine
from rain.engine.trie import NO_SLOT, ROOT_DEPTH, TokenTrie, _TrieNode
from rain.engine.trie_engine import EVICT_FRACTION, HALF_TOLERANCE, VERIFY_TOLERANCE, TrieEngine

__all__ = ["EVICT_FRACTION", "HALF_TOLERANCE", "MIN_ARENA_SLOTS", "NO_SLOT", "ROOT_DEPTH",
           "TREE_ATTENTION_IMPLEMENTATIONS", "VERIFY_TOLERANCE", "ModelShape", "PrefixKV", "ReferenceEngine",
           "TokenTrie", "TrieEngine", "UnsupportedModelError", "_TrieNode", "probe_model"]
