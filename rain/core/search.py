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

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from rain.core.clock import ComputeClock, timed
from rain.core.config import RainConfig
from rain.core.decoding import (
    Program,
    RolloutRules,
    drive,
    path_program,
    rollout_program,
    sample,
    single_token_program,
    tied_top,
)
from rain.core.events import (
    BackedUp,
    Committed,
    Evaluated,
    Event,
    Expanded,
    Finished,
    NewNode,
    NodesAdded,
    NodeStats,
    Rewound,
    RolledOut,
    Selected,
    SimilarityShare,
    Started,
)
from rain.core.lm import Embedder, Evaluation, Judge, LanguageModel, TextCodec
from rain.core.prompts import Conversation
from rain.core.puct import puct_scores
from rain.core.replay import apply_event
from rain.core.tree import Node, TokenSet, Tree

ROLLOUT_SEED_OFFSET = 1             # rollouts draw from their own generator, seeded with seed + 1


@dataclass
class Backends:
    """The outside world as the search sees it."""

    lm: LanguageModel
    codec: TextCodec
    judge: Judge
    embedder: Embedder


# --- Pure functions on the tree --------------------------------------------------------------------------

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

@dataclass
class Selection:
    """One simulation of a round, from its select event to its back-up."""

    simulation: int
    path: list[int]                 # node ids, root first
    state: list[int]                # the root's state plus the path's tokens
    terminal: bool                  # evaluated, never expanded (Search._is_terminal)
    sampled: list[int] = field(default_factory=list)    # the rollout's tokens
    expansion: tuple | None = None  # (candidates, ranked logits or None), Search._candidates_program's result


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

    def _path_embeddings(self, selections: Sequence[Selection]) -> list[dict[int, np.ndarray] | None]:
        """For each simulation, the embedding of the text from each path node to the end of its rollout (§1.3
        backup); all of a round in one batch."""
        if not (self.config.similarity_update or self.config.dynamic_addition):
            return [None] * len(selections)
        codec, ids_of, texts = self.backends.codec, [], []
        for selection in selections:
            ids, suffix = [], list(selection.sampled)
            for node_id in reversed(selection.path):
                if node_id == self.tree.root:
                    break
                suffix = list(self.tree[node_id].tokens) + suffix
                ids.append(node_id)
                texts.append(codec.decode(suffix))
            ids_of.append(ids)
        vectors = iter(self.backends.embedder.embed(texts) if texts else [])
        return [{i: np.asarray(next(vectors), dtype=np.float64) for i in ids} for ids in ids_of]

    def _descend(self, simulation: int) -> Iterator[Event]:
        """The forward step (Alg. 1 line 5): Eq. (1) from the root to a leaf, adding nodes where checkadd says so.

        Yields the node additions; returns (path, Eq. (1) scores, the leaf's state)."""
        tree, config = self.tree, self.config
        node, state = tree[tree.root], list(self.root_state)
        path, scores = [node.id], []
        while node.children:
            if config.dynamic_addition and addition_triggered(tree, node.id, config, self.embeddings):
                added = self._additions(node, state)
                if added:
                    yield self._apply(NodesAdded(simulation, node.id, added))
            node, score = select_child(tree, node.id, config)
            state.extend(node.tokens)
            path.append(node.id)
            scores.append(score)
        return path, scores, state

    def simulate(self, size: int = 1) -> Iterator[Event]:
        """Up to `size` inner-loop iterations sharing forwards (Alg. 1 lines 5-11; size > 1: docs/algorithm.md §3
        "Parallel simulations"); returns how many ran.

        Each leaf is selected by Eq. (1) under the virtual loss of the paths already selected this round (a
        select event puts its path in flight, its back-up takes it out: rain/core/replay.py). All rollouts and
        expansions then run in lockstep, one forward per step for all, the judge's prompts riding along; then each
        simulation in order is evaluated, expanded, backed up and rewound, exactly as on its own. The round ends
        early when a descent reaches a leaf already in flight (it is not selected twice) or the node cap leaves
        no room."""
        tree, config, codec = self.tree, self.config, self.backends.codec
        selections: list[Selection] = []
        while len(selections) < size and self._room_for_simulation(len(selections)):
            self.simulations += 1
            simulation = self.simulations
            path, scores, state = yield from self._descend(simulation)
            if any(path[-1] == other.path[-1] for other in selections):
                self.simulations -= 1          # not run: the next round's first descent takes its number
                break
            yield self._apply(Selected(simulation, path, scores))
            selections.append(Selection(simulation, path, state, self._is_terminal(tree[path[-1]], state)))

        growing = [s for s in selections if not s.terminal]   # a terminal leaf is evaluated, never expanded
        programs: list[Program] = []
        for selection in growing:        # each rollout and expansion starts at its leaf: all run in lockstep
            programs.append(rollout_program(codec, selection.state, len(self.conversation.prompt_tokens),
                                            self.conversation.prompt_last_char, self.rollout_rules,
                                            self.rollout_generator, self._turn_ended))
            programs.append(self._candidates_program(tree[selection.path[-1]], selection.state, config.candidates))

        def rolled_out(program: int, tokens: list[int]) -> None:
            """As soon as a rollout ends, queue the judge's prompts: they ride on the next shared forward."""
            if program % 2 == 0:
                self._prefetch_judge(growing[program // 2].state, tokens)

        results = drive(self.backends.lm, programs, on_done=rolled_out) if programs else []
        for selection, sampled, expansion in zip(growing, results[0::2], results[1::2]):
            selection.sampled, selection.expansion = sampled, expansion
        for selection in selections:
            if selection.terminal:
                self._prefetch_judge(selection.state, [])
        for selection, embeddings in zip(selections, self._path_embeddings(selections)):
            yield from self._finish(selection, embeddings)
        return len(selections)

    def _prefetch_judge(self, state: list[int], rollout: list[int]) -> None:
        answer = self.conversation.answer_text(self.backends.codec, self._answer_tokens(state) + rollout)
        if not (self.config.eval_cache and answer in self.evaluations):
            self.backends.judge.prefetch(self.conversation.question, answer)

    def _finish(self, selection: Selection, embeddings: dict[int, np.ndarray] | None) -> Iterator[Event]:
        """One simulation after its rollout: evaluate, expand, back up, rewind (Alg. 1 lines 7-11)."""
        tree, codec, simulation = self.tree, self.backends.codec, selection.simulation
        node, sampled = tree[selection.path[-1]], selection.sampled
        yield RolledOut(simulation, node.id, len(sampled), codec.decode(sampled))

        answer = self.conversation.answer_text(codec, self._answer_tokens(selection.state) + sampled)
        evaluation, hit = self._evaluate(answer)
        yield Evaluated(simulation, node.id, answer, evaluation.score, [dict(p) for p in evaluation.orders], hit,
                        list(evaluation.parts))
        if selection.expansion is not None:
            yield self._apply(Expanded(simulation, node.id, self._expansion(node, *selection.expansion)))

        stats, shares = backup(tree, selection.path, evaluation.score, embeddings, self.config, self.embeddings)
        yield self._apply(BackedUp(simulation, evaluation.score, stats, shares, selection.terminal))
        yield Rewound(simulation, tree.root, self.live_stats())

    def _room_for_simulation(self, in_flight: int = 0) -> bool:
        """Room under `max_tree_nodes` for one more simulation's nodes, besides the `in_flight` ones of this round:
        one expansion plus one added node per level of the longest possible path each. Abandoned branches are
        evicted before the answer is no."""
        tree, config = self.tree, self.config
        needed = (config.candidates + (tree.deepest_step - tree[tree.root].step + 1)) * (in_flight + 1)
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
            while spent < window:         # rounds of k simulations, the last one cut to the window
                ran = yield from self.simulate(min(config.parallel_simulations, window - spent))
                if ran == 0:
                    why = "node_cap"
                    break
                spent += ran
                if config.sims_per_move is None and config.early_stop and stop_rule_met(tree, config):
                    why = "threshold"       # tested after each round: its simulations all count
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
