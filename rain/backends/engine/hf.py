"""The transformers adapter: what the engines need to know about a model, its cache layers and its forward."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer, DynamicSlidingWindowLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from rain.core.errors import RainError
from rain.core.lm import TokenState

GQA_SDPA = "rain_gqa_sdpa"       # transformers' sdpa without its key/value copy on CPU (`gqa_sdpa_attention`)
TREE_ATTENTION_IMPLEMENTATIONS = ("sdpa", GQA_SDPA, "eager")   # attention kernels that accept an arbitrary 4-D mask
TREE_CACHE_LAYERS = ("DynamicLayer", "DynamicSlidingWindowLayer")   # the trie serves these (the latter in its window)


class UnsupportedModelError(RainError, ValueError):
    """The model cannot run tree-masked forwards over a shared arena; the prefix-cached engine serves it."""


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
    cache_layers: tuple[str, ...] = ()      # class names of the model's own cache layers
    sliding_window: int | None = None       # the smallest sliding window among them, None if all are full

    @property
    def token_bytes(self) -> int:
        """Bytes of keys and values of one token over all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.empty((), dtype=self.dtype).element_size()

    @property
    def logits_bytes(self) -> int:
        return 4 * self.vocab_size      # stored as float32


def gqa_sdpa_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                       is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' sdpa, except for a masked forward of several tokens on CPU of a grouped-query model.

    There transformers copies every key/value head `num_key_value_groups` times (`repeat_kv`) before the kernel:
    for a tree forward, the whole gathered past, twice per layer. Handed to the kernel as they are
    (`enable_gqa`), the heads give bit-identical outputs (tests/test_engine.py), and the copy is gone. Single
    tokens (transformers packs the query heads instead), other devices and every other case go to transformers.
    """
    if (query.device.type == "cpu" and attention_mask is not None and query.shape[2] > 1 and dropout == 0.0
            and getattr(module, "num_key_value_groups", 1) > 1 and kwargs.get("position_bias") is None
            and kwargs.get("softcap") is None and not kwargs.get("output_attentions", False)):
        output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                                  scale=scaling, enable_gqa=True)
        return output.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


AttentionInterface.register(GQA_SDPA, gqa_sdpa_attention)      # transformers' registries of named kernels:
AttentionMaskInterface.register(GQA_SDPA, sdpa_mask)           # its masks are sdpa's


def use_gqa_sdpa(model: PreTrainedModel) -> PreTrainedModel:
    """Switch a model that runs transformers' sdpa to `gqa_sdpa_attention` (the same outputs, no key/value copy);
    any other model is left as it is."""
    settable = getattr(model, "_can_set_attn_implementation", lambda: False)()
    if getattr(model.config, "_attn_implementation", None) == "sdpa" and settable:
        model.set_attn_implementation(GQA_SDPA)
    return model


def _model_outputs_cache(output) -> Cache:
    """transformers 5 names it `cache`; older releases `past_key_values`."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


@functools.cache
def _cache_keyword(model_type: type) -> str:
    """The forward's cache keyword: `cache` since transformers 5.20, `past_key_values` before (5.19 is what
    vLLM pins in .venv-vllm). Its `**kwargs` swallows the other name silently: the forward then runs without the
    cache (wrong logits, or a tree mask longer than the keys)."""
    parameters = inspect.signature(model_type.forward).parameters
    return "cache" if "cache" in parameters or "past_key_values" not in parameters else "past_key_values"


def _model_forward(model: PreTrainedModel, cache: Cache | None, **inputs):
    """Forward with the cache under the keyword this transformers release expects."""
    return model(**inputs, **{_cache_keyword(type(model)): cache}) if cache is not None else model(**inputs)


@torch.no_grad()
def probe_model(model: PreTrainedModel, max_length: int | None = None) -> ModelShape:
    """Read layer count, KV heads, head size and cache layer kinds from the cache of a one-token forward."""
    parameter = next(model.parameters())
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    output = model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=parameter.device), use_cache=True)
    cache = _model_outputs_cache(output)
    layers = list(getattr(cache, "layers", None) or [])
    kinds = tuple(sorted({type(layer).__name__ for layer in layers}))
    windows = [int(layer.sliding_window) for layer in layers if isinstance(layer, DynamicSlidingWindowLayer)]
    shapes = {tuple(layer.keys.shape) for layer in layers if getattr(layer, "keys", None) is not None} | \
             {tuple(layer.values.shape) for layer in layers if getattr(layer, "values", None) is not None}
    _, kv_heads, _, head_dim = next(iter(shapes)) if len(shapes) == 1 else (0, 0, 0, 0)
    output_embeddings = model.get_output_embeddings()
    vocab_size = int(getattr(output_embeddings, "out_features", 0) or text_config.vocab_size)
    context = max_length or getattr(text_config, "max_position_embeddings", None) or 2048
    return ModelShape(len(layers), kv_heads, head_dim, vocab_size, int(context), parameter.dtype, parameter.device,
                      kinds, min(windows) if windows else None)


def model_context(model: PreTrainedModel) -> int:
    """The model's own context length in tokens (2048 when its config does not say)."""
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(getattr(text_config, "max_position_embeddings", None) or 2048)


def tree_attention_problem(shape: ModelShape) -> str | None:
    """Why tree-masked forwards over a shared arena would not be exact for states up to `shape.max_length`.

    Full-attention layers are always fine. A sliding-window layer attends to the last `window` positions, which
    for states of at most `window` tokens is every position: within its window, sliding-window attention equals
    full attention, so the trie serves it. Anything else (linear attention, static or quantised caches, uneven
    layers) is for the prefix-cached engine.
    """
    if not shape.cache_layers:
        return "the model returns no per-layer cache"
    others = [kind for kind in shape.cache_layers if kind not in TREE_CACHE_LAYERS]
    if others:
        return (f"cache layers are {', '.join(shape.cache_layers)}: the tree engine needs full-attention or "
                f"sliding-window layers")
    if shape.kv_heads == 0:
        return "cache layers differ in shape: the arena needs uniform layers"
    if shape.sliding_window is not None and shape.max_length > shape.sliding_window:
        return (f"sliding window of {shape.sliding_window} tokens is shorter than the {shape.max_length}-token "
                f"states the run needs: beyond the window the tree mask would see too much")
    return None


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
