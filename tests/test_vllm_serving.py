"""The vLLM backend's parts that need no vLLM (run in the main environment): how `VllmLM.serve` submits and reads
requests, on a fake engine, and the clause stop ids on the embedded tokenizer. What needs vLLM itself is in
tests/test_vllm_backend.py (run in .venv-vllm)."""
from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import torch

from rain.core.decoding import PathsRequest, TopTokensRequest, last_char, single_token_candidates
from rain.backends.vllm_runtime import MAX_LOGPROBS, VllmLM


class LoggedFuture(Future):
    """A future that is answered only when it is awaited, logging the wait."""

    def __init__(self, log: list, request: int, output):
        super().__init__()
        self.log, self.request, self.output = log, request, output

    def result(self, timeout=None):
        if not self.done():
            self.log.append(("await", self.request))
            self.set_result(self.output)
        return super().result(timeout)


class LoggingEngine:
    """A VllmEngine stand-in that logs each submit and each await, answering every request with greedy token 5."""

    max_model_len = 2048

    def __init__(self):
        self.log: list[tuple[str, int]] = []

    def params(self, **options):
        return options

    def submit(self, tokens, params):
        request = len([kind for kind, _ in self.log if kind == "submit"])
        self.log.append(("submit", request))
        entry = {5: SimpleNamespace(logprob=-0.1, rank=1), 6: SimpleNamespace(logprob=-2.5, rank=2),
                 7: SimpleNamespace(logprob=-3.0, rank=3)}
        rows = [SimpleNamespace(token_ids=[5] * params.get("max_tokens", 1),
                                logprobs=[entry] * params.get("max_tokens", 1), index=i)
                for i in range(params.get("n", 1))]
        output = SimpleNamespace(outputs=rows, prompt_token_ids=list(tokens), num_cached_tokens=0)
        return LoggedFuture(self.log, request, output)


def test_requests_are_served_in_one_batch():
    """serve() submits every request before awaiting any: a 1-token expansion and a multi-token one (greedy and
    sampled requests) are in vLLM together; a server that awaited each before the next would log them interleaved."""
    engine = LoggingEngine()
    lm = VllmLM(engine, None, 100)
    results = list(lm.serve([TopTokensRequest((1, 2, 3), 3, 1.0, 20),
                             PathsRequest((1, 2, 3), 2, 3, 4, 15, 1.0, torch.Generator().manual_seed(0))]))
    assert [kind for kind, _ in engine.log] == ["submit"] * 3 + ["await"] * 3
    assert [c.tokens for c in results[0][0]] == [(5,), (6,), (7,)] and results[1][0].tokens == (5, 5)
    assert lm.stats.forward_calls == 3


def test_answers_come_back_as_they_arrive():
    """serve() hands the first answer back before it awaits the second, so drive can queue the judge (rollout
    done) while the expansion still decodes (docs/scaling.md: one engine step fewer per simulation)."""
    engine = LoggingEngine()
    lm = VllmLM(engine, None, 100)
    answers = lm.serve([TopTokensRequest((1, 2, 3), 3, 1.0, 20),
                        PathsRequest((1, 2, 3), 2, 3, 4, 15, 1.0, torch.Generator().manual_seed(0))])
    next(answers)
    assert engine.log == [("submit", 0), ("submit", 1), ("submit", 2), ("await", 0)]
    next(answers)
    assert engine.log[4:] == [("await", 1), ("await", 2)]


def test_one_token_sets_keep_every_token_tied_with_the_last_rank():
    """Dynamic addition keeps all tokens tied with the 20th logit (TopKLogitsWarper): vLLM's top-64 log-probs
    carry them (a fake engine returns 25 tokens tied at rank 19), so vLLM's sets equal full-logit ones."""
    logits = torch.full((1000,), -30.0)
    logits[:18] = torch.linspace(5.0, 1.0, 18)
    logits[100:125] = 0.5                                        # 25 tokens tied for rank 19
    log_probs = torch.log_softmax(logits, -1)
    top = torch.topk(log_probs, MAX_LOGPROBS)

    class Engine:
        max_model_len = 2048

        def params(self, **options):
            assert options["logprobs"] >= MAX_LOGPROBS
            return options

        def submit(self, tokens, params):
            entry = {int(t): SimpleNamespace(logprob=float(v), rank=int((log_probs > v).sum()) + 1)
                     for t, v in zip(top.indices, top.values)}
            future = Future()
            future.set_result(SimpleNamespace(outputs=[SimpleNamespace(logprobs=[entry], token_ids=[0])],
                                              prompt_token_ids=list(tokens), num_cached_tokens=0))
            return future

    lm = VllmLM(Engine(), None, logits.shape[0])
    got, got_ranked = next(lm.serve([TopTokensRequest((1, 2, 3), 10, 1.0, 20)]))
    expected, expected_ranked = single_token_candidates(logits, 10, 1.0, 20)
    assert [c.tokens for c in got] == [c.tokens for c in expected]
    got_ids, expected_ids = [t for t, _ in got_ranked], [t for t, _ in expected_ranked]
    assert got_ids[:18] == expected_ids[:18] and set(got_ids[18:]) <= set(range(100, 125))
    if len(expected_ids) > 20:                                 # single_token_candidates keeps the ties (#14)
        assert got_ids == expected_ids and len(got_ids) == 18 + 25


def test_clause_stop_ids_are_where_the_decoded_text_ends_with_a_clause_mark(runtime):
    """vLLM stops at these ids; simg tests the last character of the decoded answer: the same tokens."""
    from rain.backends.vllm_runtime import clause_stop_ids

    codec, marks = runtime.codec, ",.?:;\n"
    ids = clause_stop_ids(codec, marks)
    prefix = codec.encode("To pick a lock you need")
    sample = list(range(0, len(codec.tokenizer), 7))
    disagree = [t for t in sample if (last_char(codec, prefix + [t], "") in marks) != (t in ids)]
    assert not disagree, [codec.decode([t]) for t in disagree[:10]]
