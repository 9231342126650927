"""The search's model interface on vLLM: many searches share one serving engine (`--backend vllm`).

The search is unchanged. Its candidate and rollout programs (rain/core/decoding.py) first yield a request that
describes their whole job; `VllmLM.serve` answers it with one or two vLLM requests instead of one forward per
token, and the judge reads its two label probabilities with one-token requests:
- 1-token sets (`TopTokensRequest`): one greedy token with the top-64 `logprobs` (dynamic addition reads 20, and
  every token tied with the 20th); softmax over the top `count`
  log-probabilities divided by T equals `top_k_probs` of the logits (a softmax ignores the shared log-sum-exp);
- multi-token sets (`PathsRequest`): a greedy request and one request with `n = attempts`, `top_k`,
  the preset's temperature and a seed drawn from the search's generator; each step's top-k raw
  log-probabilities give that step's renormalised probability exactly as `top_k_probs` (group_getp, spec §1.3),
  then `assemble_paths` drops duplicates and clamps the greedy path as `path_program` does;
- rollouts (`RolloutRequest`): full-softmax sampling that vLLM stops at a token whose text ends with a clause
  mark (`clause_stop_ids`, built from the vocabulary) or at an end-of-turn id; the program's own stop test then
  cuts the sample where the trie engine would have stopped, and asks for more if it would not have;
- the judge (`VllmJudge`): both option orders as one-token requests with `logprob_token_ids`; the constant judge
  prefix comes from vLLM's automatic prefix cache (never `prompt_logprobs`, which bypasses that cache).

One `VllmEngine` (an `AsyncLLM` on its own event-loop thread) serves every search of a process: each search runs
in its caller's thread, submits requests and waits on futures, so vLLM batches the forwards of concurrent searches.
vLLM is imported only here, and only when an engine is built: the rest of the package runs without it. That is
why this backend is one file, over 400 lines.
"""
from __future__ import annotations

import asyncio
import atexit
import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from rain.backends.base_runtime import EMBEDDER_NAME, BaseRuntime
from rain.backends.embedder import MiniLMEmbedder
from rain.backends.models import EMBEDDED_SPEC, HFCodec, ModelLoadError, embedded_embedder_dir, embedded_model_file
from rain.backends.precision import Precision
from rain.backends.weights_cache import cached_model_dir
from rain.core.config import RainConfig
from rain.core.decoding import (
    Candidate,
    PathsRequest,
    RolloutRequest,
    TopTokensRequest,
    assemble_paths,
    single_token_candidates,
)
from rain.core.judge import SelfJudge
from rain.core.lm import ComputeStats, Evaluation, TokenState
from rain.core.prompts import Conversation, PromptFormat, build_conversation

KV_CACHE_GIB = "2"                  # VLLM_CPU_KVCACHE_SPACE default: ample for a 135M model's searches
MAX_LOGPROBS = 64                   # dynamic addition reads the top 20 and their ties; room for larger counts
PREFIX_BLOCK = 32                   # prefix-cache granularity in tokens (CPU default 128: short prompts never hit)
SEED_RANGE = 2**31 - 1              # per-request seeds are drawn from the search's generator in [0, this)
NO_LOGPROB = -math.inf
MAX_SEQS = 512                      # rows in flight: a search holds up to ~14 (attempts + greedy + rollout + the
                                    # judge's two), so 32 searches need ~450; vLLM's engine default is 128
STEP_TOKENS_METRIC = "vllm:iteration_tokens_total"   # histogram: one observation per engine step, its tokens


class VllmUnavailableError(ModelLoadError):
    """vLLM is not installed in this environment (it lives in .venv-vllm: `make vllm`)."""


def require_vllm() -> None:
    """Fail in one line before any weights are read when this environment has no vLLM."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise VllmUnavailableError("--backend vllm needs vLLM, which lives in its own environment: run `make vllm` "
                                   "and use .venv-vllm/bin/python")


def draw_seed(generator: torch.Generator) -> int:
    """A vLLM request seed from the search's own generator, so a vLLM run is reproducible from config.seed."""
    return int(torch.randint(SEED_RANGE, (1,), generator=generator, device=generator.device))


