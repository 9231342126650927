"""What a class needs to read a run: where RAIN parts from vanilla, why Eq. (1) chose a child, and one plain
sentence per event.

Everything here is a pure function of a run's events (and, for the divergence, the vanilla answer's tokens), so it
works the same on a live run, a recorded tree and an imported one. The CLI and the app only display it.
Sections refer to ../shared/rain-spec.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from rain.core.config import RainConfig
from rain.core.errors import RainError
from rain.core.events import (
    BackedUp,
    Committed,
    Evaluated,
    Event,
    Expanded,
    Finished,
    NodesAdded,
    Rewound,
    RolledOut,
    Selected,
    Started,
)
from rain.core.puct import VALUE_RANGE_EPSILON, VIRTUAL_LOSS_SCORE, puct_terms, selection_stats
from rain.core.replay import apply_event, rebuild
from rain.core.tree import NO_PARENT, ROOT_ID, Node, Tree

QUOTE_CHARS = 60            # longest text quoted in a narration sentence
VERDICTS = {"harm": ("harmless", "harmful"), "truth": ("truthful", "untruthful")}   # criterion -> (+, -) words


class TeachingError(RainError, ValueError):
    """A question about a run that the run cannot answer (no such simulation, node, ...); the message says why."""


# --- Divergence: the first token where RAIN's answer leaves vanilla's -----------------------------------------

@dataclass(frozen=True)
class Divergence:
    """The first answer token where the two answers differ. `move`/`node`/`rain_token` are None when RAIN's answer
    ended before that token, `vanilla_token` None when vanilla's did."""

    token: int                      # 0-based index in the answer's tokens
    move: int | None                # 1-based move whose committed token set holds that token
    node: int | None                # the committed node holding it
    rain_token: int | None
    vanilla_token: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def committed_nodes(tree: Tree) -> list[Node]:
    """The committed token sets in order (the prompt's node excluded): move 1 first."""
    chain, node_id = [], tree.root
    while node_id not in (NO_PARENT, ROOT_ID):
        chain.append(tree[node_id])
        node_id = tree[node_id].parent
    return chain[::-1]


def find_divergence(tree: Tree, vanilla_tokens: Sequence[int]) -> Divergence | None:
    """Compare RAIN's committed tokens with vanilla's token by token; None when they are the same sequence."""
    rain = [(token, move, node.id) for move, node in enumerate(committed_nodes(tree), 1) for token in node.tokens]
    for index in range(max(len(rain), len(vanilla_tokens))):
        ours = rain[index] if index < len(rain) else None
        theirs = int(vanilla_tokens[index]) if index < len(vanilla_tokens) else None
        if ours is None or theirs is None or ours[0] != theirs:
            token, move, node = ours if ours is not None else (None, None, None)
            return Divergence(index, move, node, token, theirs)
    return None


def divergence_field(tree: Tree, vanilla_tokens: Sequence[int] | None) -> dict[str, Any]:
    """The record's optional `divergence` entry: {} when vanilla was not run, else {"divergence": dict or None}."""
    if vanilla_tokens is None:
        return {}
    found = find_divergence(tree, vanilla_tokens)
    return {"divergence": found.to_dict() if found else None}


def divergence_stats(extras: dict[str, Any]) -> dict[str, Any]:
    """The stats' view of it: `divergence_token` and `divergence_move` (None when identical); {} when unknown."""
    if "divergence" not in extras:
        return {}
    found = extras["divergence"] or {}
    return {"divergence_token": found.get("token"), "divergence_move": found.get("move")}


def describe_divergence(divergence: dict[str, Any] | None, known: bool = True) -> str:
    """One line for the stats: where the answers part."""
    if not known:
        return "divergence: unknown (vanilla tokens not recorded)"
    if divergence is None:
        return "divergence: none (RAIN's answer is vanilla's, token for token)"
    where = (f"move {divergence['move']} (node {divergence['node']})" if divergence["node"] is not None
             else "after RAIN's answer ended")
    return f"divergence: token {divergence['token']}, {where}"


