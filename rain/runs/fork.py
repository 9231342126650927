"""What if: re-run the rest of an answer from one of its committed token sets, with other knobs and the same seed.

`plan_fork` checks the question against the tree alone (the node exists and is committed, the knobs are valid,
something is left to run); `fork` then checks that the loaded model is the tree's (the prompt and every committed
token set decode to the recorded text) and runs a search that starts below the committed prefix
(`Search(prefix=...)`: the prefix arrives as simulation 0's expand and commit events, reason "fork"). The forked
record names its parent file, the fork node, the changed knobs and the parent's answer (`fork` in the tree JSON).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rain.core.config import ConfigError, RainConfig
from rain.core.errors import RainError
from rain.core.events import Event
from rain.core.export import RunRecord, nodes_of
from rain.core.replay import rebuild
from rain.core.tree import ROOT_ID, TokenSet, Tree
from rain.runs.runtimes import Runtime
from rain.runs.session import new_record
from rain.runs.teaching import committed_nodes, find_divergence

PROMPT_FORMATS = ("auto", "chat", "fewshot")


class ForkError(RainError, ValueError):
    """The fork cannot be run from this tree (the message says why)."""


@dataclass(frozen=True)
class ForkPlan:
    record: RunRecord
    node: int                       # the committed node the fork starts below (0: the prompt)
    move: int                       # how many committed token sets the fork keeps
    prefix: list[TokenSet]          # those token sets
    texts: list[str]                # their recorded text (checked against the model's tokenizer)
    config: RainConfig              # the parent's config with the knobs applied
    knobs: dict[str, Any]


def plan_fork(record: RunRecord, node_id: int, knobs: dict[str, Any]) -> ForkPlan:
    """Everything that can be checked without a model."""
    tree: Tree = record.tree()
    if not 0 <= node_id < len(tree.nodes):
        raise ForkError(f"no node {node_id} in this tree (ids run from 0 to {len(tree.nodes) - 1})")
    chain = committed_nodes(tree)
    ids = [ROOT_ID] + [node.id for node in chain]
    if node_id not in ids:
        raise ForkError(f"node {node_id} was never committed; fork from a committed node: {', '.join(map(str, ids))}")
    kept = chain[:ids.index(node_id)]
    if any(node.terminal for node in kept[-1:]):
        raise ForkError(f"node {node_id} ended the answer: there is nothing after it to re-run")
    try:
        config = RainConfig.from_dict({**record.config, **knobs})
    except (ConfigError, TypeError) as error:
        raise ForkError(f"the knobs do not give a valid config: {error}") from None
    if config.max_moves is not None and config.max_moves <= len(kept):
        raise ForkError(f"max_moves={config.max_moves} leaves no move after node {node_id} (move {len(kept)})")
    return ForkPlan(record, node_id, len(kept), [tuple(n.tokens) for n in kept], [n.text for n in kept], config,
                    dict(knobs))


def conversation_for(runtime: Runtime, plan: ForkPlan):
    """The parent's conversation rebuilt on this model, or ForkError when the tree is another model's."""
    started = next((e for e in plan.record.events if e.type == "started"), None)
    for prompt_format in PROMPT_FORMATS:
        conversation = runtime.conversation(plan.record.prompt, plan.config, prompt_format)
        if started is None or (len(conversation.prompt_tokens) == started.prompt_tokens
                               and runtime.codec.decode(conversation.prompt_tokens) == started.root_text):
            break
    else:
        raise ForkError(f"the tree comes from another model: its prompt is not what {runtime.name}'s tokenizer makes "
                        f"of it (made by {plan.record.model.get('name')!r})")
    for move, (tokens, text) in enumerate(zip(plan.prefix, plan.texts), 1):
        if any(t >= len(runtime.tokenizer) for t in tokens) or runtime.codec.decode(tokens) != text:
            raise ForkError(f"the tree comes from another model: move {move}'s tokens do not decode to {text!r} "
                            f"with {runtime.name}'s tokenizer")
    return conversation


def fork(runtime: Runtime, plan: ForkPlan, parent_file: str | Path) -> RunRecord:
    """Run the fork on `runtime` (which must hold the tree's model) and return its record."""
    conversation = conversation_for(runtime, plan)
    search = runtime.search(conversation, plan.config, prefix=plan.prefix)
    events: list[Event] = list(search.run())
    meta = new_record(runtime, conversation, search.config, search.backends.judge, search.backends.lm)
    record = dataclasses.replace(meta, events=events, nodes=nodes_of(rebuild(events)), answer=search.answer(),
                                 vanilla=plan.record.vanilla, extras={},
                                 stats={**events[-1].stats, **meta.stats} if events[-1].type == "done" else meta.stats)
    parent = [t for node in committed_nodes(plan.record.tree()) for t in node.tokens]
    apart = find_divergence(record.tree(), parent)
    record.extras["fork"] = {"parent_file": str(parent_file), "node": plan.node, "move": plan.move,
                             "knobs": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.knobs.items()},
                             "parent_answer": plan.record.answer,
                             "divergence_from_parent": None if apart is None else {
                                 "token": apart.token, "move": apart.move, "node": apart.node,
                                 "fork_token": apart.rain_token, "parent_token": apart.vanilla_token}}
    return record