def clause_stop_ids(codec: HFCodec, stop_chars: str) -> frozenset[int]:
    """Ids whose own text ends with a clause mark: where simg's `last_char(decode(answer)) in stop_chars` fires.

    The decoded answer ends with the last token's text whenever that text is non-empty, so these ids are where
    vLLM should stop; `VllmLM._rollout` still applies the program's own test to every token it gets back.
    """
    if not stop_chars:
        return frozenset()
    vocabulary = codec.tokenizer.get_vocab().values()
    return frozenset(i for i in vocabulary if (text := codec.decode([i])) and text[-1] in stop_chars)


# --- the shared engine ----------------------------------------------------------------------------------

class VllmEngine:
    """One vLLM AsyncLLM, run by an event loop on its own thread; `submit` is safe from any thread."""

    def __init__(self, model_dir: str | Path, dtype: str = "float32", max_model_len: int = 4096, seed: int = 0,
                 enforce_eager: bool | None = None):
        """`enforce_eager` (default: on CPU only) skips torch.compile, whose warm-up took over 5 minutes on 2 busy
        cores for a 135M model; on CUDA the compiled graphs are what make a small model's step cheap."""
        on_cpu = not torch.cuda.is_available()
        if enforce_eager is None:
            enforce_eager = on_cpu
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")      # its INFO lines would drown the CLI output
        try:
            from vllm import SamplingParams
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as error:
            raise VllmUnavailableError(f"--backend vllm needs vLLM ({error}); run `make vllm` and use "
                                       ".venv-vllm/bin/python") from error
        self.SamplingParams = SamplingParams
        self.model_dir, self.max_model_len = str(model_dir), max_model_len
        self._ids = itertools.count()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm-engine", daemon=True)
        self.thread.start()
        args = AsyncEngineArgs(model=self.model_dir, dtype=dtype, max_model_len=max_model_len, seed=seed,
                               enable_prefix_caching=True, block_size=PREFIX_BLOCK, max_logprobs=MAX_LOGPROBS,
                               max_num_seqs=MAX_SEQS,
                               # vLLM-CPU 0.32 kills the engine when a seeded request's prompt is split over steps
                               # ("CPU Generator does not use offset", seen with 32 searches starting at once):
                               # whole prompts only there (vLLM then allows max_model_len tokens per step)
                               enable_chunked_prefill=False if on_cpu else None,
                               disable_log_stats=False,      # engine-step statistics (`steps`)
                               enforce_eager=enforce_eager)

        async def build():
            return AsyncLLM.from_engine_args(args)

        self.llm = asyncio.run_coroutine_threadsafe(build(), self.loop).result()
        self.closed = False
        atexit.register(self.close)      # a clean shutdown, else the engine's death is logged as an error at exit

    def params(self, **options) -> Any:
        """SamplingParams that return only the final output, token ids without text."""
        from vllm.sampling_params import RequestOutputKind

        return self.SamplingParams(output_kind=RequestOutputKind.FINAL_ONLY, detokenize=False, **options)

    def submit(self, tokens: Sequence[int], params) -> Future:
        """Start one request; the future holds its final `RequestOutput`."""
        request_id = f"rain-{next(self._ids)}"

        async def run():
            final = None
            async for output in self.llm.generate({"prompt_token_ids": list(tokens)}, params, request_id):
                final = output
            return final

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def steps(self) -> tuple[int, int]:
        """(engine steps, tokens they computed) since the engine started: vLLM's own iteration statistics."""
        from vllm.v1.metrics.reader import get_metrics_snapshot

        return step_totals(get_metrics_snapshot())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        llm, self.llm = self.llm, None
        llm.shutdown()
        del llm           # AsyncLLM.__del__ runs now, not at interpreter teardown (where it printed a TypeError)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def step_totals(metrics: Sequence[Any]) -> tuple[int, int]:
    """(steps, tokens) from a vLLM metrics snapshot: the iteration-tokens histogram's count (one observation per
    engine step that produced output) and sum (prompt tokens computed, cache hits excluded, plus generated
    tokens), over every engine of the process."""
    histograms = [metric for metric in metrics if metric.name == STEP_TOKENS_METRIC]
    return sum(h.count for h in histograms), int(sum(h.sum for h in histograms))


def step_logprobs(entry: dict, top_k: int) -> dict[int, float]:
    """{token: raw log-probability} of the top-k of one step (vLLM adds the chosen token, ranked or not)."""
    return {token: lp.logprob for token, lp in entry.items() if lp.rank is not None and lp.rank <= top_k}


