"""The commands that run the search or read its trees: generate, replay, run (datasets, also on Ray), convert,
fork and explain. Each is a thin handler over the library; the parser is rain/tools/cli.py's."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rain.backends.models import ModelLoadError
from rain.core.config import RainConfig, parse_knobs
from rain.core.errors import UsageError
from rain.core.events import Committed
from rain.core.export import RunRecord, TreeFileError, dumps, load, loads, save
from rain.core.judge import JudgeError
from rain.core.prompts import PromptError, prompt_of
from rain.runs.concurrent import Row, answer_row, finished_ids, run_concurrently
from rain.runs.fork import ForkError, fork, plan_fork
from rain.runs.session import Recorded, RunRequest, RunStats, VanillaDone, run_session
from rain.runs.teaching import Narrator, TeachingError, describe_divergence, format_why, why_table
from rain.runs.treelog import TreeLogError, dumps_treelog, loads_treelog
from rain.tools import options
from rain.tools.distributed import RayUnavailableError, run_on_ray
from rain.tools.options import config_from, readable, stats_line


def run_one(runtime, question: str, config: RainConfig, prompt_format: str, progress: bool) -> RunRecord:
    """Vanilla then RAIN on one prompt (rain/runs/session.py); returns the record (its `vanilla` is vanilla's text)."""
    record = None
    for item in run_session(runtime, RunRequest(question, config, prompt_format)):
        if progress and isinstance(item, VanillaDone):
            print(f"searching ({runtime.dtype} generation, {runtime.judge_dtype} judge) ...", file=sys.stderr)
        elif progress and isinstance(item, Committed):
            print(f"  move {item.move}: +{item.text!r} ({item.simulations} simulations, {item.reason})",
                  file=sys.stderr)
        elif isinstance(item, Recorded):
            record = item.record
    return record


def cmd_generate(args: argparse.Namespace) -> int:
    config = config_from(args)
    if not args.prompt.strip():
        raise UsageError("the prompt is empty")
    runtime = options.runtime_for(args, config)
    record = run_one(runtime, args.prompt, config, args.prompt_format, progress=True)
    stats = RunStats.from_dict(record.stats)
    print(f"engine: {stats.engine.engine_note if stats.engine else None}", file=sys.stderr)
    print(f"vanilla: {record.vanilla}")
    print(f"rain: {record.answer}")
    print(stats_line(stats))                                    # stdout: vanilla, rain, one stats line
    print(describe_divergence(record.extras.get("divergence")), file=sys.stderr)
    if args.json:
        print(f"tree written to {save(record, args.json)}", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    record = load(args.tree)
    print(f"prompt: {record.prompt}")
    if record.vanilla is not None:
        print(f"vanilla: {record.vanilla}")
    print(f"rain: {record.answer}")
    evaluator = record.judge.get("evaluator") or {"spec": record.config.get("evaluator", "self")}
    print(f"evaluator: {evaluator['spec']}" + (f" ({evaluator['scores']})" if evaluator.get("scores") else ""))
    tree = record.tree()
    print(f"tree: {len(tree.nodes)} nodes, {sum(1 for e in record.events if e.type == 'commit')} moves, "
          f"{sum(1 for e in record.events if e.type == 'rewind')} simulations")
    print(stats_line(RunStats.from_dict(record.stats)))
    print(describe_divergence(record.extras.get("divergence"), known="divergence" in record.extras))
    return 0


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, item or None, problem or None) for every non-blank line."""
    rows = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise ValueError("not a JSON object")
                prompt = prompt_of(item)
                if prompt is None or not prompt.strip():
                    raise ValueError('needs a non-empty "prompt" string (or the adv format\'s "goal" and "controls")')
                item = {**item, "prompt": prompt}
                rows.append((number, item, None))
            except ValueError as error:
                rows.append((number, None, str(error).split("\n")[0]))
    return rows


def cmd_run(args: argparse.Namespace) -> int:

    config = config_from(args)
    source, out = Path(args.input), Path(args.out)
    if not source.is_file():
        raise UsageError(f"no such input file: {source}")
    if args.concurrency < 1 or args.workers < 1:
        raise UsageError("--concurrency and --workers must be >= 1")
    rows = _read_jsonl(source)
    done: set[str] = set()
    if args.resume:
        done = finished_ids(out)
    elif out.exists():
        out.unlink()
    failures = 0
    todo = []
    for number, item, problem in rows:
        if problem:
            failures += 1
            print(f"line {number}: skipped: {problem}", file=sys.stderr)
        elif str(item.get("id", number)) not in done:
            todo.append(Row(str(item.get("id", number)), item["prompt"], number))
    if args.ray is not None:
        try:
            failures += run_on_ray(todo, out, args.ray or None, args.workers, args.backend, args.model, config,
                                   args.prompt_format, args.trees)
        except RayUnavailableError as error:
            raise UsageError(str(error)) from None
        print(f"wrote {out} ({failures} line(s) skipped)", file=sys.stderr)
        return 0
    runtime = options.runtime_for(args, config)

    def answer(row: Row) -> dict:
        return answer_row(runtime, row, config, args.prompt_format, args.trees)

    bar = tqdm(total=len(todo), desc="prompts", unit="prompt", file=sys.stderr)

    def on_row(row: Row, result: dict | None, error: Exception | None) -> None:
        nonlocal failures
        bar.update(1)
        if error is not None:
            if not isinstance(error, (PromptError, JudgeError)):
                raise error
            failures += 1
            tqdm.write(f"line {row.line}: skipped: {error}", file=sys.stderr)

    with out.open("a", encoding="utf-8") as sink:
        try:
            run_concurrently(todo, answer, args.concurrency, sink, on_row)
        finally:
            bar.close()
    print(f"wrote {out} ({failures} line(s) skipped)", file=sys.stderr)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Tree JSON <-> llm-reasoners' TreeLog (rain/runs/treelog.py)."""
    if (args.to is None) == (args.from_format is None):
        raise UsageError("give exactly one of --to treelog (tree JSON -> TreeLog) or --from treelog "
                         "(TreeLog -> tree JSON)")
    source, out = readable(args.input), Path(args.output)
    if args.to:
        text = dumps_treelog(load(source))
        what = "TreeLog"
    else:
        try:
            record = loads_treelog(source.read_bytes())
            text = dumps(loads(dumps(record)))          # what we write must import like any tree file
        except (TreeLogError, TreeFileError) as error:
            raise UsageError(f"{source} is not a TreeLog we can read: {error}") from None
        what = "tree JSON"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({what})", file=sys.stderr)
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    """What if: re-run the rest of a recorded answer from a committed node with other knobs (rain/runs/fork.py)."""
    record = load(readable(args.tree))
    try:
        knobs = parse_knobs(args.knob)
        if args.evaluator is not None:
            knobs["evaluator"] = args.evaluator
        plan = plan_fork(record, args.at, knobs)
    except ForkError as error:
        raise UsageError(str(error)) from None
    tree_model = record.model.get("name", "embedded")
    if args.model is not None and args.model != tree_model:
        raise UsageError(f"{args.tree} was made by model {tree_model!r}, not {args.model!r}: fork it with its own model")
    args.model = None if tree_model == "embedded" else tree_model
    try:
        runtime = options.runtime_for(args, plan.config)
    except ModelLoadError as error:
        raise UsageError(f"the tree's model {tree_model!r} cannot be loaded here: {error}") from None
    print(f"forking at node {plan.node} (after move {plan.move}) with "
          f"{', '.join(f'{k}={v}' for k, v in plan.knobs.items()) or 'the same knobs'} ...", file=sys.stderr)
    try:
        forked = fork(runtime, plan, args.tree)
    except ForkError as error:
        raise UsageError(str(error)) from None
    apart = forked.extras["fork"]["divergence_from_parent"]
    print(f"parent: {record.answer}")
    print(f"fork: {forked.answer}")
    print(stats_line(RunStats.from_dict(forked.stats)))
    print("fork vs parent: " + ("identical" if apart is None else f"first different token {apart['token']}"))
    print(f"tree written to {save(forked, args.json)}", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Step through a tree file: one numbered sentence per event, and Eq. (1)'s why-table where asked."""
    record = load(readable(args.tree))
    config = RainConfig.from_dict(record.config)
    if args.why:
        simulation, _, node = args.why.partition(":")
        try:
            simulation_index = int(simulation)
            node_id = int(node) if node else None
        except ValueError:
            raise UsageError(f"--why takes SIMULATION or SIMULATION:NODE, got {args.why!r}") from None
        if node_id is None:
            select = next((e for e in record.events if e.type == "select" and e.simulation == simulation_index), None)
            if select is None or len(select.path) < 2:
                raise TeachingError(f"simulation {simulation_index} has no descent to explain; give SIMULATION:NODE")
            node_id = select.path[-2]
        print(format_why(why_table(record.events, config, simulation_index, node_id)))
        return 0
    narrator = Narrator(config)
    last = len(record.events) if args.to is None else min(args.to, len(record.events))
    for index, event in enumerate(record.events[:last], 1):
        sentence = narrator.narrate(event)
        if index >= args.start:
            print(f"{index:>5} {event.type:<10} {sentence}")
    print(describe_divergence(record.extras.get("divergence"), known="divergence" in record.extras))
    return 0
