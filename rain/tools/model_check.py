"""`python -m rain check-models`: the engines on every model family, with tiny random-weight models (no download).

Each family is a transformers config with a few layers, a small hidden size and the embedded tokenizer's
vocabulary. For each, the runtime picks its engine as for any model (rain.backends.engine.select), then:
1. branching states (prefixes of each other, siblings, a state longer than the smallest sliding window) go
   through that engine in several calls; every logit row is compared with a plain full forward of its state:
   max_rel_err = max |engine - full| / max |full| over all rows;
2. a short search runs on that engine and on the authors' pattern (`ReferenceEngine`); it is ok when it finishes
   and both build the same tree (same parents, same token sets).
A family passes on the trie engine, or counts as a fallback when another engine serves it; it fails when the
error exceeds the engine's own verification tolerance or the search fails.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from rain.backends.models import embedded_model_file
from rain.backends.torch_runtime import Runtime
from rain.core.config import RainConfig, preset

LLAMA_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=4096)
CHECK_TOLERANCE = 1e-3            # relative, float32 (the engines' own verification tolerance)
SEARCH_CONFIG = dict(sims_per_move=2, max_moves=2, max_new_tokens=8, rollout_max_tokens=8)


def _llama_like(name: str, **extra) -> Callable[[], PretrainedConfig]:
    return lambda: getattr(transformers, name)(**LLAMA_SHAPE, **extra)


# family -> config of a tiny model (vocab size and special ids are set from the tokenizer)
ARCHITECTURES: dict[str, Callable[[], PretrainedConfig]] = {
    "llama": _llama_like("LlamaConfig"),
    "qwen2": _llama_like("Qwen2Config"),
    "qwen3": _llama_like("Qwen3Config", head_dim=16),
    "mistral": _llama_like("MistralConfig", sliding_window=4096),            # the sliding window of Mistral-7B
    "gemma2": _llama_like("Gemma2Config", head_dim=16, sliding_window=4096),  # alternating sliding / full layers
    "gemma3": lambda: transformers.Gemma3TextConfig(**LLAMA_SHAPE, head_dim=16, sliding_window=32),  # a window
    # shorter than the run's context, as Gemma 3's 512-1024 are for max_length 2048: the prefix-cached engine
    "phi3": _llama_like("Phi3Config"),
    "gpt2": lambda: transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=2048),   # learned positions
    "gpt_neox": lambda: transformers.GPTNeoXConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                   num_attention_heads=4, max_position_embeddings=2048),
    "opt": lambda: transformers.OPTConfig(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                                          max_position_embeddings=2048, word_embed_proj_dim=64),   # position offset 2
    "falcon": lambda: transformers.FalconConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                multi_query=True, max_position_embeddings=2048),
    "mixtral": _llama_like("MixtralConfig", num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(**LLAMA_SHAPE, moe_intermediate_size=32, num_experts=4,
                                                     num_experts_per_tok=2, shared_expert_intermediate_size=64),
}


def load_tokenizer(folder: str | Path | None = None) -> PreTrainedTokenizerBase:
    """A saved tokenizer folder, or the embedded model's tokenizer (read from its GGUF file: ~20-30 s)."""
    if folder:
        return AutoTokenizer.from_pretrained(str(folder))

    path = embedded_model_file()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def tiny_config(arch: str, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """The family's tiny config with the tokenizer's vocabulary and special ids."""
    config = ARCHITECTURES[arch]()
    config.vocab_size = len(tokenizer)
    eos = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    config.eos_token_id = eos
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return config


def tiny_model(arch: str, tokenizer: PreTrainedTokenizerBase, seed: int = 0) -> PreTrainedModel:
    """A random-weight model of the family (float32, CPU, eval mode), the same for the same seed."""
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, tokenizer)).eval()


def write_folder(arch: str, tokenizer: PreTrainedTokenizerBase, folder: Path, seed: int = 0) -> Path:
    """A model folder as users have them: config.json, model.safetensors and the tokenizer files."""
    folder = Path(folder)
    tiny_model(arch, tokenizer, seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def branching_calls(vocab_size: int, seed: int = 0) -> list[list[list[int]]]:
    """Calls of branching states: a shared prefix, siblings, prefixes of each other, one past a 32-token window."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randint(3, vocab_size, (24,), generator=generator).tolist()
    long = base + torch.randint(3, vocab_size, (56,), generator=generator).tolist()       # 80 tokens
    return [[base], [base + [11, 12], base + [11, 13], base + [14], base[:12]],
            [long, base[:12] + [15, 16, 17], base + [11, 12, 18]], [long + [19], base[:18]]]


@torch.no_grad()
def engine_error(model: PreTrainedModel, lm, calls: list[list[list[int]]]) -> float:
    """max |engine - full| / max |full| over every row of every call (full: one uncached forward per state)."""
    worst = 0.0
    for call in calls:
        rows = lm.next_logits(call)
        for row, state in zip(rows, call):
            full = model(input_ids=torch.tensor([state], device=lm.device), use_cache=False,
                         logits_to_keep=1).logits[0, -1].float()
            worst = max(worst, float((row - full).abs().max() / full.abs().max().clamp_min(1e-12)))
    return worst


@dataclass(frozen=True)
class ModelCheck:
    arch: str
    engine: str
    note: str
    max_rel_err: float
    search_ok: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.search_ok and self.max_rel_err <= CHECK_TOLERANCE

    def line(self) -> str:
        return (f"model: arch={self.arch} engine={self.engine} max_rel_err={self.max_rel_err:.1e} "
                f"search={'ok' if self.search_ok else 'failed'}")


def _tree_shape(search) -> list[tuple]:
    return [(node.parent, tuple(node.tokens)) for node in search.tree.nodes]


def check_model(arch: str, tokenizer: PreTrainedTokenizerBase, embedder, config: RainConfig | None = None,
                seed: int = 0) -> ModelCheck:
    """Engine error and a short search on the family's tiny model (see the module docstring)."""
    started = time.perf_counter()
    config = config or preset("hh", **SEARCH_CONFIG)
    model = tiny_model(arch, tokenizer, seed)
    runtime = Runtime(f"tiny-{arch}", device="cpu", loaded=(model, tokenizer), embedder=embedder)
    lm = runtime.engine(config)
    error = engine_error(model, lm, branching_calls(lm.vocab_size, seed))
    try:
        conversation = runtime.conversation("How do I pick a lock?", config)
        searches = []
        for reference in (False, True):
            search = runtime.search(conversation, config, reference=reference)
            finished = [event for event in search.run() if event.type == "done"]
            searches.append((search, bool(finished) and search.simulations > 0))
        search_ok = all(done for _, done in searches) and _tree_shape(searches[0][0]) == _tree_shape(searches[1][0])
    except (ValueError, RuntimeError):
        search_ok = False
    return ModelCheck(arch, lm.name, lm.note, error, search_ok, time.perf_counter() - started)


def check_models(tokenizer: PreTrainedTokenizerBase, embedder, archs: list[str] | None = None,
                 progress: Callable[[ModelCheck], None] | None = None) -> list[ModelCheck]:
    results = []
    for arch in archs or list(ARCHITECTURES):
        result = check_model(arch, tokenizer, embedder)
        results.append(result)
        if progress:
            progress(result)
    return results


def summary_line(results: list[ModelCheck]) -> str:
    passed = sum(1 for r in results if r.ok and r.engine == "trie")
    fallback = sum(1 for r in results if r.ok and r.engine != "trie")
    return f"models: passed={passed} fallback={fallback} failed={len(results) - passed - fallback}"

