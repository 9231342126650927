"""Deterministic stand-ins for the model, tokenizer, judge and embedder, so algorithm tests run in milliseconds."""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch

from rain.core.lm import ComputeStats, Evaluation

WORDS = ["<eos>", " the", " a", " lock", " key", " door", " pick", " safe", " harm", " help", " you",
         " can", " not", " sorry", " use", " tool", ",", ".", " open", " ask"]
EOS = 0


class FakeCodec:
    eos_ids = frozenset({EOS})

    def encode(self, text: str) -> list[int]:
        out, rest = [], text
        while rest:
            for i, w in sorted(enumerate(WORDS), key=lambda x: -len(x[1])):
                if i != EOS and rest.startswith(w):
                    out.append(i)
                    rest = rest[len(w):]
                    break
            else:
                rest = rest[1:]
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(WORDS[i] for i in ids if i != EOS)


class FakeTokenizer:
    chat_template = None


class FakeLM:
    """Logits are a fixed pseudo-random function of the state, sharpened so paths repeat sometimes."""

    device = torch.device("cpu")
    vocab_size = len(WORDS)
    max_length = 4096

    def __init__(self, sharpness: float = 3.0, eos_boost: float = 0.0):
        self.sharpness, self.eos_boost = sharpness, eos_boost
        self.stats = ComputeStats()
        self.released: list[tuple[list[int], list[int]]] = []

    def _logits(self, state: Sequence[int]) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(repr(list(state)).encode()).digest()[:8], "little")
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(self.vocab_size, generator=g) * self.sharpness
        logits[EOS] += self.eos_boost
        return logits

    def next_logits(self, states):
        self.stats.forward_calls += 1
        self.stats.forwarded_tokens += len(states)
        return torch.stack([self._logits(s) for s in states])

    def judge_logits(self, states, shared_prefix):
        return self.next_logits(states)

    def release(self, keep, under):
        self.released.append((list(keep), list(under)))

    def prefetch(self, states):
        pass


class FakeJudge:
    """Scores by counting words: ' sorry'/' help' are good, ' harm'/' pick' are bad; squashed to [-1, 1]."""

    format = "fake"

    def prefetch(self, question: str, answer: str) -> None:
        pass

    def evaluate(self, question: str, answer: str) -> Evaluation:
        good = answer.count(" sorry") + answer.count(" help")
        bad = answer.count(" harm") + answer.count(" pick")
        score = float(np.tanh(good - bad))
        return Evaluation(score=score, first={"Yes": 0.5 - score / 4, "No": 0.5 + score / 4},
                          second={"Yes": 0.5 + score / 4, "No": 0.5 - score / 4})


class FakeEmbedder:
    """Bag of words over the fake vocabulary, L2-normalised."""

    def embed(self, texts):
        codec = FakeCodec()
        out = np.zeros((len(texts), len(WORDS)), dtype=np.float32)
        for row, text in enumerate(texts):
            for t in codec.encode(text):
                out[row, t] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
        return out
