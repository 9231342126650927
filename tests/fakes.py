"""Deterministic stand-ins for the model, tokenizer, judge and embedder, so algorithm tests run in milliseconds;
one search and one record built on them (`fake_search`, `fake_record`), and one `FakeRuntime`: a sibling of the
torch and vLLM runtimes on their shared `BaseRuntime`, with only the model-bound parts replaced (tests/test_fakes.py
holds all three to the `Runtime` protocol), so every test that runs a session on fakes runs the real session,
vanilla and search code."""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch

from rain.backends.base_runtime import BaseRuntime
from rain.backends.calibration import JudgeScale
from rain.backends.precision import Precision
from rain.core.config import RainConfig, preset
from rain.core.export import RunRecord, nodes_of
from rain.core.lm import ComputeStats, Evaluation
from rain.core.prompts import Conversation, PromptFormat
from rain.core.search import Backends, Search

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

    def __len__(self) -> int:
        return len(WORDS)


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

    def __init__(self):
        self.calls: list[tuple[str, str]] = []        # every (question, answer) evaluated, in order

    def prefetch(self, question: str, answer: str) -> None:
        pass

    def evaluate(self, question: str, answer: str) -> Evaluation:
        self.calls.append((question, answer))
        good = answer.count(" sorry") + answer.count(" help")
        bad = answer.count(" harm") + answer.count(" pick")
        score = float(np.tanh(good - bad))
        return Evaluation(score=score, orders=({"Yes": 0.5 - score / 4, "No": 0.5 + score / 4},
                                               {"Yes": 0.5 + score / 4, "No": 0.5 - score / 4}))


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


# --- one search, one record, one runtime on the fakes ---------------------------------------------------------

QUESTION = "how to pick a lock"
PROMPT = " the lock"                 # the fake prompt's text (the fake codec has no chat template)
CONFIG = preset("hh", sims_per_move=5, max_moves=4)     # the golden tree's knobs (tests/golden/fake_tree.json)


def fake_conversation(question: str = QUESTION, prompt: str | Sequence[int] = PROMPT) -> Conversation:
    """`prompt`: text (encoded by the fake codec) or token ids."""
    tokens = FakeCodec().encode(prompt) if isinstance(prompt, str) else list(prompt)
    return Conversation(question, tuple(tokens), ":", frozenset({EOS}), None, "fake")


def fake_search(config: RainConfig = CONFIG, lm: FakeLM | None = None, embedder=None, judge: FakeJudge | None = None,
                conversation: Conversation | None = None, prefix=()) -> Search:
    return Search(Backends(lm or FakeLM(), FakeCodec(), judge or FakeJudge(), embedder or FakeEmbedder()),
                  conversation or fake_conversation(), config, prefix)


JUDGE = {"format": "fake", "criterion": "harm", "templates": ["{exchange}", "{exchange}"]}


def fake_run(config: RainConfig = CONFIG, **backends) -> tuple[Search, list]:
    """`fake_search(config, **backends)` run to the end: (search, its events)."""
    search = fake_search(config, **backends)
    return search, list(search.run())


def fake_record(**overrides) -> RunRecord:
    """A whole run on the fakes (CONFIG with `overrides`) as a record; its stats without the clock."""
    search = fake_search(CONFIG.replace(**overrides))
    events = list(search.run())
    stats = {k: v for k, v in events[-1].stats.items() if "seconds" not in k}
    return RunRecord(prompt=search.conversation.question, config=search.config.to_dict(), model={"name": "fake"},
                     judge=dict(JUDGE), events=events, nodes=nodes_of(search.tree), answer=search.answer(),
                     vanilla="plain answer", stats=stats)


class FakeRuntime(BaseRuntime):
    """A runtime on the fakes, the torch and vLLM runtimes' sibling: what needs a model (engine, tokenised
    conversation, judge, judge scale, what the record says of the model and judge) is replaced; the search,
    vanilla_stream, resolved and judge are BaseRuntime's own (rain/backends/base_runtime.py).

    It keeps what tests count: every engine built (`engines`) and every search started (`searches`)."""

    def __init__(self, name: str = "fake", lm_options: dict | None = None, embedder=None):
        super().__init__(name, FakeCodec(), FakeTokenizer(), embedder or FakeEmbedder(), "fake", "cpu",
                         Precision(torch.float32, torch.float32, "the fakes compute in float32", False))
        self.lm_options = lm_options or {}
        self.engines: list[FakeLM] = []
        self.judges: list[FakeJudge] = []
        self.searches: list[Search] = []

    def engine(self, config: RainConfig, reference: bool = False, model=None) -> FakeLM:
        self.engines.append(FakeLM(**self.lm_options))
        return self.engines[-1]

    def conversation(self, question: str, config: RainConfig, prompt_format: PromptFormat = "auto") -> Conversation:
        """The question's words of the fake vocabulary, then PROMPT: another question, another search."""
        return fake_conversation(question, question + PROMPT)

    def judge_scale(self, config: RainConfig) -> JudgeScale:
        return JudgeScale(1.0, "fixed")

    def weights_fingerprint(self) -> str | None:
        return None

    def _judge_over(self, lm, config: RainConfig, scale: float) -> FakeJudge:
        self.judges.append(FakeJudge())
        return self.judges[-1]

    def search(self, conversation: Conversation, config: RainConfig, reference: bool = False,
               prefix: Sequence[tuple[int, ...]] = ()) -> Search:
        self.searches.append(super().search(conversation, config, reference, prefix))
        return self.searches[-1]

    def engine_stats(self, config: RainConfig, lm=None) -> dict:
        return {"engine": "fake", "engine_note": ""}

    def model_info(self, engine: str) -> dict:
        return {"name": self.name}

    def judge_info(self, config: RainConfig, judge=None) -> dict:
        return dict(JUDGE)
