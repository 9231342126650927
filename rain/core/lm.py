"""The narrow interfaces through which the search meets a model.

The search (rain/core/search.py) never imports torch models, tokenizers or encoders directly: it asks a
`LanguageModel` for next-token logits of whole token states, a `TextCodec` to turn tokens into text, a
`Judge` for self-evaluation scores and an `Embedder` for sentence embeddings. Real implementations live in
rain/backends/engine/, rain/core/judge.py, rain/backends/embedder.py and rain/backends/models.py; tests use the fakes in tests/fakes.py.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:                   # annotations only: the page imports these protocols without loading torch
    import torch

TokenState = Sequence[int]


@dataclass
class ComputeStats:
    """What a LanguageModel spent; the benchmark and the stats line read these counters."""

    forward_calls: int = 0          # model forward passes
    forwarded_tokens: int = 0       # tokens fed through the model, recomputations included
    distinct_tokens: int = 0        # distinct (prefix, token) positions ever needed: the minimum work
    judge_prefix_tokens: int = 0    # judge-prefix tokens requested over all judge calls
    judge_prefix_hits: int = 0      # ... of which were already cached
    kv_bytes: int = 0               # KV currently held
    kv_peak_bytes: int = 0          # most KV ever held at once
    evicted_tokens: int = 0         # cached tokens dropped to stay under the KV cap
    preloaded_tokens: int = 0       # positions adopted ready-made (the judge prefix, computed once per model)

    def plus(self, other: ComputeStats) -> ComputeStats:
        """Two engines' counters together (a judge on weights of its own has its own engine); both are held at
        once, so their peaks add up too."""
        return ComputeStats(*(a + b for a, b in zip(astuple(self), astuple(other))))

    @property
    def recompute_ratio(self) -> float:
        return self.forwarded_tokens / max(self.distinct_tokens, 1)

    @property
    def judge_prefix_hit_rate(self) -> float:
        return self.judge_prefix_hits / max(self.judge_prefix_tokens, 1)

    def as_dict(self) -> dict:
        return {
            "forward_calls": self.forward_calls,
            "forwarded_tokens": self.forwarded_tokens,
            "distinct_tokens": self.distinct_tokens,
            "recompute_ratio": round(self.recompute_ratio, 4),
            "judge_prefix_hit_rate": round(self.judge_prefix_hit_rate, 4),
            "kv_bytes": self.kv_bytes,
            "kv_peak_bytes": self.kv_peak_bytes,
            "evicted_tokens": self.evicted_tokens,
            "preloaded_tokens": self.preloaded_tokens,
        }


class LanguageModel(Protocol):
    """Next-token logits for complete token states (prompt included).

    Implementations decide what to recompute: the reuse engine computes each distinct token once, the
    reference engine reproduces the authors' compute pattern. Results must not depend on that choice
    beyond float rounding.
    """

    device: torch.device
    vocab_size: int
    max_length: int                 # context window in tokens
    stats: ComputeStats

    def next_logits(self, states: Sequence[TokenState]) -> torch.Tensor:
        """Float32 logits [len(states), vocab] for the token after each state (on `device`)."""
        ...

    def judge_logits(self, states: Sequence[TokenState], shared_prefix: int) -> torch.Tensor:
        """Like next_logits, for self-evaluation prompts whose first `shared_prefix` tokens are constant."""
        ...

    def release(self, keep: TokenState, under: TokenState) -> None:
        """Forget cached work below `under` that does not extend `keep` (called when the search commits)."""
        ...

    def prefetch(self, states: Sequence[TokenState]) -> None:
        """A hint: these states' logits will be asked for soon, so the next forward may compute them along.

        An engine may ignore it (the reference does). Results never depend on it; only the number of forwards does.
        """
        ...


class TextCodec(Protocol):
    """The tokenizer, reduced to what the search needs."""

    eos_ids: frozenset[int]         # every id that ends a turn (EOS, end-of-turn)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with no special tokens added."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens skipped."""
        ...


class Embedder(Protocol):
    """Sentence embeddings (the paper: Sentence-BERT; the authors: all-MiniLM-L6-v2)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Float array [len(texts), dim]."""
        ...


@dataclass(frozen=True)
class Evaluation:
    """One self-evaluation of an exchange (docs/algorithm.md §1.3 getv).

    `score` is in [-1, 1]: -1 harmful (or untruthful, negative), +1 harmless. `orders` holds the judge's label
    probabilities for each of its K option orders, e.g. ({"A": 0.61, "B": 0.39}, {"A": 0.45, "B": 0.55});
    `parts` each order's part of the score as the judge's description (rain/core/judge.py `JudgeDescription`)
    defines it (empty when a judge has none).
    """

    score: float
    orders: tuple[dict[str, float], ...] = ()
    parts: tuple[float, ...] = ()


class Judge(Protocol):
    """Scores a (question, partial answer) exchange."""

    format: str

    def evaluate(self, question: str, answer: str) -> Evaluation:
        ...

    def prefetch(self, question: str, answer: str) -> None:
        """A hint that `evaluate(question, answer)` comes next (see LanguageModel.prefetch)."""
        ...
