"""Sentence embeddings for the similarity update (docs/algorithm.md §1.3 backup): all-MiniLM-L6-v2 without sentence-transformers.

The folder's modules.json chains Transformer -> Pooling (mean over tokens, 1_Pooling/config.json) -> Normalize,
with max_seq_length 256 (sentence_bert_config.json); this module does exactly that with plain transformers.
The search embeds the same path texts again and again, so results are kept in a bounded LRU keyed by text.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from rain.backends.models import embedded_embedder_dir, resolve_device

DEFAULT_MAX_SEQUENCE_LENGTH = 256    # all-MiniLM-L6-v2's sentence_bert_config.json, if the file is absent
DEFAULT_CACHE_ENTRIES = 4096


class MiniLMEmbedder:
    """Mean-pooled, L2-normalised sentence embeddings (float32 numpy, [n, dim]); `device` None picks the GPU."""

    def __init__(self, folder: str | Path | None = None, device: str | None = None,
                 cache_entries: int = DEFAULT_CACHE_ENTRIES):
        self.folder = Path(folder) if folder is not None else embedded_embedder_dir()
        self.device = resolve_device(device)
        _check_pooling(self.folder)
        self.max_sequence_length = _max_sequence_length(self.folder)
        self.normalize = _normalizes(self.folder)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.model = AutoModel.from_pretrained(str(self.folder)).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self.cache_entries = cache_entries
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()        # one embedder serves concurrent runs (the app's queue)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """All uncached texts go through the encoder in one batch (under the lock: a few ms per simulation)."""
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._cache))
            if missing:
                for text, vector in zip(missing, self._encode(missing)):
                    self._cache[text] = vector
            result = np.zeros((len(texts), self.dim), dtype=np.float32)
            for index, text in enumerate(texts):
                self._cache.move_to_end(text)
                result[index] = self._cache[text]
            while len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
            return result

    @torch.inference_mode()
    def _encode(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_sequence_length,
                               return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state                       # [n, tokens, dim]
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)    # [n, tokens, 1]
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()


def _max_sequence_length(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text()).get("max_seq_length", DEFAULT_MAX_SEQUENCE_LENGTH))
    return DEFAULT_MAX_SEQUENCE_LENGTH


def _normalizes(folder: Path) -> bool:
    """Whether the module chain ends in L2 normalisation (all-MiniLM-L6-v2's does)."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return True
    return any(module.get("type", "").endswith(".Normalize") for module in json.loads(modules.read_text()))


def _check_pooling(folder: Path) -> None:
    """Refuse a sentence-transformers folder whose pooling is not the mean pooling implemented here."""
    config = folder / "1_Pooling" / "config.json"
    if not config.is_file():
        return
    pooling = json.loads(config.read_text())
    if not pooling.get("pooling_mode_mean_tokens", False) or any(
            pooling.get(mode, False) for mode in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                                  "pooling_mode_mean_sqrt_len_tokens")):
        raise ValueError(f"{config} asks for a pooling other than mean pooling, which MiniLMEmbedder implements")