def renormalised_step(entry: dict, chosen: int, top_k: int, temperature: float) -> float:
    """log p(chosen) under softmax(logits / T) restricted to the top k (top_k_probs, spec §1.3 group_getp)."""
    top = step_logprobs(entry, top_k)
    if chosen not in top:
        return NO_LOGPROB
    scaled = torch.tensor(list(top.values()), dtype=torch.float64) / temperature
    return float(top[chosen] / temperature - torch.logsumexp(scaled, 0))


# --- one search's view of the engine ---------------------------------------------------------------------

class VllmLM:
    """LanguageModel for one search: programs are served natively; `next_logits` is the slow exact fallback."""

    name = "vllm"
    note = "vllm: one shared AsyncLLM serves the search's requests (float32, automatic prefix caching)"

    def __init__(self, engine: VllmEngine, codec: HFCodec, vocab_size: int):
        self.engine, self.codec = engine, codec
        self.device = torch.device("cpu")
        self.vocab_size = vocab_size
        self.max_length = engine.max_model_len - 1
        self.stats = ComputeStats()
        self._clause_ids: dict[str, frozenset[int]] = {}

    # --- the LanguageModel protocol
    def next_logits(self, states: Sequence[TokenState]) -> torch.Tensor:
        """Log-probabilities of the top MAX_LOGPROBS next tokens, -inf elsewhere: exact for argmax and top-k
        (k <= MAX_LOGPROBS) sampling, which is all the search's programs do outside `serve`."""
        params = self.engine.params(max_tokens=1, temperature=0.0, logprobs=MAX_LOGPROBS)
        outputs = self._wait([self.engine.submit(state, params) for state in states], states)
        logits = torch.full((len(states), self.vocab_size), NO_LOGPROB)
        for row, output in enumerate(outputs):
            for token, lp in output.outputs[0].logprobs[0].items():
                logits[row, token] = lp.logprob
        return logits

    def judge_logits(self, states: Sequence[TokenState], shared_prefix: int) -> torch.Tensor:
        return self.next_logits(states)

    def release(self, keep: TokenState, under: TokenState) -> None:
        """vLLM's prefix cache evicts by itself."""

    def prefetch(self, states: Sequence[TokenState]) -> None:
        """Requests start when asked for; nothing to do ahead."""

    # --- programs served natively (rain/core/decoding.py requests)
    def serve(self, requests: Sequence[Any]) -> Iterator[Any]:
        """Each program's result, in order, as each arrives. Every request is submitted before any is awaited, so
        they run as one batch; the caller takes the first result (a rollout's) while the others still decode, so
        what it starts then (the judge's prefetch) joins those steps instead of waiting for them to end."""
        started = [self._start(request) for request in requests]
        return (finish() for finish in started)

    def _start(self, request: Any):
        if isinstance(request, TopTokensRequest):
            return self._top_tokens(request)
        if isinstance(request, PathsRequest):
            return self._paths(request)
        if isinstance(request, RolloutRequest):
            return self._rollout(request)
        raise TypeError(f"no vLLM implementation for {type(request).__name__}")

    def _top_tokens(self, request: TopTokensRequest):
        """The top MAX_LOGPROBS log-probabilities, more than the 20 asked for: a token tied with the count-th or
        the keep_ranked-th is kept, as `single_token_candidates` keeps it on full logits (TopKLogitsWarper; the
        shared log-sum-exp keeps ties tied), unless more than MAX_LOGPROBS - 20 tokens tie there."""
        wanted = max(request.count, request.keep_ranked, MAX_LOGPROBS)
        future = self.engine.submit(request.state, self.engine.params(max_tokens=1, temperature=0.0, logprobs=wanted))

        def finish() -> tuple[list[Candidate], list[tuple[int, float]]]:
            output = self._wait([future], [request.state])[0]
            logprobs = step_logprobs(output.outputs[0].logprobs[0], wanted)
            logits = torch.full((self.vocab_size,), NO_LOGPROB)
            logits[list(logprobs)] = torch.tensor(list(logprobs.values()))
            return single_token_candidates(logits, request.count, request.temperature, request.keep_ranked)

        return finish

    def _paths(self, request: PathsRequest):
        common = {"max_tokens": request.length, "logprobs": request.top_k, "stop_token_ids": sorted(request.eos_ids),
                  "ignore_eos": True}
        greedy = self.engine.submit(request.state, self.engine.params(temperature=0.0, **common))
        sampled = self.engine.submit(request.state, self.engine.params(
            n=request.attempts, temperature=request.temperature, top_k=request.top_k,
            seed=draw_seed(request.generator), **common)) if request.attempts > 0 else None

        def finish() -> list[Candidate]:
            outputs = self._wait([greedy] + ([sampled] if sampled else []), [request.state] * 2)
            rows = [outputs[0].outputs[0]] + (sorted(outputs[1].outputs, key=lambda o: o.index) if sampled else [])
            paths = []
            for row in rows:
                tokens = tuple(row.token_ids)
                log_prob = sum(renormalised_step(entry, token, request.top_k, request.temperature)
                               for entry, token in zip(row.logprobs, tokens))
                paths.append(Candidate(tokens, math.exp(log_prob)))
            return assemble_paths(paths, request.wanted)

        return finish

    def _rollout(self, request: RolloutRequest):
        """Sample until vLLM stops, keep tokens up to where the program's own test fires, repeat if it did not."""
        rules = request.rules
        stop_ids = self._clause_ids.get(rules.stop_chars) if not rules.to_eos else frozenset()
        if stop_ids is None:
            stop_ids = self._clause_ids[rules.stop_chars] = clause_stop_ids(self.codec, rules.stop_chars)
        stop_ids = sorted(stop_ids | self.codec.eos_ids)

        def chunk(sampled: list[int]) -> Future | None:
            if request.stopped(sampled):
                return None
            budget = min(rules.max_tokens - len(sampled), rules.max_length + 1 - len(request.state) - len(sampled),
                         self.max_length - len(request.state) - len(sampled))
            if budget < 1:
                return None
            params = self.engine.params(max_tokens=budget, temperature=1.0, top_k=0, top_p=1.0, ignore_eos=True,
                                        seed=draw_seed(request.generator), stop_token_ids=stop_ids)
            return self.engine.submit(list(request.state) + sampled, params)

        first = chunk([])

        def finish() -> list[int]:
            sampled: list[int] = []
            future = first
            while future is not None:
                output = self._wait([future], [request.state])[0]
                for token in output.outputs[0].token_ids:
                    sampled.append(token)
                    if request.stopped(sampled):
                        return sampled
                future = chunk(sampled)
            return sampled

        return finish

    def vanilla_tokens(self, state: Sequence[int], max_new_tokens: int, max_length: int, eos_ids: frozenset[int],
                       turn_ended: Callable[[Sequence[int]], bool], temperature: float = 0.0,
                       generator: torch.Generator | None = None) -> Iterator[int]:
        """`rain.core.decoding.vanilla_tokens` in one request: greedy (T = 0) or full-softmax sampling at T."""
        budget = min(max_new_tokens, max_length - len(state), self.max_length - len(state))
        if budget < 1:
            return
        seed = draw_seed(generator) if temperature > 0 and generator is not None else None
        params = self.engine.params(max_tokens=budget, temperature=temperature, top_k=0, ignore_eos=True,
                                    stop_token_ids=sorted(eos_ids), seed=seed)
        output = self._wait([self.engine.submit(state, params)], [state])[0]
        answer: list[int] = []
        for token in output.outputs[0].token_ids:
            answer.append(token)
            yield token
            if token in eos_ids or turn_ended(answer):
                return

    def _wait(self, futures: Sequence[Future], states: Sequence[TokenState]) -> list[Any]:
        """Results of `futures`, counted in `stats`: one call per request, prompt tokens vLLM did not have cached
        plus generated tokens as forwarded tokens."""
        outputs = [future.result() for future in futures]
        for output in outputs:
            self.stats.forward_calls += 1
            cached = output.num_cached_tokens or 0
            generated = sum(len(o.token_ids) for o in output.outputs)
            self.stats.forwarded_tokens += len(output.prompt_token_ids) - cached + generated
            self.stats.distinct_tokens += len(output.prompt_token_ids) - cached + generated
        return outputs