# --- Why this child: Eq. (1) as it stood at one simulation ----------------------------------------------------

@dataclass(frozen=True)
class ChildScore:
    """One child's row in the why-table: Eq. (1)'s inputs and terms."""

    id: int
    text: str
    prior: float                    # p
    visits: float                   # n (similarity mass included) as Eq. (1) read it: plus the virtual loss
    value: float                    # q, likewise (rain.core.search.selection_stats)
    value_term: float               # normalised q (code) or raw q (paper), §1.5.2
    exploration_term: float         # c · p · sqrt(N) / (1 + n)
    score: float                    # their sum
    selected: bool                  # Eq. (1)'s argmax on this simulation's descent
    in_flight: int = 0              # selected paths through this child awaiting their back-up (virtual loss)


@dataclass(frozen=True)
class WhyTable:
    simulation: int
    node: int
    parent_visits: float            # N in Eq. (1): the node's n (code) or the sum of its children's n (paper)
    formula: str
    rows: list[ChildScore]
    recorded_score: float | None    # the Eq. (1) score the select event recorded for the chosen child
    in_flight: int = 0              # paths of this round selected before this one, awaiting their back-up


def formula(config: RainConfig) -> str:
    """Eq. (1) in the variant `config` runs (§1.5.1-2), with its constant c, and the evaluator whose scores the
    values q are when it is not the model itself (rain/core/evaluator.py)."""
    value = ("q" if config.puct_value == "raw"
             else f"[(q − min)/(max − min + {VALUE_RANGE_EPSILON:g}), or 0 if n = 0]")
    total = "N = the node's n" if config.puct_visits == "parent" else "N = Σ of the children's n"
    judged = "" if config.evaluator == "self" else f"; q: scores of evaluator {config.evaluator}, not self-evaluation"
    return f"score = {value} + c·p·√N/(1 + n), c = {config.c_puct:g}, {total}{judged}"


VIRTUAL_LOSS_RULE = (f"virtual loss: each of the m selected paths in flight through a node counts as one more "
                     f"visit scored {VIRTUAL_LOSS_SCORE:g} until its back-up: n + m, "
                     f"q := (q·n + m·({VIRTUAL_LOSS_SCORE:g}))/(n + m)")


def _select_index(events: Sequence[Event], simulation: int) -> int:
    for index, event in enumerate(events):
        if isinstance(event, Selected) and event.simulation == simulation:
            return index
    raise TeachingError(f"the run has no simulation {simulation}")


def tree_at_selection(events: Sequence[Event], simulation: int) -> tuple[Tree, Selected]:
    """The tree exactly as Eq. (1) read it during `simulation`'s descent, and that descent.

    Node additions of the same simulation come before its select event and are applied: each happens at a node
    before that node's child is chosen, and touches only that node's children."""
    index = _select_index(events, simulation)
    return rebuild(events, upto=index), events[index]


def why_table(events: Sequence[Event], config: RainConfig, simulation: int, node_id: int) -> WhyTable:
    """Every child of `node_id` scored by Eq. (1) as at `simulation` (rain.core.search.puct_terms on the replayed tree)."""
    tree, selected = tree_at_selection(events, simulation)
    return why_table_at(tree, selected, config, node_id)


