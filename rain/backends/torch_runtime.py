"""The torch runtime: a model's weights loaded in this process, and the trie engine over them.

The CLI and the app hold one `Runtime` per model. Weights are shared; every run gets a fresh engine (its own KV
trie), judge and search, so concurrent runs never share mutable state. What it shares with the vLLM runtime (the
evaluator, the judge's scale, the search, the vanilla stream, the record's parts) is rain/backends/base_runtime.py.
"""
from __future__ import annotations

import copy

import torch

from rain.backends.base_runtime import EMBEDDER_NAME, BaseRuntime
from rain.backends.calibration import weights_fingerprint
from rain.backends.embedder import MiniLMEmbedder
from rain.backends.engine import EngineChoice, PrefixKV, ReferenceEngine, TrieEngine, choose_engine, model_context
from rain.backends.models import DTYPES, HFCodec, embedded_embedder_dir, load_causal_lm, resolve_device
from rain.backends.precision import (INT8, PaperEstimate, Precision, generation_copy, is_int8, name, needs_probe,
                                     resolve_precision, stored_probe)
from rain.core.config import RainConfig
from rain.core.judge import SelfJudge
from rain.core.lm import Embedder, LanguageModel
from rain.core.prompts import Conversation, PromptFormat, build_conversation

EMBEDDED = "embedded"


class Runtime(BaseRuntime):
    """Model, tokenizer and embedder, loaded once; a second copy of the weights for the judge when the judge's
    precision differs from the generation's (rain/backends/precision.py)."""

    def __init__(self, model_spec: str | None = None, device: str | None = None, dtype: str = "auto",
                 trust_remote_code: bool = False, embedder_dir: str | None = None, loaded: tuple | None = None,
                 embedder: Embedder | None = None, judge_dtype: str = "auto"):
        spec = model_spec or EMBEDDED
        if loaded is not None:
            model, tokenizer = loaded
            generation = model.dtype if dtype in ("auto", INT8) else DTYPES[dtype]
            judge = model.dtype if judge_dtype == "auto" else DTYPES[judge_dtype]
            precision = Precision(generation, judge, "loaded by the caller", judge_dtype != "auto", int8=dtype == INT8)
        else:
            torch_device = resolve_device(device)
            precision = resolve_precision(dtype, judge_dtype, torch_device)
            wide = torch.float32 in (precision.dtype, precision.judge_dtype)
            model, tokenizer = load_causal_lm(model_spec, device=device,
                                              dtype="float32" if wide else name(precision.dtype),
                                              trust_remote_code=trust_remote_code)
            if needs_probe(dtype, torch_device):        # auto on a CPU: the mode measured fastest here
                precision = resolve_precision(dtype, judge_dtype, torch_device, stored_probe(model))
            precision = precision.sharing_judge(sum(p.numel() for p in model.parameters()))
        self.model, self.judge_model = _copies(model, precision, spec, trust_remote_code)
        device = str(self.model.device)
        super().__init__(spec, HFCodec(tokenizer, self.model), tokenizer,
                         embedder or MiniLMEmbedder(embedder_dir or embedded_embedder_dir(), device=device),
                         embedder_dir or EMBEDDER_NAME, device, precision, trust_remote_code)
        self._engine_choices: dict[int, EngineChoice] = {}           # run max_length -> engine (rain.backends.engine.select)
        self._judge_prefixes: dict[tuple[int, tuple[int, ...]], PrefixKV] = {}   # (model, prefix) -> keys/values

    def paper_estimate(self) -> PaperEstimate | None:
        """A paper-budget answer in this runtime's generation mode, estimated from the stored precision probe
        (rain/backends/precision.py `SpeedProbe`; measured now if this machine has none); None on a GPU."""
        if self.model.device.type != "cpu":
            return None
        probe = self.precision.probe
        if probe is None:
            weights = self.float32_model()
            if weights is None:
                return None
            probe = stored_probe(weights)
        return probe.paper_estimate(self.dtype) if self.dtype in probe.seconds else None

    def float32_model(self) -> torch.nn.Module | None:
        """The float32 weights this runtime holds (the judge's on a CPU, else the generation's), None if neither is:
        what the precision probe measures and vanilla's float32 reference decodes on."""
        return next((m for m in (self.judge_model, self.model) if m.dtype == torch.float32 and not is_int8(m)), None)

    @property
    def separate_judge(self) -> bool:
        """The judge runs on its own weights (another precision), hence on its own engine."""
        return self.judge_model is not self.model

    # --- building blocks of a run
    def engine_choice(self, config: RainConfig) -> EngineChoice:
        """Which engine serves this model for runs of `config.max_length` tokens, and why (decided once)."""
        max_length = min(config.max_length, model_context(self.model))
        with self._lock:
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

    def weights_fingerprint(self) -> str | None:
        """What identifies the judge's weights as computed here (contents, dtype, device): the on-disk scale's key."""
        return weights_fingerprint(self.judge_model)

    def _judge_over(self, lm: LanguageModel, config: RainConfig, scale: float) -> SelfJudge:
        """The self-judge over `lm`, or, when the judge has weights of its own, over a fresh engine of the same
        kind on those. A trie engine also adopts the judge's constant prefix, computed once per model."""
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
        with self._lock:
            key = (id(self.judge_model), tokens)
            prefix = self._judge_prefixes.get(key)
            if prefix is None:
                engine = TrieEngine(self.judge_model, max_length, kv_cache_bytes=1 << 30, verify=False)
                prefix = self._judge_prefixes[key] = engine.export_prefix(tokens)
            return prefix


def _copies(model, precision: Precision, spec: str, trust_remote_code: bool):
    """(generation model, judge model) from the loaded `model`: the same object when the precisions agree.

    Casting a float32 copy rounds the same dequantised values once, as loading in the narrower dtype does,
    so one load serves both; any other pair loads the judge on its own.
    """
    generation, judge = precision.dtype, precision.judge_dtype
    if precision.int8:                                  # int8 generation weights, made from the float32 ones
        judge_model = model if judge == torch.float32 else copy.deepcopy(model).to(judge)
        return generation_copy(model, INT8), judge_model
    if model.dtype != torch.float32 or torch.float32 not in (generation, judge):
        model = model.to(generation)
        if generation == judge:
            return model, model
        judge_model, _ = load_causal_lm(None if spec == EMBEDDED else spec, str(model.device), name(judge),
                                        trust_remote_code)
        return model, judge_model
    if generation == judge:
        return model, model
    other = copy.deepcopy(model).to(generation if judge == torch.float32 else judge)
    return (other, model) if judge == torch.float32 else (model, other)
