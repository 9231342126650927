"""RAIN: Rewindable Auto-regressive INference (Li et al., ICLR 2024), Algorithm 1, as the authors' HH code runs it.

The inner loop (one call of `Search.simulate`) selects a leaf by Eq. (1), rolls out to the end of a clause,
self-evaluates, expands the leaf with candidate token sets, backs the score up with the Eq. (2) similarity
update, and rewinds to the root. The outer loop (`Search.run`) repeats it until the stop rule holds, commits the
most-visited child of the root and re-roots onto it. Section numbers refer to docs/algorithm.md.

Events are the only writer of the tree: each phase computes its change from the tree without touching it, returns
it as an event (rain/core/events.py), and `rain.core.replay.apply_event` applies it, the same function a replay folds, so the
live tree equals the replayed one by construction. What only the search needs (embeddings, the candidate sets and
ranked logits kept for dynamic node addition) lives in the search, not in the tree. One exception: when the node
cap is reached, `Tree.evict_abandoned` frees abandoned branches of the live tree (a replay keeps them; they are
never read again). The search is one file, over 400 lines, because it reads top-down as Algorithm 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from rain.core.clock import ComputeClock, timed
from rain.core.config import RainConfig
from rain.core.decoding import (Program, RolloutRules, drive, path_program, rollout_program, sample, single_token_program,
                           tied_top)
from rain.core.events import (BackedUp, Committed, Evaluated, Event, Expanded, Finished, NewNode, NodesAdded,
                         NodeStats, RolledOut, Rewound, Selected, SimilarityShare, Started)
from rain.core.lm import Embedder, Evaluation, Judge, LanguageModel, TextCodec
from rain.core.prompts import Conversation
from rain.core.replay import apply_event
from rain.core.tree import Node, TokenSet, Tree

VALUE_RANGE_EPSILON = 1e-5          # getqu: (q - min) / (max - min + 1e-5)
ROLLOUT_SEED_OFFSET = 1             # rollouts draw from their own generator, seeded with seed + 1


@dataclass
class Backends:
    """The outside world as the search sees it."""

    lm: LanguageModel
    codec: TextCodec
    judge: Judge
    embedder: Embedder


# --- Pure functions on the tree --------------------------------------------------------------------------

def puct_terms(tree: Tree, node_id: int, config: RainConfig) -> list[tuple[float, float]]:
    """Eq. (1)'s two terms for every child of `node_id`: (value term, exploration term c · p · sqrt(N) / (1 + n)).

    Code variant (default, §1.3 getqu): value = (q - min)/(max - min + 1e-5), 0 for an unvisited child, and
    N = the parent's n. Paper variants (§1.5.1-2): raw q, and N = the sum of the siblings' n.
    """
    children = tree.children(node_id)
    total = tree[node_id].visits if config.puct_visits == "parent" else sum(c.visits for c in children)
    exploration = config.c_puct * math.sqrt(total)
    terms = []
    for child in children:
        if config.puct_value == "raw":
            value = child.value
        elif child.visits == 0:
            value = 0.0
        else:
            value = (child.value - tree.min_value) / (tree.max_value - tree.min_value + VALUE_RANGE_EPSILON)
        terms.append((value, exploration * child.prior / (1 + child.visits)))
    return terms


def puct_scores(tree: Tree, node_id: int, config: RainConfig) -> list[float]:
    """Eq. (1) for every child of `node_id`: value + c · p · sqrt(N) / (1 + n) (terms: `puct_terms`)."""
    return [value + exploration for value, exploration in puct_terms(tree, node_id, config)]


def select_child(tree: Tree, node_id: int, config: RainConfig) -> tuple[Node, float]:
    """argmax of Eq. (1); the first child wins a tie (Python's max over the children dict)."""
    scores = puct_scores(tree, node_id, config)
    best = max(range(len(scores)), key=scores.__getitem__)
    return tree.children(node_id)[best], scores[best]


def noised(priors: list[float], weight: float) -> list[float]:
    """Root prior noise (§1.3): (1 - w)·p + w/k, then renormalised."""
    mixed = [(1 - weight) * p + weight / len(priors) for p in priors]
    total = sum(mixed)
    return [p / total for p in mixed]


def child_priors(probs: list[float], at_root: bool, config: RainConfig) -> list[float]:
    """Renormalise candidate probabilities over the siblings; add root noise at the root."""
    total = sum(probs)
    priors = [p / total for p in probs] if total > 0 else [1.0 / len(probs)] * len(probs)
    return noised(priors, config.root_prior_noise) if at_root and config.root_prior_noise > 0 else priors


def addition_triggered(tree: Tree, node_id: int, config: RainConfig, embeddings: dict[int, np.ndarray]) -> bool:
    """Dynamic node addition test (§1.3 checkadd): children alike and all poor.

    ||Var(child embeddings)||_2 < 0.03·len(token set) and max child q < 0, with fewer than 20 children, every
    child embedded (`embeddings`: node id -> e). Var is torch.var's unbiased variance, so a single child (NaN
    variance) never triggers.
    """
    children = tree.children(node_id)
    if len(children) >= config.addition_max_children or len(children) < 2:
        return False
    if any(c.id not in embeddings for c in children):
        return False
    variance = np.var(np.stack([embeddings[c.id] for c in children]), axis=0, ddof=1)
    threshold = config.addition_variance * len(children[0].tokens)
    return bool(np.linalg.norm(variance) < threshold) and max(c.value for c in children) < config.addition_value


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def backup(tree: Tree, path: list[int], score: float, new_embeddings: dict[int, np.ndarray] | None,
           config: RainConfig, embeddings: dict[int, np.ndarray]) -> tuple[list[NodeStats], list[SimilarityShare]]:
    """Back the score up the path (§1.3 node.backup), leaf first: the path's new statistics and Eq. (2)'s shares,
    which `BackedUp` carries; the tree is read, not written (rain.core.replay.apply_event writes it).

    Each node: n += 1, fn += 1; its embedding (in `embeddings`, the search's: node id -> e, updated here) becomes
    the running mean over real visits of `new_embeddings`; each sibling whose cosine with it is >= threshold gets
    Eq. (2): q := (q·n + γ·s·v)/(n + γ·s), n := n + γ·s. Then every node's q moves to the running mean
    q += (v - q)/n, where n includes the similarity mass. (A sibling of one path node is never on the path, and
    siblings of different levels differ, so each node changes once.)
    """
    visits = {i: tree[i].visits + 1 for i in path}
    real_visits = {i: tree[i].real_visits + 1 for i in path}
    shares: list[SimilarityShare] = []
    for node_id in reversed(path):
        if node_id == tree.root or new_embeddings is None:
            continue
        new, old = new_embeddings[node_id], embeddings.get(node_id)
        embeddings[node_id] = new.copy() if old is None else old + (new - old) / real_visits[node_id]
        if not config.similarity_update:
            continue
        for sibling in tree.children(tree[node_id].parent):
            if sibling.id == node_id or sibling.id not in embeddings:
                continue
            similarity = cosine(embeddings[node_id], embeddings[sibling.id])
            if similarity >= config.similarity_threshold:
                weight = config.similarity_gamma * similarity
                value = (sibling.value * sibling.visits + weight * score) / (sibling.visits + weight)
                shares.append(SimilarityShare(sibling.id, node_id, similarity, weight, sibling.visits + weight, value))
    stats = [NodeStats(i, visits[i], real_visits[i], tree[i].value + (score - tree[i].value) / visits[i])
             for i in path]
    return stats, shares


def stop_rule_met(tree: Tree, config: RainConfig) -> bool:
    """The code's stop rule (§1.5.5): the most-visited child has fn > minT and q > Vt."""
    best = tree.most_visited_child(tree.root)
    return best is not None and best.real_visits > config.min_visits and best.value > config.value_threshold


def reroot_priors(tree: Tree, child_id: int, config: RainConfig) -> dict[int, float]:
    """The committed child's children's priors, re-noised as the new root's (§1.3 gmeval); `Committed` carries
    them and applying it re-roots the tree, keeping the child's subtree."""
    children = tree.children(child_id)
    if children and config.root_prior_noise > 0:
        return dict(zip((c.id for c in children), noised([c.prior for c in children], config.root_prior_noise)))
    return {c.id: c.prior for c in children}


# --- The search -----------------------------------------------------------------------------------------

class Search:
    """One RAIN generation for one prompt. Iterate `run()` for events; `tree` is readable at any time."""

    def __init__(self, backends: Backends, conversation: Conversation, config: RainConfig,
                 prefix: Sequence[TokenSet] = ()):
        self.backends, self.conversation, self.config = backends, conversation, config.validate()
        self.prefix = [tuple(tokens) for tokens in prefix]    # token sets committed before the search starts:
                                                              # a what-if fork of an earlier run (rain/runs/fork.py)
        self.tree = Tree.new(backends.codec.decode(conversation.prompt_tokens))
        self.root_state: list[int] = list(conversation.prompt_tokens)
        # two random streams, so a rollout and an expansion can share forwards (rain/core/decoding.py `drive`) and
        # still draw the same tokens as when run one after the other
        self.generator = torch.Generator(device=backends.lm.device).manual_seed(config.seed)
        self.rollout_generator = torch.Generator(device=backends.lm.device).manual_seed(config.seed + ROLLOUT_SEED_OFFSET)
        self.evaluations: dict[str, Evaluation] = {}          # the authors' `dic`: answer text -> score
        # the authors' cap `len(state) > maxlen` lets a state reach maxlen + 1 and an expansion read states up to
        # maxlen + L - 1, so the cap stays that far inside the model's context
        self.max_length = min(config.max_length, backends.lm.max_length - max(config.token_set_lengths))
        self.rollout_rules = RolloutRules(config.rollout_stop_chars, config.rollout_to_eos,
                                          config.rollout_max_tokens, self.max_length)
        self.simulations = 0
        self.cache_hits = 0
        self.clock = ComputeClock()            # reset by run(); compute time only (rain/core/clock.py)
        # what only the search reads, by node id (never in the tree, never in an event):
        self.embeddings: dict[int, np.ndarray] = {}           # e: running mean embedding of text from the node on
        self.candidate_sets: dict[int, list[tuple[tuple[int, ...], float]]] = {}   # multi-token: (tokens, prob)
        self.ranked_logits: dict[int, list[tuple[int, float]]] = {}   # 1-token: top raw logits, best first

    def _apply(self, event: Event) -> Event:
        """The one way the search changes its tree (rain.core.replay.apply_event, as a replay does)."""
        apply_event(self.tree, event)
        return event

    # helpers reading the conversation
    def _answer_tokens(self, state: list[int]) -> list[int]:
        return state[len(self.conversation.prompt_tokens):]

    def _turn_ended(self, answer_tokens) -> bool:
        return self.conversation.turn_ended(self.backends.codec, answer_tokens)

    def _is_terminal(self, node: Node, state: list[int]) -> bool:
        """No expansion past the end of the turn, the length cap, or the answer cap (§1.3 search).

        The length cap is the authors' `len(state) > maxlen`, as in the stop and the rollout (rain/core/decoding.py).
        """
        answer = self._answer_tokens(state)
        return (any(t in self.conversation.stop_ids for t in node.tokens) or self._turn_ended(answer)
                or len(state) > self.max_length or len(answer) >= self.config.max_new_tokens)

    # --- phases of one simulation
    def _candidates_program(self, node: Node, state: list[int], wanted: int) -> Program:
        """group_getp as a program: token sets of the length scheduled for this depth, and (1-token sets) the
        ranked logits; it returns (entries, ranked or None)."""
        config = self.config
        if config.token_set_length(node.step) == 1:
            candidates, ranked = yield from single_token_program(state, wanted, config.candidate_temperature,
                                                                 config.addition_max_children)
        else:
            candidates, ranked = (yield from path_program(state, config.token_set_length(node.step), wanted,
                                                          config.sample_attempts(wanted), config.candidate_top_k,
                                                          config.candidate_temperature, self.generator,
                                                          self.conversation.stop_ids)), None
        return [(c.tokens, c.prob) for c in candidates], ranked

    def _candidates(self, node: Node, state: list[int], wanted: int
                    ) -> tuple[list[tuple[tuple[int, ...], float]], list[tuple[int, float]] | None]:
        return drive(self.backends.lm, [self._candidates_program(node, state, wanted)])[0]

    def _children(self, node: Node, entries: list[tuple[tuple[int, ...], float]]) -> list[NewNode]:
        """New children for the entries not already present, priors renormalised over all entries (§1.3
        expand/add), numbered after the tree's last node; the event that carries them adds them."""
        priors = child_priors([p for _, p in entries], node.id == self.tree.root, self.config)
        decode, seen, new = self.backends.codec.decode, set(node.children), []
        for (tokens, _), prior in zip(entries, priors):
            if tokens not in seen:
                seen.add(tokens)
                new.append(NewNode(len(self.tree.nodes) + len(new), node.id, list(tokens), decode(tokens), prior))
        return new

    def _expansion(self, node: Node, candidates: list[tuple[tuple[int, ...], float]],
                   ranked: list[tuple[int, float]] | None) -> list[NewNode]:
        """Keep what dynamic addition needs later, and the candidates as new children."""
        if ranked is None:
            self.candidate_sets[node.id] = candidates
        else:
            self.ranked_logits[node.id] = ranked
        return self._children(node, candidates)

    def _additions(self, node: Node, state: list[int]) -> list[NewNode]:
        """Dynamic node addition (§1.3 checkadd/add): one more child when the children are alike and poor (1-token
        sets: every token tied for the next rank, as the authors' TopKLogitsWarper keeps them all)."""
        count = len(node.children) + 1
        if self.config.token_set_length(node.step) == 1:
            # TopKLogitsWarper(count) on the stored raw logits: the top `count` and every token tied with the
            # count-th (all added), softmax-renormalised over all kept, in token-id order (np.where)
            ranked = tied_top(self.ranked_logits.get(node.id, []), count)
            probs = torch.softmax(torch.tensor([logit for _, logit in ranked], dtype=torch.float64), 0).tolist()
            entries = sorted(((token,), p) for (token, _), p in zip(ranked, probs))
        else:
            fresh, _ = self._candidates(node, state, self.config.addition_candidates)
            self.candidate_sets[node.id] = fresh + self.candidate_sets.get(node.id, [])
            entries = self.candidate_sets[node.id][:count]
        return self._children(node, entries)

    def _evaluate(self, answer: str) -> tuple[Evaluation, bool]:
        if self.config.eval_cache and answer in self.evaluations:
            self.cache_hits += 1
            return self.evaluations[answer], True
        evaluation = self.backends.judge.evaluate(self.conversation.question, answer)
        self.evaluations[answer] = evaluation
        return evaluation, False

    def _path_embeddings(self, path: list[int], rollout_tokens: list[int]) -> dict[int, np.ndarray] | None:
        """Embedding of the text from each path node to the end of the rollout, in one batch (§1.3 backup)."""
        if not (self.config.similarity_update or self.config.dynamic_addition):
            return None
        codec, ids, texts = self.backends.codec, [], []
        suffix = list(rollout_tokens)
        for node_id in reversed(path):
            if node_id == self.tree.root:
                break
            suffix = list(self.tree[node_id].tokens) + suffix
            ids.append(node_id)
            texts.append(codec.decode(suffix))
        if not ids:
            return {}
        vectors = self.backends.embedder.embed(texts)
        return {i: np.asarray(v, dtype=np.float64) for i, v in zip(ids, vectors)}

    def simulate(self) -> Iterator[Event]:
        """One inner-loop iteration: select, roll out, evaluate, expand, back up, rewind (Alg. 1 lines 5-11)."""
        self.simulations += 1
        sim, tree, config = self.simulations, self.tree, self.config
        node, state = tree[tree.root], list(self.root_state)
        path, scores = [node.id], []
        while node.children:                                          # forward step
            if config.dynamic_addition and addition_triggered(tree, node.id, config, self.embeddings):
                added = self._additions(node, state)
                if added:
                    yield self._apply(NodesAdded(sim, node.id, added))
            node, score = select_child(tree, node.id, config)
            state.extend(node.tokens)
            path.append(node.id)
            scores.append(score)
        yield Selected(sim, path, scores)

        terminal = self._is_terminal(node, state)                   # BackedUp marks the leaf
        answer_tokens = self._answer_tokens(state)
        codec = self.backends.codec

        def rolled_out(program: int, tokens: list[int]) -> None:
            """As soon as the rollout ends, queue the judge's prompts: they ride on the expansion's next forward."""
            if program != 0:
                return
            answer = self.conversation.answer_text(codec, answer_tokens + tokens)
            if not (config.eval_cache and answer in self.evaluations):
                self.backends.judge.prefetch(self.conversation.question, answer)

        sampled: list[int] = []
        expansion = None
        if not terminal:      # the rollout and the expansion both start at the leaf: run them in lockstep
            roll = rollout_program(codec, state, len(self.conversation.prompt_tokens),
                                   self.conversation.prompt_last_char, self.rollout_rules, self.rollout_generator,
                                   self._turn_ended)
            expand = self._candidates_program(node, state, config.candidates)
            sampled, expansion = drive(self.backends.lm, [roll, expand], on_done=rolled_out)
        yield RolledOut(sim, node.id, len(sampled), codec.decode(sampled))

        answer = self.conversation.answer_text(codec, answer_tokens + sampled)
        evaluation, hit = self._evaluate(answer)
        yield Evaluated(sim, node.id, answer, evaluation.score, evaluation.first, evaluation.second, hit,
                        list(evaluation.parts), [dict(p) for p in evaluation.orders])
        if expansion is not None:
            yield self._apply(Expanded(sim, node.id, self._expansion(node, *expansion)))

        stats, shares = backup(tree, path, evaluation.score, self._path_embeddings(path, sampled), config,
                               self.embeddings)
        yield self._apply(BackedUp(sim, evaluation.score, stats, shares, terminal))
        yield Rewound(sim, tree.root, self.live_stats())

    def _room_for_simulation(self) -> bool:
        """Room under `max_tree_nodes` for one more simulation's nodes: one expansion plus one added node per
        level of the longest possible path. Abandoned branches are evicted before the answer is no."""
        tree, config = self.tree, self.config
        needed = config.candidates + (tree.deepest_step - tree[tree.root].step + 1)
        if tree.size + needed <= config.max_tree_nodes:
            return True
        if tree.evict_abandoned():                               # the one change to the tree outside an event
            for cache in (self.embeddings, self.candidate_sets, self.ranked_logits):
                for node_id in [i for i in cache if tree.nodes[i] is None]:
                    del cache[node_id]
        return tree.size + needed <= config.max_tree_nodes

    def _window(self) -> int:
        """Simulations allowed for this move: max(maxT - root fn, 15) (§1.3 gmeval), or the fixed budget."""
        if self.config.sims_per_move is not None:
            return self.config.sims_per_move
        return max(self.config.max_simulations - self.tree[self.tree.root].real_visits, self.config.min_window)

    def _choose_move(self) -> Node | None:
        """Alg. 1 line 16 / the code: the most-visited child; §3.2 prose: sample from normalised visits."""
        tree = self.tree
        if self.config.commit == "argmax":
            return tree.most_visited_child(tree.root)
        children = tree.children(tree.root)
        if not children:
            return None
        weights = torch.tensor([c.visits for c in children], dtype=torch.float64, device=self.backends.lm.device)
        if float(weights.sum()) <= 0:
            return tree.most_visited_child(tree.root)
        return children[int(sample(weights, self.generator))]

    def _finish_reason(self, move: Node, moves: int) -> str | None:
        answer = self._answer_tokens(self.root_state)
        if any(t in self.conversation.stop_ids for t in move.tokens):
            return "eos"
        if self._turn_ended(answer):
            return "turn_end"
        if len(answer) >= self.config.max_new_tokens:
            return "max_new_tokens"
        if len(self.root_state) > self.max_length:             # gmeval: len(state) > maxlen
            return "max_length"
        if self.config.max_moves is not None and moves >= self.config.max_moves:
            return "max_moves"
        return None

    def answer(self) -> str:
        return self.conversation.answer_text(self.backends.codec, self._answer_tokens(self.root_state))

    def run(self) -> Iterator[Event]:
        """The outer loop: search, commit the most-visited child, re-root; until the turn ends. Its seconds count
        only while it computes an event, not while the consumer holds one (a paused page)."""
        self.clock = ComputeClock()
        return timed(self._run(), self.clock)

    def _run(self) -> Iterator[Event]:
        config, tree = self.config, self.tree
        yield self._apply(Started(self.conversation.question, len(self.conversation.prompt_tokens),
                                  tree[tree.root].text))
        moves, reason = 0, "no_children"
        for tokens in self.prefix:                     # simulation 0: no search, the earlier run's commits
            new = NewNode(len(tree.nodes), tree.root, list(tokens), self.backends.codec.decode(tokens), 1.0)
            yield self._apply(Expanded(0, tree.root, [new]))
            self.root_state.extend(tokens)
            moves += 1
            yield self._apply(Committed(moves, new.id, new.text, 0, "fork", reroot_priors(tree, new.id, config),
                                        self.live_stats()))
        while True:
            window, spent, why = self._window(), 0, "budget"
            for _ in range(window):
                if not self._room_for_simulation():
                    why = "node_cap"
                    break
                yield from self.simulate()
                spent += 1
                if config.sims_per_move is None and config.early_stop and stop_rule_met(tree, config):
                    why = "threshold"
                    break
            if config.sims_per_move is not None and why != "node_cap":
                why = "fixed"
            move = self._choose_move()
            if move is None:
                reason = "no_children"
                break
            old_state = list(self.root_state)
            self.root_state.extend(move.tokens)
            moves += 1
            committed = self._apply(Committed(moves, move.id, move.text, spent, why,
                                              reroot_priors(tree, move.id, config),
                                              self.live_stats()))   # re-roots the tree
            self.backends.lm.release(keep=self.root_state, under=old_state)
            yield committed
            finished = self._finish_reason(move, moves)
            if finished:
                reason = finished
                break
        yield Finished(self.answer(), reason, self.stats(moves, self.clock.seconds()))

    def live_stats(self) -> dict:
        """The counters so far, carried by every rewind and commit so a front end can show them as the run goes.

        Seconds count compute time from `run()`'s start (time the consumer holds an event excluded)."""
        lm_stats = self.compute_stats()
        elapsed = self.clock.seconds()
        return {"simulations": self.simulations, "forward_calls": lm_stats.forward_calls,
                "forwarded_tokens": lm_stats.forwarded_tokens, "seconds": round(elapsed, 3),
                "simulations_per_second": round(self.simulations / max(elapsed, 1e-9), 3)}

    def compute_stats(self):
        """What the engines spent: the generation engine's, plus the judge's when it has an engine of its own."""
        stats = self.backends.lm.stats
        judge_lm = getattr(self.backends.judge, "lm", None)
        return stats.plus(judge_lm.stats) if judge_lm is not None and judge_lm is not self.backends.lm else stats

    def stats(self, moves: int, elapsed: float) -> dict:
        lm_stats = self.compute_stats()
        return {
            "simulations": self.simulations,
            "moves": moves,
            "answer_tokens": len(self._answer_tokens(self.root_state)),
            "nodes": len(self.tree.nodes),
            "nodes_evicted": self.tree.evicted,
            "evaluations": len(self.evaluations),
            "eval_cache_hits": self.cache_hits,
            "seconds": round(elapsed, 3),
            "seconds_per_simulation": round(elapsed / max(self.simulations, 1), 4),
            **lm_stats.as_dict(),
        }