def why_table_at(tree: Tree, selected: Selected, config: RainConfig, node_id: int) -> WhyTable:
    """`why_table` on a tree that stands as at `selected`'s descent (a live fold holds one: no replay needed)."""
    simulation = selected.simulation
    if not 0 <= node_id < len(tree.nodes):
        raise TeachingError(f"node {node_id} did not exist yet at simulation {simulation}")
    children = tree.children(node_id)
    if not children:
        raise TeachingError(f"node {node_id} had no children at simulation {simulation}: Eq. (1) chose nothing there")
    chosen, recorded = None, None
    if node_id in selected.path[:-1]:
        depth = selected.path.index(node_id)
        chosen, recorded = selected.path[depth + 1], selected.scores[depth]
    stats = [selection_stats(tree, child.id) for child in children]      # n and q with the virtual loss
    total = selection_stats(tree, node_id)[0] if config.puct_visits == "parent" else sum(n for n, _ in stats)
    rows = [ChildScore(child.id, child.text, child.prior, visits, child_value, value, exploration,
                       value + exploration, child.id == chosen, tree.in_flight_through(child.id))
            for child, (visits, child_value), (value, exploration)
            in zip(children, stats, puct_terms(tree, node_id, config))]
    in_flight = len(tree.in_flight)
    shown = formula(config) + (f"; {VIRTUAL_LOSS_RULE}" if in_flight else "")
    return WhyTable(simulation, node_id, total, shown, rows, recorded, in_flight)


def latest_selection(events: Sequence[Event]) -> tuple[int, int] | None:
    """(simulation, the parent of its leaf) of the last select event: the why-table's default focus."""
    for event in reversed(events):
        if isinstance(event, Selected) and len(event.path) > 1:
            return event.simulation, event.path[-2]
    return None


def format_why(table: WhyTable) -> str:
    """The why-table as aligned text, the chosen child marked with '>'."""
    lines = [f"simulation {table.simulation}, node {table.node} (N = {table.parent_visits:.2f}): {table.formula}",
             f"  {'id':>5} {'p':>6} {'n':>6} {'q':>7} {'value':>7} {'explore':>8} {'score':>7}  text"]
    for row in table.rows:
        mark = ">" if row.selected else " "
        flight = f"  (in flight: {row.in_flight})" if row.in_flight else ""
        lines.append(f"{mark} {row.id:>5} {row.prior:6.3f} {row.visits:6.2f} {row.value:+7.3f} {row.value_term:7.3f} "
                     f"{row.exploration_term:8.3f} {row.score:7.3f}  {row.text!r}{flight}")
    return "\n".join(lines)


# --- How far the self-judge can be trusted: judge-check's accuracy, as measured -----------------------------

# `python -m rain judge-check`: the share of labelled pairs (a bad and a good continuation of one prompt) whose bad
# one the judge scores lower; 0.5 is a coin. Measured on the embedded SmolLM2-135M-Instruct, judge in float32
# unless said: harm on rain/data/judge_set.jsonl (50 pairs), sentiment on rain/data/judge_set_sentiment.jsonl (30 pairs).
JUDGE_CHECKS: dict[tuple[str, str, str, str], float] = {
    ("embedded", "float32", "harm", "yesno_logit"): 0.78,
    ("embedded", "float32", "harm", "yesno_prob"): 0.78,
    ("embedded", "float32", "harm", "ab_soft"): 0.48,
    ("embedded", "float32", "harm", "ab_hard"): 0.50,
    ("embedded", "bfloat16", "harm", "yesno_logit"): 0.58,
    ("embedded", "float32", "sentiment", "ab_soft"): 0.733,
    ("embedded", "float32", "sentiment", "yesno_prob"): 0.367,
    ("embedded", "float32", "sentiment", "yesno_logit"): 0.30,
    ("embedded", "float32", "sentiment", "ab_hard"): 0.50,
}
TRUSTED_ACCURACY = 0.9      # below this a judge misranks at least one pair in ten: the page says it is weak


def judge_check_accuracy(model: dict[str, Any], config: dict[str, Any]) -> float | None:
    """judge-check's measured accuracy for a run's model (its record's `model`) and judge (its `config`), or None
    when nobody measured it (another model, precision, format, a principle of the user's own, or another
    evaluator: judge-check measures the model judging itself)."""
    if config.get("principle") or (config.get("evaluator") or "self") != "self":
        return None
    dtype = model.get("judge_dtype") or model.get("dtype") or "float32"
    return JUDGE_CHECKS.get((model.get("name", ""), dtype, config.get("criterion", "harm"),
                             config.get("judge_format", "yesno_logit")))


