"""What a run needs of a loaded model (`Runtime`), and a runtime by its spec without importing a backend until
one is asked for.

`Runtime` is the protocol `run_session` (rain/runs/session.py), `fork` and `eval` take; the torch runtime
(rain/backends/torch_runtime.py) and the vLLM runtime (rain/backends/vllm_runtime.py) implement it as siblings
(what they share is rain/backends/base_runtime.py), and so does the tests' one fake. The runtime describes its
model, engine and judge; the session assembles the record (rain/runs/session.py `new_record`).
`load_runtime(spec, backend)` is how the CLI, the app and the Ray workers get one. This module imports neither torch nor vLLM: the backend's module is imported inside `load_runtime`, on purpose (a lazy import
of an optional heavy dependency), so that `import rain`, the page and tree-file tools run without loading either.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

from rain.core.config import RainConfig
from rain.core.lm import Judge, LanguageModel, TextCodec
from rain.core.prompts import Conversation, PromptFormat
from rain.core.tree import TokenSet

if TYPE_CHECKING:                       # annotations only: the search module loads torch
    from rain.core.search import Search

BACKEND_ENV = "RAIN_BACKEND"        # the app's backend: trie (default) or vllm (one engine shared by all visitors)
BACKENDS = ("trie", "vllm")


class Runtime(Protocol):
    """A loaded model a run is made on: its text codec, fresh engines and judges, the search and the vanilla
    decoder over them, and the record's metadata. Weights are shared; every run gets fresh engines."""

    name: str                   # the model's spec as the user gave it ("embedded" for the default)
    codec: TextCodec
    tokenizer: Any              # the model's Hugging Face tokenizer (its vocabulary: fork checks a tree's tokens)

    def resolved(self, config: RainConfig) -> RainConfig:
        """`config` with judge_logit_scale "auto" replaced by this model's number (the record carries it)."""
        ...

    def conversation(self, question: str, config: RainConfig, prompt_format: PromptFormat = "auto") -> Conversation:
        ...

    def engine(self, config: RainConfig, reference: bool = False) -> LanguageModel:
        """A fresh engine: its compute counters are one part's own."""
        ...

    def judge(self, lm: LanguageModel, config: RainConfig) -> Judge:
        ...

    def search(self, conversation: Conversation, config: RainConfig, reference: bool = False,
               prefix: Sequence[TokenSet] = ()) -> Search:
        ...

    def vanilla_stream(self, conversation: Conversation, config: RainConfig, temperature: float = 0.0,
                       lm: LanguageModel | None = None, token_ids: list[int] | None = None) -> Iterator[str]:
        """The vanilla answer's text, growing token by token (rain/core/decoding.py `vanilla_stream`)."""
        ...

    def engine_stats(self, config: RainConfig, lm: LanguageModel | None = None) -> dict:
        """The record's `engine`, `engine_note` and judge-scale stats for a run on `lm` (None: no search)."""
        ...

    def model_info(self, engine: str) -> dict:
        """The record's `model`: name, embedder, device, precision, and `engine`."""
        ...

    def judge_info(self, config: RainConfig, judge: Judge | None = None) -> dict:
        """The record's `judge`: `judge`'s prompts, format and scale (None: the judge `config` would build)."""
        ...


def backend_choice(backend: str | None = None) -> str:
    """The backend asked for, else $RAIN_BACKEND, else trie."""
    return backend or os.environ.get(BACKEND_ENV, "trie")


def serving_defaults(backend: str | None = None) -> tuple[int, int]:
    """(runs at once, requests waiting) that suit a backend when an app serves visitors.

    The trie engine gives every search its own forwards on a share of the cores, so a few at once; one vLLM engine
    puts every search it holds into the same steps, and more searches per step is more simulations per second
    (docs/scaling.md: 16 visitors on the 2-core box, more with cores or a GPU)."""
    return (16, 64) if backend_choice(backend) == "vllm" else (2, 16)


def load_runtime(model_spec: str | None = None, backend: str | None = None, **options: Any) -> Runtime:
    """A runtime on `backend` (default $RAIN_BACKEND, else trie) for `model_spec` (None: the embedded model).

    `options` (device, dtype, trust_remote_code, judge_dtype) go to the torch runtime; the vLLM runtime
    (rain/backends/vllm_runtime.py, in .venv-vllm) serves float32 on its own engine and takes none."""
    backend = backend_choice(backend)
    if backend == "vllm":
        from rain.backends.vllm_runtime import VllmRuntime  # lazy: vLLM is optional and heavy

        return VllmRuntime(model_spec)
    if backend != "trie":
        raise ValueError(f"unknown backend {backend!r} (${BACKEND_ENV}): use trie or vllm")
    from rain.backends.torch_runtime import Runtime  # lazy: torch and transformers load only here

    return Runtime(model_spec, **options)
