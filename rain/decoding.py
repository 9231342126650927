"""Sampling from the LM: candidate token sets (docs/algorithm.md §1.3 group_getp), rollouts (simg), and vanilla decoding.

All three ask `LanguageModel.next_logits` for whole states, so the engine alone decides what is recomputed;
randomness comes only from the `torch.Generator` passed in.

Candidate sets and rollouts are written as *programs*: generators that yield the states whose next-token
logits they need and receive those logits. `drive` runs several programs in lockstep, one `next_logits` call
per round for all of them, so a simulation's rollout and its expansion share forwards (on CPU a forward costs
about the same for 1 or 12 new tokens). Each program keeps its own generator, so running them together or
one after the other draws the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator, Sequence

import torch

from rain.lm import LanguageModel, TextCodec

TokenSet = tuple[int, ...]
Program = Generator[list[tuple[int, ...]], torch.Tensor, Any]   # yields states, receives their logits, returns


def drive(lm: LanguageModel, programs: Sequence[Program],
          on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run `programs` in lockstep; each round is ONE next_logits call for every program's pending states.

    Returns each program's return value; `on_done(i, value)` is called as soon as program i finishes (the
    search uses it to queue the judge while the expansion still runs).
    """
    results: list[Any] = [None] * len(programs)
    pending: dict[int, list[tuple[int, ...]]] = {}

    def advance(i: int, logits: torch.Tensor | None) -> None:
        try:
            pending[i] = programs[i].send(logits) if logits is not None else next(programs[i])
        except StopIteration as stop:
            pending.pop(i, None)
            results[i] = stop.value
            if on_done is not None:
                on_done(i, stop.value)

    for i in range(len(programs)):
        advance(i, None)
    while pending:
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
    last_positive = rows.shape[-1] - 1 - torch.argmax((rows.flip(-1) > 0).to(torch.int8), dim=-1)
    chosen = torch.minimum(chosen, last_positive)                            # u·total rounded up to the total
    return chosen if probs.dim() == 2 else chosen[0]


def single_token_candidates(logits: torch.Tensor, count: int, temperature: float,
                            keep_ranked: int) -> tuple[list[Candidate], list[tuple[int, float]]]:
    """Token sets of length 1: the top-`count` tokens with their renormalised probabilities.

    Returned in ascending token id, as the authors' `np.where(p > 0)` orders them (this order breaks ties in
    selection). Also returns the top-`keep_ranked` raw logits, best first, for dynamic node addition.
    """
    probs = top_k_probs(logits, count, temperature)
    ids = torch.nonzero(probs > 0).flatten()
    candidates = [Candidate((int(i),), float(p)) for i, p in zip(ids.tolist(), probs[ids].tolist())]
    top = torch.topk(logits, min(keep_ranked, logits.shape[-1]))
    ranked = list(zip(top.indices.tolist(), top.values.tolist()))
    return candidates, ranked


def path_candidates(lm: LanguageModel, state: Sequence[int], length: int, wanted: int, attempts: int,
                    top_k: int, temperature: float, generator: torch.Generator,
                    eos_ids: frozenset[int]) -> list[Candidate]:
    """`path_program` run on its own."""
    return drive(lm, [path_program(state, length, wanted, attempts, top_k, temperature, generator, eos_ids)])[0]


def single_token_program(state: Sequence[int], count: int, temperature: float,
                         keep_ranked: int) -> Program:
    """`single_token_candidates` at `state`, as a program (one request: the state's own logits)."""
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
    greedy = Candidate(tuple(paths[0]), path_probs[0])
    seen = {greedy.tokens}
    sampled: list[Candidate] = []
    for r in range(1, rows):                              # one attempt per row, in order
        tokens = tuple(paths[r])
        if tokens not in seen:
            seen.add(tokens)
            sampled.append(Candidate(tokens, path_probs[r]))
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
    state = list(state)
    sampled: list[int] = []
    while True:
        if len(state) > rules.max_length or len(sampled) >= rules.max_tokens:
            break
        if turn_ended(state[answer_start:]):
            break
        if not rules.to_eos and last_char(codec, state[answer_start:], prompt_last_char) in rules.stop_chars:
            break
        logits = yield [tuple(state)]
        token = int(sample(torch.softmax(logits[0], dim=-1), generator))
        state.append(token)
        sampled.append(token)
    return sampled


def vanilla_tokens(lm: LanguageModel, state: Sequence[int], max_new_tokens: int, max_length: int,
                   eos_ids: frozenset[int], turn_ended: Callable[[Sequence[int]], bool],
                   temperature: float = 0.0, generator: torch.Generator | None = None) -> Iterator[int]:
    """The baseline: greedy (temperature 0) or sampled decoding with the same stop rules as the search."""
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