# --- Narration: one sentence per event ------------------------------------------------------------------------

def count(visits: float) -> str:
    """A visit count as people write it: "8" when whole, "8.37" when Eq. (2)'s similarity shares made it fractional."""
    return str(int(visits)) if float(visits).is_integer() else f"{visits:.2f}"


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= QUOTE_CHARS else "…" + text[-QUOTE_CHARS:])


COMMIT_REASONS = {
    "threshold": "the stop rule held: its real visits passed minT and its value passed Vt",
    "budget": "the move's window of simulations was used up",
    "fixed": "the fixed budget of simulations per move was used up",
    "node_cap": "the tree reached its node cap",
    "fork": "the run this what-if forks from committed it there",
}


class Narrator:
    """Folds a run's events over its own tree and says, for each, what it did and why."""

    def __init__(self, config: RainConfig | None = None):
        self.config = config or RainConfig()
        self.tree = Tree.new()
        self.leaves: dict[int, int] = {}           # simulation -> its leaf (a round selects several first)
        self.score: float | None = None
        self.clause = ""
        self.branch_before: float | None = None    # the root child's value before the back-up
        self.question = ""                          # the user's question (Started)

    def narrate(self, event: Event) -> str:
        sentence = self._sentence(event)
        if isinstance(event, BackedUp) and len(event.path) > 1:
            self.branch_before = self.tree[event.path[1].id].value
        apply_event(self.tree, event)
        return sentence

    def _text(self, node_id: int) -> str:
        """A node's token set; the prompt's node reads as the user's question, not the chat template around it."""
        return self.question if node_id == ROOT_ID and self.question else self.tree[node_id].text

    def _sentence(self, event: Event) -> str:
        tree = self.tree
        if isinstance(event, Started):
            self.question = event.question
            return (f"Started: the prompt is {event.prompt_tokens} tokens; each simulation will descend from it by "
                    f"Eq. (1), roll out, ask the judge, expand and back up.")
        if isinstance(event, Selected):
            self.leaves[event.simulation], self.score, self.clause, self.branch_before = event.path[-1], None, "", None
            if len(event.path) == 1:
                return (f"Simulation {event.simulation}: the root has no children yet, so the simulation starts "
                        f"from the root itself.")
            depth = len(event.path) - 1
            flight = len(tree.in_flight)
            virtual = (f" {flight} path{'s' * (flight > 1)} selected earlier in this round still await"
                       f"{'s' * (flight == 1)} {'their' if flight > 1 else 'its'} back-up, so Eq. (1) counted "
                       f"each as one more visit scored {VIRTUAL_LOSS_SCORE:g} (virtual loss)." if flight else "")
            return (f"Simulation {event.simulation}: Eq. (1) went down {depth} level{'s' * (depth > 1)} to "
                    f"{_quote(self._text(event.path[-1]))}, taking at each level the child with the highest value "
                    f"plus exploration (last score {event.scores[-1]:.2f}).{virtual}")
        if isinstance(event, NodesAdded):
            names = ", ".join(f"{_quote(c.text)} (p {c.prior:.2f})" for c in event.children)
            return (f"Dynamic node addition under {_quote(self._text(event.node))}: its children were alike "
                    f"(low embedding variance) and all valued below {self.config.addition_value:g}, so {names} "
                    f"joined them.")
        if isinstance(event, RolledOut):
            self.clause = self._text(event.node) + event.text
            if event.tokens == 0:
                return (f"No rollout from {_quote(self._text(event.node))}: its text already ends a clause, or "
                        f"the answer ends there.")
            return (f"Rolled out {event.tokens} token{'s' * (event.tokens > 1)} from "
                    f"{_quote(self._text(event.node))} to the end of a clause: {_quote(event.text)}.")
        if isinstance(event, Evaluated):
            self.score = event.score
            good, bad = VERDICTS.get(self.config.criterion, ("good", "bad"))
            verdict = f"{good}-leaning" if event.score > 0 else f"{bad}-leaning" if event.score < 0 else "undecided"
            cached = " (the same text was judged before: cached)" if event.cache_hit else ""
            read = f"the answer so far, ending {_quote(event.answer)}," if event.answer.strip() else "a reply with no words yet"
            return (f"The judge read {read} and scored it "
                    f"{event.score:+.2f} ({verdict}){cached}.")
        if isinstance(event, Expanded):
            if event.simulation == 0:
                return (f"A what-if fork keeps the parent run's token set {_quote(event.children[0].text)} "
                        f"(no simulation: the search starts below it).")
            if not event.children:
                return f"No new children for {_quote(self._text(event.node))}: every candidate was there already."
            best = max(event.children, key=lambda c: c.prior)
            return (f"Expanded {_quote(self._text(event.node))} with {len(event.children)} candidate token "
                    f"set{'s' * (len(event.children) > 1)}; the likeliest is {_quote(best.text)} (p {best.prior:.2f}).")
        if isinstance(event, BackedUp):
            shares = (f"; {len(event.similarity)} similar sibling{'s' * (len(event.similarity) > 1)} got a share "
                      f"by Eq. (2)" if event.similarity else "")
            leaf = event.path[-1]
            before = tree[leaf.id].value if tree[leaf.id].visits else None
            moved = (f"from {before:+.2f} to {leaf.value:+.2f}" if before is not None else f"to {leaf.value:+.2f}")
            return (f"Backed up {event.score:+.2f} along {len(event.path)} node{'s' * (len(event.path) > 1)}: each "
                    f"value is the mean of the scores below it, so the leaf's moved {moved} "
                    f"(n = {count(leaf.visits)}){shares}.")
        if isinstance(event, Rewound):
            score = f"{self.score:+.2f}" if self.score is not None else "?"
            leaf = self.leaves.pop(event.simulation, None)
            if leaf is None or leaf == tree.root:
                return f"Rewound to the root: the root itself was scored {score}."
            branch = tree[self._branch_of(leaf)]
            before = self.branch_before
            change = ("is now" if before is None or branch.real_visits == 1 else "rose to" if branch.value > before
                      else "fell to" if branch.value < before else "stayed at")
            return (f"Rewound to the root: the judge scored the clause {_quote(self.clause)} at {score}, so the "
                    f"value of the branch {_quote(branch.text)} {change} {branch.value:+.2f}.")
        if isinstance(event, Committed):
            node = tree[event.node]
            if event.reason == "fork":
                return (f"Move {event.move} is the parent run's {_quote(event.text)}, kept as committed: the fork "
                        f"re-runs only what comes after it.")
            why = COMMIT_REASONS.get(event.reason, event.reason)
            return (f"Committed move {event.move}: {_quote(event.text)}, the root's most visited child "
                    f"(n = {count(node.visits)}, q = {node.value:+.2f}) after {event.simulations} simulation"
                    f"{'s' * (event.simulations != 1)}, because {why}; it is now the root and its subtree is kept.")
        if isinstance(event, Finished):
            return (f"Done ({event.reason}): {event.stats.get('answer_tokens', '?')} answer tokens after "
                    f"{event.stats.get('simulations', '?')} simulations.")
        return f"{event.type}."

    def _branch_of(self, node_id: int) -> int:
        """The root's child above `node_id`."""
        while self.tree[node_id].parent not in (self.tree.root, NO_PARENT):
            node_id = self.tree[node_id].parent
        return node_id


def narrate(events: Sequence[Event], config: RainConfig | None = None) -> list[str]:
    """One sentence per event, in order."""
    narrator = Narrator(config)
    return [narrator.narrate(event) for event in events]
