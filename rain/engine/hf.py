"""The transformers adapter: what the engines need to know about a model, its cache layers and its forward."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer

from rain.lm import TokenState

TREE_ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")   # attention kernels that accept an arbitrary 4-D mask


class UnsupportedModelError(ValueError):
    """The model cannot run tree-masked forwards over a shared arena; use ReferenceEngine instead."""


@dataclass(frozen=True)
class ModelShape:
    """What the engines need to know about a model, read from one tiny forward."""

    layers: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    max_length: int
    dtype: torch.dtype
    device: torch.device

    @property
    def token_bytes(self) -> int:
        """Bytes of keys and values of one token over all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.empty((), dtype=self.dtype).element_size()

    @property
    def logits_bytes(self) -> int:
        return 4 * self.vocab_size      # stored as float32


def _model_outputs_cache(output) -> Cache:
    """transformers 5 names it `cache`; older releases `past_key_values`."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _model_forward(model: PreTrainedModel, cache: Cache | None, **inputs):
    """Forward with the cache under the keyword this transformers release expects."""
    return model(**inputs, cache=cache) if cache is not None else model(**inputs)


@torch.no_grad()
def probe_model(model: PreTrainedModel, max_length: int | None = None) -> ModelShape:
    """Read layer count, KV heads and head size from the cache of a one-token forward."""
    parameter = next(model.parameters())
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    output = model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=parameter.device), use_cache=True)
    cache = _model_outputs_cache(output)
    layers = list(getattr(cache, "layers", []))
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        kinds = sorted({type(layer).__name__ for layer in layers}) or ["none"]
        raise UnsupportedModelError(f"cache layers are {', '.join(kinds)}: the tree engine needs full-attention "
                                    f"layers only (no sliding window, no linear attention)")
    shapes = {tuple(layer.keys.shape) for layer in layers} | {tuple(layer.values.shape) for layer in layers}
    if len(shapes) != 1:
        raise UnsupportedModelError(f"cache layers differ in shape ({sorted(shapes)}): the arena needs uniform layers")
    _, kv_heads, _, head_dim = shapes.pop()
    output_embeddings = model.get_output_embeddings()
    vocab_size = int(getattr(output_embeddings, "out_features", 0) or text_config.vocab_size)
    context = max_length or getattr(text_config, "max_position_embeddings", None) or 2048
    return ModelShape(len(layers), kv_heads, head_dim, vocab_size, int(context), parameter.dtype, parameter.device)


class _ScratchLayer(DynamicLayer):
    """One layer's view of the scratch buffer: gathered past keys/values with room behind them for the new tokens.

    `update` writes the new tokens in place instead of concatenating, so a forward copies the past once and
    reuses the same memory every call (fresh large CPU allocations cost page faults on every forward).
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, past_length: int):
        super().__init__()
        self.keys, self.values = keys, values           # [1, kv_heads, past + new, head_dim]
        self.length = past_length
        self.device = keys.device
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        self.keys[:, :, self.length:end].copy_(key_states)
        self.values[:, :, self.length:end].copy_(value_states)
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length


def full_forward_logits(model: PreTrainedModel, state: TokenState, device: torch.device) -> torch.Tensor:
    """Last-position logits of one uncached forward of the whole state (float32): the ground truth."""
    input_ids = torch.tensor([list(state)], dtype=torch.long, device=device)
    return model(input_ids=input_ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()
