"""Tree JSON: the contract between the library, the CLI and the app (schema: rain/core/schema/tree.schema.json).

`save`/`dumps` write a run; `load`/`loads` read one back, refusing anything that is too large, not JSON, not
the schema, or whose events do not rebuild its nodes. Loading never executes anything from the file.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rain.core.errors import RainError
from rain.core.events import Event, event_from_dict
from rain.core.judge import JudgeDescription
from rain.core.replay import ReplayError, rebuild
from rain.core.tree import Node, Tree

SCHEMA_VERSION = 2                   # 2: evaluate events carry `orders`; 1 is converted on load (`upgrade_v1`)
SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "tree.schema.json"
MAX_IMPORT_BYTES = 64 * 1024 * 1024
OPTIONAL_KEYS = ("divergence", "fork")     # top-level keys a file may carry (rain/runs/teaching.py, rain/runs/fork.py)


class TreeFileError(RainError, ValueError):
    """A tree file cannot be imported; the message names the first problem."""


@dataclass
class RunRecord:
    """One run, as exported: everything the app and replay need, nothing that needs the model."""

    prompt: str
    config: dict[str, Any]
    model: dict[str, Any]
    judge: dict[str, Any]
    events: list[Event]
    nodes: list[dict[str, Any]] = field(default_factory=list)
    answer: str = ""
    vanilla: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)    # OPTIONAL_KEYS present; written only when set

    def tree(self, upto: int | None = None) -> Tree:
        """The tree after the first `upto` events (the whole run when None)."""
        return rebuild(self.events, upto)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION, "config": self.config, "model": self.model, "prompt": self.prompt,
            "judge": self.judge, "nodes": self.nodes or nodes_of(self.tree()),
            "events": [e.to_dict() for e in self.events], "answer": self.answer, "vanilla": self.vanilla,
            "stats": self.stats, **{key: self.extras[key] for key in OPTIONAL_KEYS if key in self.extras},
        }


def node_dict(node: Node) -> dict[str, Any]:
    return {"id": node.id, "parent": node.parent, "tokens": list(node.tokens), "text": node.text,
            "step": node.step, "prior": node.prior, "visits": node.visits, "real_visits": node.real_visits,
            "value": node.value, "terminal": node.terminal, "added": node.added, "committed": node.committed}


def nodes_of(tree: Tree) -> list[dict[str, Any]]:
    return [node_dict(n) for n in tree.nodes]


def dumps(record: RunRecord) -> str:
    return json.dumps(record.to_dict(), ensure_ascii=False, allow_nan=False)


def save(record: RunRecord, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(record), encoding="utf-8")
    return path


def _refuse_constant(name: str) -> float:
    raise TreeFileError(f"not valid JSON: {name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise TreeFileError(f"number {text[:30]} is out of range")
    return value


def _schema_errors(data: Any) -> str | None:
    import jsonschema  # imported here: only imports need it

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    error = next(iter(sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message if len(error.message) < 200 else error.message[:200] + "..."
    return f"{where}: {message}"


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 document as schema 2: each evaluate event's `first`/`second` (and `parts`, if any) become
    `orders`, the parts recomputed from the judge's description where missing; the judge gains its description
    (described from its format, criterion and config, as JudgeDescription.of_record does).

    Best effort on a well-formed file: anything malformed is left for the schema check to name.
    """
    try:
        judge, config = data.get("judge"), data.get("config")
        description = JudgeDescription.of_record(judge if isinstance(judge, dict) else None,
                                                 config if isinstance(config, dict) else None)
        events = data.get("events")
        for event in events if isinstance(events, list) else []:
            if not (isinstance(event, dict) and event.get("type") == "evaluate" and "orders" not in event):
                continue
            probs = [event.pop("first", {}), event.pop("second", {})]
            parts = event.pop("parts", None) or description.parts(probs) or [None] * len(probs)
            event["orders"] = [{"probs": p, "part": part} for p, part in zip(probs, parts)]
        if isinstance(judge, dict) and "description" not in judge:
            judge["description"] = description.to_dict()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        pass
    data["schema_version"] = SCHEMA_VERSION
    return data


def loads(text: str | bytes) -> RunRecord:
    """Parse and validate a tree file's text; raises TreeFileError naming the first problem."""
    if len(text) > MAX_IMPORT_BYTES:
        raise TreeFileError(f"the file is {len(text) / 1e6:.1f} MB; the limit is {MAX_IMPORT_BYTES / 1e6:.0f} MB")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise TreeFileError(f"not UTF-8 text (byte {error.start})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except json.JSONDecodeError as error:
        raise TreeFileError(f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise TreeFileError("not a tree file: nested too deeply") from None
    if not isinstance(data, dict):
        raise TreeFileError("not a tree file: the top level must be a JSON object")
    version = data.get("schema_version")
    if version == 1 and type(version) is int:
        data = upgrade_v1(data)
    elif version != SCHEMA_VERSION or type(version) is not int:
        raise TreeFileError(f"unsupported schema_version {version!r}; this version reads 1 and {SCHEMA_VERSION}")
    problem = _schema_errors(data)
    if problem:
        raise TreeFileError(f"does not match the tree schema at {problem}")
    try:
        events = [event_from_dict(e) for e in data["events"]]
        record = RunRecord(prompt=data["prompt"], config=data["config"], model=data["model"], judge=data["judge"],
                           events=events, nodes=data["nodes"], answer=data["answer"], vanilla=data["vanilla"],
                           stats=data["stats"], extras={k: data[k] for k in OPTIONAL_KEYS if k in data})
        rebuilt = nodes_of(record.tree())
    except (ReplayError, KeyError, TypeError, ValueError, IndexError) as error:
        raise TreeFileError(f"the events do not form a valid tree: {error}") from None
    if rebuilt != data["nodes"]:
        first = next((i for i, (a, b) in enumerate(zip(rebuilt, data["nodes"])) if a != b), min(len(rebuilt), len(data["nodes"])))
        raise TreeFileError(f"the nodes do not match what the events rebuild (first difference at node {first})")
    return record


def load(path: str | Path) -> RunRecord:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise TreeFileError(f"cannot read {path}: {error.strerror}") from None
    if size > MAX_IMPORT_BYTES:
        raise TreeFileError(f"the file is {size / 1e6:.1f} MB; the limit is {MAX_IMPORT_BYTES / 1e6:.0f} MB")
    return loads(path.read_bytes())
