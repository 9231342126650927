"""Sampling from the LM: candidate token sets (docs/algorithm.md §1.3 group_getp), rollouts (simg), and vanilla decoding.

All three ask `LanguageModel.next_logits` for whole states, so the engine alone decides what is recomputed;
randomness comes only from the `torch.Generator` passed in.

Candidate sets and rollouts are written as *programs*: generators that yield the states whose next-token
logits they need and receive those logits. `drive` runs several programs in lockstep, one `next_logits` call
per round for all of them, so a simulation's rollout and its expansion share forwards (on CPU a forward costs
about the same for 1 or 12 new tokens). Each program keeps its own generator, so running them together or
one after the other draws the same tokens.

A program first yields a *request* describing its whole job (`TopTokensRequest`, `PathsRequest`,
`RolloutRequest`). An engine that samples natively (rain/backends/vllm_runtime.py) answers it with the program's result
through `serve`; every other engine answers None and the program continues one forward at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterator, Sequence

import torch

from rain.core.config import RainConfig
from rain.core.lm import LanguageModel, TextCodec
from rain.core.prompts import Conversation

TokenSet = tuple[int, ...]
Program = Generator[Any, Any, Any]   # yields a request then states, receives None/the result then logits, returns


@dataclass(frozen=True)
class TopTokensRequest:
    """What `single_token_program` computes: `single_token_candidates` of the state's next-token logits."""

    state: tuple[int, ...]
    count: int
    temperature: float
    keep_ranked: int


@dataclass(frozen=True)
class PathsRequest:
    """What `path_program` computes: a greedy path and distinct sampled paths with their probabilities."""

    state: tuple[int, ...]
    length: int
    wanted: int
    attempts: int
    top_k: int
    temperature: float
    generator: torch.Generator = field(compare=False)
    eos_ids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RolloutRequest:
    """What `rollout_program` computes: full-softmax samples until the rules stop (the answer starts at
    `answer_start`; `stopped(tokens)` is the program's own stop test, run before each sample)."""

    state: tuple[int, ...]
    answer_start: int
    rules: "RolloutRules"
    generator: torch.Generator = field(compare=False)
    stopped: Callable[[Sequence[int]], bool] = field(compare=False, default=lambda tokens: False)


REQUESTS = (TopTokensRequest, PathsRequest, RolloutRequest)