class VllmJudge(SelfJudge):
    """SelfJudge whose two orders are one-token requests reading only the label log-probabilities."""

    def __init__(self, lm: VllmLM, *args, **kwargs):
        super().__init__(lm, *args, **kwargs)
        self._pending: dict[tuple[str, str], list[Future]] = {}

    def _submit(self, question: str, answer: str) -> list[Future]:
        params = self.lm.engine.params(max_tokens=1, temperature=0.0, logprob_token_ids=list(self.label_ids))
        return [self.lm.engine.submit(state, params) for state in self.states(question, answer)]

    def prefetch(self, question: str, answer: str) -> None:
        """Start both orders now (the search calls this when the rollout ends, while the expansion still runs)."""
        self._pending.setdefault((question, answer), self._submit(question, answer))

    def evaluate(self, question: str, answer: str) -> Evaluation:
        futures = self._pending.pop((question, answer), None) or self._submit(question, answer)
        outputs = self.lm._wait(futures, self.states(question, answer))
        prefix = len(self.prompt.prefix)
        for output in outputs:
            self.lm.stats.judge_prefix_tokens += prefix
            self.lm.stats.judge_prefix_hits += min(output.num_cached_tokens or 0, prefix)
        rows = []
        for output in outputs:                    # label probabilities per order, from the judge's own label ids
            entry = output.outputs[0].logprobs[0]
            rows.append({label: math.exp(entry[token].logprob) for label, token in zip(self.labels, self.label_ids)})
        parts = self.description.parts(rows)
        return Evaluation(score=self.description.score(parts), orders=tuple(rows), parts=tuple(parts))


# --- the model folder vLLM reads ---------------------------------------------------------------------------

def model_folder(spec: str | None) -> Path:
    """A plain safetensors folder vLLM can read (it refuses GGUF): a GGUF spec goes through the weights cache
    (rain/backends/weights_cache.py, float32 so the judge's small logit gaps survive); a folder is used as is."""
    if spec in (None, EMBEDDED_SPEC):
        return cached_model_dir(embedded_model_file(), torch.float32)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"no such GGUF file: {path}")
        return cached_model_dir(path, torch.float32)
    return path if path.is_dir() else Path(spec)


# --- the runtime the CLI and the app hold ------------------------------------------------------------------

class VllmRuntime(BaseRuntime):
    """A runtime over one shared vLLM engine instead of torch weights in this process: the torch runtime's sibling
    (what both do is rain/backends/base_runtime.py).

    Every search gets its own VllmLM (its own counters) and judge; the engine, tokenizer and embedder are shared,
    so searches in concurrent threads (`run --concurrency`, the app's visitors) batch in vLLM.
    """

    def __init__(self, model_spec: str | None = None, embedder_dir: str | None = None, max_model_len: int = 4096,
                 server: VllmEngine | None = None):
        from transformers import AutoConfig, AutoTokenizer, GenerationConfig

        require_vllm()
        self.folder = model_folder(model_spec)
        tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        model_config = AutoConfig.from_pretrained(str(self.folder))
        try:
            generation = GenerationConfig.from_pretrained(str(self.folder))
        except OSError:
            generation = None
        context = getattr(model_config, "max_position_embeddings", max_model_len)
        self.server = server or VllmEngine(self.folder, max_model_len=min(max_model_len, context))
        self.vocab_size = model_config.vocab_size
        super().__init__(model_spec or "embedded", HFCodec(tokenizer, generation), tokenizer,
                         MiniLMEmbedder(embedder_dir or embedded_embedder_dir(), device="cpu"),
                         embedder_dir or EMBEDDER_NAME, "cpu",
                         Precision(torch.float32, torch.float32, "vLLM serves float32 weights", False))

    def paper_estimate(self) -> None:
        """vLLM's speed is not probed: the app keeps its quick budget as the default."""
        return None

    def weights_fingerprint(self) -> None:
        """None: the scale is not stored on disk (an engine start takes a minute; calibrating, seconds)."""
        return None

    def engine_choice(self, config: RainConfig) -> type[VllmLM]:
        """What serves the runs (its `name` and `note` go into the record's stats)."""
        return VllmLM

    def engine(self, config: RainConfig, reference: bool = False) -> VllmLM:
        if reference:
            raise ValueError("the authors' compute pattern (reference) exists only on the trie backend")
        return VllmLM(self.server, self.codec, self.vocab_size)

    def conversation(self, question: str, config: RainConfig, prompt_format: PromptFormat = "auto") -> Conversation:
        context = min(config.max_length, self.server.max_model_len - 1)
        return build_conversation(self.codec, self.tokenizer, question, prompt_format, max_prompt_tokens=context)

    def _judge_over(self, lm: VllmLM, config: RainConfig, scale: float) -> VllmJudge:
        """The judge at `scale`; BaseRuntime.judge and BaseRuntime.judge_scale ("auto" calibration) build it here."""
        return VllmJudge(lm, self.codec, self.tokenizer, config.judge_format, config.criterion, scale)

    def close(self) -> None:
        self.server.close()