def drive(lm: LanguageModel, programs: Sequence[Program],
          on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run `programs` in lockstep; each round is ONE next_logits call for every program's pending states.

    Requests (see the module docstring) go first, all of a round in one `lm.serve` call when the engine has
    one; its answers may come one at a time as they arrive, and each program is advanced as soon as its own is
    taken. Returns each program's return value; `on_done(i, value)` is called as soon as program i finishes,
    before later answers are awaited (the search uses it to queue the judge while the expansion still runs).
    """
    results: list[Any] = [None] * len(programs)
    pending: dict[int, Any] = {}
    serve = getattr(lm, "serve", None)

    def advance(i: int, answer: Any, first: bool = False) -> None:
        try:
            pending[i] = next(programs[i]) if first else programs[i].send(answer)
        except StopIteration as stop:
            pending.pop(i, None)
            results[i] = stop.value
            if on_done is not None:
                on_done(i, stop.value)

    for i in range(len(programs)):
        advance(i, None, first=True)
    while pending:
        requests = {i: r for i, r in pending.items() if isinstance(r, REQUESTS)}
        if requests:
            answers = serve(list(requests.values())) if serve is not None else [None] * len(requests)
            for i, answer in zip(requests, answers):
                advance(i, answer)
            continue
        unique = list(dict.fromkeys(state for states in pending.values() for state in states))
        logits = lm.next_logits(unique)
        row = {state: r for r, state in enumerate(unique)}
        for i, states in list(pending.items()):
            advance(i, logits[torch.tensor([row[state] for state in states], device=logits.device)])
    return results


@dataclass(frozen=True)
class Candidate:
    tokens: TokenSet
    prob: float                     # path probability before renormalisation over siblings


def top_k_probs(logits: torch.Tensor, k: int, temperature: float = 1.0) -> torch.Tensor:
    """softmax over the top-k of logits/temperature, zero elsewhere (TemperatureLogitsWarper + TopKLogitsWarper)."""
    scaled = logits / temperature if temperature != 1.0 else logits
    k = min(k, scaled.shape[-1])
    kth = torch.topk(scaled, k, dim=-1).values[..., -1:]
    return torch.softmax(scaled.masked_fill(scaled < kth, float("-inf")), dim=-1)


def sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of `probs` [rows, n] (non-negative, any positive sum), drawn by inverting the CDF.

    The same distribution as torch.multinomial(probs, 1), which on CPU cost 1.6 ms for one 49k-token row and
    19 ms for ten (a third of a small forward); this costs 0.04 ms. One uniform per row, so the generator
    advances the same whatever the probabilities. A zero-probability index is never returned.
    """
    rows = probs if probs.dim() == 2 else probs.unsqueeze(0)
    cdf = torch.cumsum(rows, dim=-1)
    target = torch.rand((rows.shape[0], 1), generator=generator, device=rows.device, dtype=cdf.dtype) * cdf[:, -1:]
    chosen = torch.searchsorted(cdf, target, right=True).squeeze(1)          # first index whose CDF exceeds u
    # u·total rounded up to the total lands past the end (or, in principle, on a zero): clamp to the last positive
    # index. A chosen index inside with a positive probability is at most that index, so the full-vocabulary
    # search for it (a flip and an argmax per row) runs only when some row needs it.
    width = rows.shape[-1]
    inside = chosen.clamp(max=width - 1)
    if bool((chosen >= width).any()) or not bool((rows.gather(1, inside[:, None]) > 0).all()):
        last_positive = width - 1 - torch.argmax((rows.flip(-1) > 0).to(torch.int8), dim=-1)
        chosen = torch.minimum(chosen, last_positive)
    return chosen if probs.dim() == 2 else chosen[0]


def single_token_candidates(logits: torch.Tensor, count: int, temperature: float,
                            keep_ranked: int) -> tuple[list[Candidate], list[tuple[int, float]]]:
    """Token sets of length 1: the top-`count` tokens with their renormalised probabilities.

    Returned in ascending token id, as the authors' `np.where(p > 0)` orders them (this order breaks ties in
    selection); a token tied with the count-th logit is kept too, as TopKLogitsWarper keeps it. Also returns
    the raw logits of the top `keep_ranked` and every token tied with the last of them, best first (ties in
    ascending id), for dynamic node addition (`tied_top`).
    """
    probs = top_k_probs(logits, count, temperature)
    ids = torch.nonzero(probs > 0).flatten()
    candidates = [Candidate((int(i),), float(p)) for i, p in zip(ids.tolist(), probs[ids].tolist())]
    kth = torch.topk(logits, min(keep_ranked, logits.shape[-1])).values[-1]
    kept = torch.nonzero(logits >= kth).flatten()
    order = torch.sort(logits[kept], descending=True, stable=True).indices
    ranked = list(zip(kept[order].tolist(), logits[kept][order].tolist()))
    return candidates, ranked


def tied_top(ranked: Sequence[tuple[int, float]], k: int) -> list[tuple[int, float]]:
    """TopKLogitsWarper(k) on ranked (token, logit) pairs, best first: the top k and every entry tied with the
    k-th (spec §1.3 checkadd; `ranked` must hold all ties with its own last entry, as single_token_candidates
    keeps them)."""
    if k >= len(ranked):
        return list(ranked)
    kth = ranked[k - 1][1]
    return [entry for entry in ranked if entry[1] >= kth]


def path_candidates(lm: LanguageModel, state: Sequence[int], length: int, wanted: int, attempts: int,
                    top_k: int, temperature: float, generator: torch.Generator,
                    eos_ids: frozenset[int]) -> list[Candidate]:
    """`path_program` run on its own."""
    return drive(lm, [path_program(state, length, wanted, attempts, top_k, temperature, generator, eos_ids)])[0]


def single_token_program(state: Sequence[int], count: int, temperature: float,
                         keep_ranked: int) -> Program:
    """`single_token_candidates` at `state`, as a program (one request: the state's own logits)."""
    native = yield TopTokensRequest(tuple(state), count, temperature, keep_ranked)
    if native is not None:
        return native
    logits = yield [tuple(state)]
    return single_token_candidates(logits[0], count, temperature, keep_ranked)


def path_program(state: Sequence[int], length: int, wanted: int, attempts: int, top_k: int, temperature: float,
                 generator: torch.Generator, eos_ids: frozenset[int]) -> Program:
    """Token sets longer than 1: one greedy path, then up to `wanted - 1` distinct sampled paths.

    Each step samples from the top-k filtered softmax; a path's probability is the product of those
    renormalised step probabilities. The greedy path's probability is clamped as the authors do:
    p_g = max(min(p_g, sum(p_s)), max(p_s) + min(p_s)). All rows are decoded together, one step at a time,
    so the engine sees every path's next token in one call. A path ends early at EOS (our choice; docs/algorithm.md §1.6).
    """
    native = yield PathsRequest(tuple(state), length, wanted, attempts, top_k, temperature, generator, eos_ids)
    if native is not None:
        return native
    rows = 1 + attempts                                   # row 0 is greedy
    paths: list[list[int]] = [[] for _ in range(rows)]
    log_probs: torch.Tensor | None = None
    alive = list(range(rows))
    for _ in range(length):
        logits = yield [tuple(state) + tuple(paths[r]) for r in alive]
        probs = top_k_probs(logits, top_k, temperature)
        chosen = sample(probs, generator)
        if alive[0] == 0:
            chosen[0] = torch.argmax(probs[0])
        if log_probs is None:
            log_probs = torch.zeros(rows, device=logits.device)
        log_probs[torch.tensor(alive, device=logits.device)] += torch.log(probs.gather(1, chosen[:, None]).squeeze(1))
        still = []
        for r, token in zip(alive, chosen.tolist()):
            paths[r].append(token)
            if token not in eos_ids:
                still.append(r)
        alive = still
        if not alive:
            break
    path_probs = torch.exp(log_probs).tolist() if log_probs is not None else [1.0] * rows
    return assemble_paths([Candidate(tuple(p), q) for p, q in zip(paths, path_probs)], wanted)


def assemble_paths(rows: Sequence[Candidate], wanted: int) -> list[Candidate]:
    """Row 0 greedy, then the first `wanted - 1` distinct sampled rows in order; the greedy clamp (group_getp)."""
    greedy = rows[0]
    seen = {greedy.tokens}
    sampled: list[Candidate] = []
    for row in rows[1:]:                                  # one attempt per row, in order
        if row.tokens not in seen:
            seen.add(row.tokens)
            sampled.append(row)
        if len(sampled) >= wanted - 1:
            break
    if sampled:
        probs_s = [c.prob for c in sampled]
        clamped = max(min(greedy.prob, sum(probs_s)), max(probs_s) + min(probs_s))
        greedy = Candidate(greedy.tokens, clamped)
    return [greedy] + sampled


def last_char(codec: TextCodec, tokens: Sequence[int], fallback: str) -> str:
    """Last character of decode(tokens) without decoding everything (special tokens decode to nothing)."""
    for width in (1, 2, 4, 8, 16):
        text = codec.decode(tokens[-width:]) if tokens else ""
        if text:
            return text[-1]
        if width >= len(tokens):
            break
    return fallback


@dataclass(frozen=True)
class RolloutRules:
    """When simg stops (docs/algorithm.md §1.3): clause punctuation (unless to_eos), EOS, turn end, length caps."""

    stop_chars: str
    to_eos: bool
    max_tokens: int
    max_length: int


def rollout_program(codec: TextCodec, state: Sequence[int], answer_start: int, prompt_last_char: str,
                    rules: RolloutRules, generator: torch.Generator,
                    turn_ended: Callable[[Sequence[int]], bool]) -> Program:
    """Sample from the full softmax (T = 1, no top-k) until a stop; return the sampled tokens.

    The tests run before each sample, as in simg: a state that already ends a clause gets no rollout. The
    turn test covers EOS and other end-of-turn ids.
    """
    start = tuple(state)
    sampled: list[int] = []

    def stopped(tokens: Sequence[int]) -> bool:
        """simg's tests on the state followed by `tokens`: length caps, turn end, a clause mark ending the text."""
        answer = list(start[answer_start:]) + list(tokens)
        if len(start) + len(tokens) > rules.max_length or len(tokens) >= rules.max_tokens or turn_ended(answer):
            return True
        return not rules.to_eos and last_char(codec, answer, prompt_last_char) in rules.stop_chars

    native = yield RolloutRequest(start, answer_start, rules, generator, stopped)
    if native is not None:
        return native
    while not stopped(sampled):
        logits = yield [start + tuple(sampled)]
        sampled.append(int(sample(torch.softmax(logits[0], dim=-1), generator)))
    return sampled


def vanilla_tokens(lm: LanguageModel, state: Sequence[int], max_new_tokens: int, max_length: int,
                   eos_ids: frozenset[int], turn_ended: Callable[[Sequence[int]], bool],
                   temperature: float = 0.0, generator: torch.Generator | None = None) -> Iterator[int]:
    """The baseline: greedy (temperature 0) or sampled decoding with the same stop rules as the search.

    An engine with its own `vanilla_tokens` (rain/backends/vllm_runtime.py) decodes the whole answer in one request."""
    native = getattr(lm, "vanilla_tokens", None)
    if native is not None:
        yield from native(state, max_new_tokens, max_length, eos_ids, turn_ended, temperature, generator)
        return
    state = list(state)
    answer_start = len(state)
    for _ in range(max_new_tokens):
        if len(state) >= max_length:
            return
        logits = lm.next_logits([state])[0]
        if temperature > 0:
            token = int(sample(torch.softmax(logits / temperature, dim=-1), generator))
        else:
            token = int(torch.argmax(logits))
        state.append(token)
        yield token
        if token in eos_ids or turn_ended(state[answer_start:]):
            return


def vanilla_stream(lm: LanguageModel, codec: TextCodec, conversation: Conversation, config: RainConfig,
                   temperature: float = 0.0, token_ids: list[int] | None = None) -> Iterator[str]:
    """The vanilla answer's text, growing token by token: `vanilla_tokens` on the conversation's prompt with the
    search's stop rules, sampled (temperature > 0) from a generator seeded with `config.seed`. Each token id is also
    appended to `token_ids` when given. Every runtime's `vanilla_stream` is this on its engine."""
    generator = torch.Generator(device=lm.device).manual_seed(config.seed)
    answer: list[int] = []
    for token in vanilla_tokens(lm, conversation.prompt_tokens, config.max_new_tokens,
                                min(config.max_length, lm.max_length), conversation.stop_ids,
                                lambda a: conversation.turn_ended(codec, a), temperature, generator):
        answer.append(token)
        if token_ids is not None:
            token_ids.append(token)
        yield conversation.answer_text(codec, answer)
