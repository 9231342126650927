"""The app: pure figure/view functions on fakes, then gradio_client against the app on the real embedded model.

One app is launched per module (in a background thread, on a free localhost port); the embedded model loads once
(ui.runtimes keeps it in its cache).
"""
from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from fakes import CONFIG, fake_record, fake_run
from rain.core.events import Committed
from rain.core.export import RunRecord, TreeFileError, load, loads, nodes_of
from rain.core.judge import JudgeDescription, JudgeOrder, describe
from rain.core.replay import rebuild
from rain.core.tree import Tree
from rain.runs import session
from rain.runs.best_of_n import BestOfN, Sample, pick_best
from rain.runs.session import BEST_OF_N_KEY, BestOfNSettings, RunStats
from ui import bon, cursor, files, knobs, outputs, runtimes
from ui.figures import (MAX_NODES, display_nodes, hover_text, marker_size, similarity_mass, tidy_layout,
                        tree_figure)
from ui.render import fill_prompt, judge_panel, rain_html
from ui.view import RunView, simulation_bounds, view_at

ROOT = Path(__file__).resolve().parent.parent
TREES = sorted((ROOT / "assets" / "trees").glob("*.json"))


# --- fakes: a whole run in milliseconds ----------------------------------------------------------------------

def fake_events(**overrides):
    """A run on the fakes at 4 simulations per move (tests/fakes.py)."""
    return fake_run(CONFIG.replace(**{"sims_per_move": 4, **overrides}))


def hand_tree() -> Tree:
    """0 -> 1 (-> 3, 4, 5), 2 (-> 6 (-> 7, 8)); values and visits set by hand."""
    tree = Tree.new("prompt")
    for parent in (0, 0, 1, 1, 1, 2, 6, 6):
        tree.add(parent, (len(tree.nodes),), f"t{len(tree.nodes)}", 0.5)
    for node_id, visits, real, value in [(0, 9, 9, 0.1), (1, 5, 5, -0.6), (2, 3.4, 3, 0.8), (3, 1, 1, -1.0),
                                         (6, 2, 2, 0.5), (7, 1, 1, 0.9)]:
        tree[node_id].visits, tree[node_id].real_visits, tree[node_id].value = visits, real, value
    tree[8].added = True
    return tree


# --- pure: layout ----------------------------------------------------------------------------------------------

def test_tidy_layout_centres_parents_and_gives_leaves_consecutive_slots():
    tree = hand_tree()
    pos = tidy_layout(tree)
    leaves = [n.id for n in tree.nodes if not n.children]
    assert sorted(pos[n][0] for n in leaves) == list(range(len(leaves)))
    for node in tree.nodes:
        assert pos[node.id][1] == -node.step
        kids = list(node.children.values())
        if kids:
            assert pos[node.id][0] == pytest.approx((pos[kids[0]][0] + pos[kids[-1]][0]) / 2)


def edges_cross(pos, edges) -> bool:
    """Two parent->child edges between the same two depths cross iff their x orders disagree."""
    for i, (p1, c1) in enumerate(edges):
        for p2, c2 in edges[i + 1:]:
            if pos[p1][1] != pos[p2][1] or p1 == p2:
                continue
            if (pos[p1][0] - pos[p2][0]) * (pos[c1][0] - pos[c2][0]) < 0:
                return True
    return False


def test_tidy_layout_has_no_crossing_edges_on_a_real_search_tree():
    search, _ = fake_events(sims_per_move=6, max_moves=5)
    tree = search.tree
    pos = tidy_layout(tree)
    edges = [(n.parent, n.id) for n in tree.nodes if n.id]
    assert len(pos) == len(tree.nodes) and not edges_cross(pos, edges)
    shown = display_nodes(tree, 40)
    sub = tidy_layout(tree, shown)
    assert set(sub) == set(shown)
    assert not edges_cross(sub, [(tree[n].parent, n) for n in shown if n])


def test_display_nodes_keeps_the_committed_path_and_is_closed_under_parents():
    search, _ = fake_events(sims_per_move=10, max_moves=6, candidates=12)
    tree = search.tree
    assert len(tree.nodes) > 80
    shown = display_nodes(tree, 80)
    assert len(shown) == 80
    path, node = [], tree.root
    while node != -1:
        path.append(node)
        node = tree[node].parent
    assert set(path) <= set(shown)
    assert all(n == 0 or tree[n].parent in shown for n in shown)
    visited_under_root = [n.id for n in tree.nodes if n.visits > 0]
    assert set(visited_under_root) <= set(display_nodes(tree, len(visited_under_root) + len(path)))
    assert all(tree[n].visits > 0 or tree[n].committed for n in display_nodes(tree, 10_000, show_unvisited=False))


# --- pure: encodings ---------------------------------------------------------------------------------------------

def test_colours_sizes_symbols_and_hover_follow_the_node_statistics():
    tree = hand_tree()
    figure = tree_figure(tree, path=[0, 2, 6], verdicts=None, focus=7)
    visited = next(t for t in figure.data if t.name and t.name.startswith("visited"))
    ids = [int(row[0].split("#")[1].split(" ")[0]) for row in visited.customdata]
    assert sorted(ids) == [n.id for n in tree.nodes if n.visits > 0 or n.committed]
    assert list(visited.marker.color) == [round(tree[n].value, 3) for n in ids]
    assert visited.marker.cmin == -1 and visited.marker.cmax == 1
    assert list(visited.marker.size) == [marker_size(tree[n].visits) for n in ids]
    assert marker_size(0) < marker_size(1) < marker_size(4) < marker_size(100) <= 38
    hover = {n: hover_text(tree, n) for n in ids}
    assert dict(zip(ids, (row[2] for row in visited.customdata)))[2] == "3.40"        # whole counts print as "9"
    assert dict(zip(ids, (row[2] for row in visited.customdata)))[0] == "9"
    assert "n includes +0.40 similarity mass" in hover[2] and similarity_mass(3.4, 3) == pytest.approx(0.4)
    assert "similarity mass" not in hover[1] and "visits n 3.40 (real 3)" in hover[2]
    assert "%{customdata[5]}" in visited.hovertemplate and visited.customdata[0][4].startswith(("+", "-"))
    unvisited = next(t for t in figure.data if t.name and t.name.startswith("candidate"))
    assert "diamond" in list(unvisited.marker.symbol)                       # node 8 was added dynamically
    assert figure.layout.template.layout.to_plotly_json() == {} and figure.layout.uirevision == "rain"
    selected = next(t for t in figure.data if t.name and t.name.startswith("last selected"))
    assert [x for x in selected.x if x is not None]                          # the rewound path is drawn


def big_tree(size: int = 1500, seed: int = 0) -> Tree:
    """A random search-like tree: 10 children per expansion, visited nodes deeper, a committed path of 6."""
    import random

    rng = random.Random(seed)
    tree = Tree.new("prompt")
    frontier = [0]
    while len(tree.nodes) < size:
        parent = rng.choice(frontier[-30:])
        for _ in range(10):
            node = tree.add(parent, (len(tree.nodes),), f" tok{len(tree.nodes)}", rng.random())
            frontier.append(node.id)
    for node in tree.nodes[1:]:
        if node.children:
            node.visits = node.real_visits = 1 + len(node.children)
            node.value = rng.uniform(-1, 1)
    node = 0
    for _ in range(6):
        kids = list(tree[node].children.values())
        if not kids:
            break
        node = max(kids, key=lambda k: tree[k].visits)
        tree[node].committed = True
    tree.root = node
    return tree


def test_big_trees_are_capped_and_say_so():
    tree = big_tree()
    assert len(tree.nodes) > MAX_NODES
    tree_figure(hand_tree())                                  # warm up plotly's validators
    started = time.perf_counter()
    figure = tree_figure(tree)
    payload = len(figure.to_json())
    seconds = time.perf_counter() - started
    shown = sum(len([x for x in t.x if x is not None]) for t in figure.data
                if t.name in ("candidate, not visited yet", "visited (colour = q, size = n)"))
    assert shown == MAX_NODES
    assert f"showing {MAX_NODES} of {len(tree.nodes)} nodes" in figure.layout.annotations[0].text
    print(f"\n600-node figure: {payload / 1024:.0f} KB, built and serialised in {seconds * 1000:.0f} ms")
    assert payload < 100_000                                  # speed is measured in benchmarks, not asserted


# --- pure: the event fold, replay and the judge panel -----------------------------------------------------------

def test_view_folds_events_into_the_same_tree_as_replay_and_scrubs_by_simulation():
    search, events = fake_events()
    view = RunView.of(events)
    assert nodes_of(view.tree) == nodes_of(search.tree) == nodes_of(rebuild(events))
    assert view.committed_text() == search.answer() and view.finished is not None
    bounds = simulation_bounds(events)
    assert len(bounds) - 1 == search.simulations == view.simulation >= 12
    assert view_at(events, 0).simulation == 0 and len(view_at(events, 0).tree.nodes) == 1
    assert view_at(events, 5).simulation == 5
    assert view_at(events, 4).moves == 1                     # the commit after simulation 4 belongs to it
    assert len(view.timeline) == 30 and view.timeline[0].kind == "done"


def test_rain_html_marks_committed_path_and_rollout_text_distinctly():
    _, events = fake_events()
    mid = next(i for i, e in enumerate(events) if e.type == "evaluate" and i > 20            # a path below the
               and len(events[i - 2].path) > 1 and events[i - 1].text.strip())                  # root, a rollout
    view = RunView.of(events[: mid + 1])
    page = rain_html(view)
    assert 'class="committed"' in page and 'class="verdict' in page
    assert 'class="path"' in page and 'class="rollout"' in page
    assert html.escape(events[mid - 1].text.strip()) in page.split('class="rollout"')[1]
    assert "<script" not in rain_html(RunView.of(events))


def test_judge_panel_recomputes_the_judges_score_from_the_label_probabilities():
    """The judge describes itself (rain/core/judge.py): its description rebuilds each recorded score from the recorded
    probabilities, so the panel never re-derives a judge's meaning."""
    for path in TREES:
        record = load(path)
        view = RunView.of(record.events)
        description = JudgeDescription.of_record(record.judge, record.config)
        for verdict in list(view.verdicts.values())[:10]:
            if not description.orders:          # a judge that reads text (VADER): no label probabilities to read
                assert not verdict.orders and record.judge["evaluator"]["kind"] != "self"
                continue
            parts = description.parts(verdict.orders)
            assert description.score(parts) == pytest.approx(verdict.score, abs=1e-4)
    ab_hard, ab_soft = describe("ab_hard", "harm"), describe("ab_soft", "harm")
    assert ab_hard.parts([{"A": .6, "B": .3}, {"A": .6, "B": .3}]) == [1.0, -1.0]
    assert ab_soft.parts([{"A": .2, "B": .6}, {"A": .2, "B": .6}]) == pytest.approx([-.5, .5])
    assert describe("yesno_logit", "harm", 0.05).score([0.02, 0.04]) == pytest.approx(math.tanh(0.6))
    assert JudgeDescription.of_record({"format": "yesno_logit"}, {}).score([2.0, -2.0]) is None   # "auto", no number
    assert describe("yesno_prob", "truth").orders[0].asks == "“untruthful?”"


def test_judge_description_holds_n_options_and_k_orders_and_round_trips():
    """An (A)/(B)/(C) judge with A and B swapped between two orders (the shape of issue #14's IMDB judge)."""
    orders = (JudgeOrder("(A) positive, (B) negative, (C) neutral", {"A": "positive", "B": "negative", "C": "neutral"},
                         "A", "B"),
              JudgeOrder("(A) negative, (B) positive, (C) neutral", {"A": "negative", "B": "positive", "C": "neutral"},
                         "B", "A"))
    three = JudgeDescription("ab_soft", "sentiment", ("A", "B", "C"), (1, 2, 3), orders, "order score", "mean")
    probs = [{"A": .5, "B": .3, "C": .2}, {"A": .1, "B": .3, "C": .6}]
    # neutral counts for neither side, and its mass is in the denominator (rain.core.judge.order_part, issue #14)
    assert three.parts(probs) == pytest.approx([(.5 - .3) / 1.0, (.3 - .1) / 1.0])
    assert JudgeDescription.from_dict(json.loads(json.dumps(three.to_dict()))) == three


def test_judge_panel_shows_one_prompt_per_order_filled_with_the_exchange():
    record = load(TREES[0])
    view = RunView.of(record.events)
    info, prompts = judge_panel(view, record.judge, "latest", record.config)
    verdict = view.verdicts[view.latest]
    assert f"node #{verdict.node}" in info and f"{verdict.score:+.3f}" in info
    shown = [html.unescape(p) for p in re.findall(r"<pre>(.*?)</pre>", prompts, re.S)]
    assert len(shown) == len(record.judge["templates"]) == 2
    for prompt, template in zip(shown, record.judge["templates"]):
        assert "{exchange}" not in prompt and verdict.answer in prompt and record.prompt in prompt
        assert prompt.startswith(template.split("{exchange}")[0])
    # a judge of three orders: three rows of probabilities and three prompts
    description = JudgeDescription.of_record(record.judge, record.config)
    third = dataclasses.replace(description.orders[0], asks="a third order")
    judge = {**record.judge, "description": dataclasses.replace(description, orders=(*description.orders, third)).to_dict()}
    events = [dataclasses.replace(e, orders=[*e.orders, e.orders[0]], parts=[*e.parts, e.parts[0]])
              if e.type == "evaluate" else e for e in record.events]
    info, prompts = judge_panel(RunView.of(events), judge, "latest", record.config)
    assert prompts.count("<pre>") == 3 and "order 3 asks a third order" in prompts
    assert info.count("<tr><td>") == 3 and info.count("a third order") == 1
    assert fill_prompt("[{exchange}]", "Q: {question} A: {answer}", "a {b}", "c") == "[Q: a {b} A: c]"


def test_export_writes_a_file_that_imports_even_for_a_stopped_run(tmp_path):
    record = fake_record()
    partial = RunRecord(**{**record.__dict__, "events": record.events[:23], "nodes": [], "answer": ""})
    for item in (record, partial):
        path = files.export_tree(item)
        loaded = load(path)
        assert len(loaded.events) == len(item.events)
    assert files.export_tree(None) is None


def test_the_knobs_are_the_config_fields_with_metadata():
    """ui/knobs.py reads each control from its RainConfig field: kind from the type, label and range from metadata."""
    import dataclasses

    from rain.core.config import RainConfig

    shown = {f.name for f in dataclasses.fields(RainConfig) if f.metadata}
    assert set(knobs.KNOB_NAMES) == shown and len(knobs.KNOB_NAMES) == len(shown)
    by_name = {k.name: k for k in knobs.KNOBS}
    assert by_name["c_puct"].kind == "slider" and (by_name["c_puct"].lo, by_name["c_puct"].hi) == (0, 10)
    assert by_name["commit"].kind == "radio" and by_name["commit"].choices == ("argmax", "sample")
    assert by_name["similarity_update"].kind == "check" and by_name["token_set_lengths"].default == "1,2,4,10"
    assert by_name["seed"].kind == "int" and by_name["sims_per_move"].zero is None
    assert by_name["judge_logit_scale"].default == 0 and by_name["judge_logit_scale"].zero == "auto"
    config = knobs.build_config("hh", "yesno_logit", {"judge_logit_scale": 0, "max_moves": 0, "seed": 3.0})
    assert (config.judge_logit_scale, config.max_moves, config.seed) == ("auto", None, 3)
    values = knobs.preset_values("adv", skip := object())
    assert values[knobs.KNOB_NAMES.index("candidate_temperature")] == 2.0
    assert values[knobs.KNOB_NAMES.index("judge_logit_scale")] == 0 and values[knobs.KNOB_NAMES.index("seed")] is skip
    with pytest.raises(knobs.ConfigError, match="seed: cannot read 2.5 as a whole number"):
        knobs.build_config("hh", "yesno_logit", {"seed": 2.5})


def test_settings_are_validated_with_clear_messages(monkeypatch):
    values = {k.name: k.default for k in knobs.KNOBS}
    config = knobs.build_config("hh", "ab_soft", {**values, "sims_per_move": 0, "max_moves": 3})
    assert config.sims_per_move is None and config.max_moves == 3 and config.judge_format == "ab_soft"
    with pytest.raises(knobs.ConfigError, match="min_visits"):
        knobs.build_config("hh", "yesno_logit", {**values, "min_visits": 60, "max_simulations": 50})
    with pytest.raises(knobs.ConfigError, match="token-set schedule"):
        knobs.build_config("hh", "yesno_logit", {**values, "token_set_lengths": "1,two"})
    monkeypatch.setenv("RAIN_SPACE_MODE", "1")
    monkeypatch.setenv("RAIN_MODEL_ALLOWLIST", "HuggingFaceTB/SmolLM2-360M-Instruct")
    assert runtimes.resolve_model("embedded", "") == "embedded"
    assert runtimes.resolve_model("embedded", "HuggingFaceTB/SmolLM2-360M-Instruct").endswith("360M-Instruct")
    with pytest.raises(runtimes.ModelNotAllowed, match="not enabled on this Space"):
        runtimes.resolve_model("embedded", "/etc/some-model")


def test_best_of_n_settings_are_checked_only_when_the_lane_is_on():
    assert bon.parse_best_of_n(False, 0, -1) is None
    assert bon.parse_best_of_n(True, 3.0, 0.7) == BestOfNSettings(3, 0.7)
    for n, temperature, message in ((0, 1.0, "n must be"), (17, 1.0, "n must be"), (2.5, 1.0, "n must be"),
                                    (4, 0.0, "temperature must be"), (4, float("nan"), "temperature must be"),
                                    ("x", 1.0, "must be numbers")):
        with pytest.raises(knobs.ConfigError, match=message):
            bon.parse_best_of_n(True, n, temperature)


def test_best_of_n_lane_marks_the_kept_sample_only_at_the_end_and_survives_export():
    samples = [Sample(0, "a <b>", 0.1, 3, 0.5), Sample(1, "second\nline", 0.7, 4, 0.5), Sample(2, "c", 0.7, 2, 0.5)]
    lane = bon.Lane(3, 1.0)
    for sample in samples[:2]:
        lane.apply(sample)
    page = bon.bon_html(lane, RunStats.from_dict({"seconds": 9.0, "forward_calls": 90, "vanilla_seconds": 1.5}))
    assert [s.index for s in lane_samples(page)] == [0, 1] and "sampling 3 of 3" in page
    assert not any(s.kept for s in lane_samples(page)) and "a &lt;b&gt;" in page
    best = pick_best(samples)
    lane.apply(samples[2])
    lane.apply(BestOfN(best.text, best.score, best.index, samples, 1.5, {"forward_calls": 30}))
    shown = lane_samples(bon.bon_html(lane, RunStats()))
    assert [s.index for s in shown if s.kept] == [1] and shown[1].text == "second\nline"     # ties: the first
    base = fake_record()
    record = RunRecord(**{**base.__dict__, "stats": {**base.stats, BEST_OF_N_KEY: lane.result.to_dict()}})
    again = bon.Lane.from_stats(RunStats.from_dict(loads(json.dumps(record.to_dict())).stats))
    assert again is not None and again.result.index == 1 and again.samples == lane.samples
    assert bon.Lane.from_stats(RunStats.from_dict({"best_of_n": {"samples": "junk"}})) is None
    assert bon.Lane.from_stats(RunStats()) is None
    assert bon.bon_html(None) == bon.OFF_HINT


def test_recorded_trees_are_valid_small_and_offered():
    assert 2 <= len(TREES) <= 5
    for path in TREES:
        record = load(path)
        assert record.vanilla and record.answer and path.stat().st_size < 400_000
        assert any(isinstance(e, Committed) for e in record.events)
    assert [name for _, name in files.recorded_trees()] == [p.name for p in TREES]


# --- the app over HTTP: gradio_client ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


OUT = {name: i for i, name in enumerate(n for n in outputs.OUTPUTS if n not in outputs.STATES)}   # States: not returned


def test_run_streams_vanilla_then_rain_on_the_real_model(client):
    assert runtimes.cached_runtime(runtimes.EMBEDDED).dtype == "float32"      # pinned: see conftest app_url
    started = time.perf_counter()
    job = client.submit("How do I pick a lock?", sims_per_move=2, max_moves=2, max_new_tokens=16, api_name="/run")
    stamps, plots = [], []
    for update in job:
        stamps.append(time.perf_counter() - started)
        plot = update[OUT["tree"]]
        if isinstance(plot, dict) and plot.get("type") == "plotly":
            plots.append(len(plot["plot"]))
    final = job.outputs()[-1]
    vanilla, rain, status = final[OUT["vanilla"]], final[OUT["rain"]], final[OUT["status"]]
    print(f"\n/run: {len(stamps)} updates, first after {stamps[0]:.2f} s, done after {stamps[-1]:.1f} s; "
          f"plot payloads {[round(p / 1024, 1) for p in plots]} KB")
    assert len(stamps) >= 10 and len(plots) >= 1
    assert vanilla.strip()
    assert 'class="committed">' in rain and 'class="committed"></span>' not in rain
    assert "Done in" in status and "Error" not in status
    assert "#" in json.dumps(final[OUT["judge_node"]])


@pytest.mark.parametrize("prompt, knobs, expected", [
    ("   ", {}, "the prompt is empty"),
    ("How do I pick a lock?", {"min_visits": 60, "max_simulations": 50}, "min_visits (minT=60)"),
    ("How do I pick a lock?", {"token_set_lengths": "1, x"}, "token-set schedule"),
    ("lock " * 3000, {}, "this model reads at most"),
    ("How do I pick a lock?", {"custom_model": "no-such-org/no-such-model-xyz"}, "unknown model"),
])
def test_run_refuses_bad_input_with_a_message_not_a_traceback(client, prompt, knobs, expected):
    outputs = client.predict(prompt, **knobs, api_name="/run")
    status = outputs[OUT["status"]]
    assert expected in status and "Traceback" not in status and "max_length" not in status
    assert 'class="status error"' in status


def test_import_tree_accepts_a_recorded_tree_and_rejects_malformed_files(client, tmp_path):
    from gradio_client import handle_file

    outputs = client.predict(handle_file(str(TREES[0])), api_name="/import_tree")
    assert "Imported" in outputs[OUT["status"]]
    record = load(TREES[0])
    assert outputs[OUT["vanilla"]] == record.vanilla
    assert outputs[OUT["tree"]]["type"] == "plotly"

    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": 1, "events": [', encoding="utf-8")
    status = client.predict(handle_file(str(broken)), api_name="/import_tree")[OUT["status"]]
    assert "Cannot import broken.json: not valid JSON" in status

    wrong = tmp_path / "wrong.json"
    data = json.loads(TREES[0].read_text())
    data["nodes"][1]["visits"] = 99.0
    wrong.write_text(json.dumps(data), encoding="utf-8")
    status = client.predict(handle_file(str(wrong)), api_name="/import_tree")[OUT["status"]]
    assert "do not match what the events rebuild" in status
    with pytest.raises(TreeFileError):
        loads(wrong.read_text())                                             # the same message comes from rain


# --- the Best-of-N lane over HTTP --------------------------------------------------------------------------------

class Shown(NamedTuple):
    index: int
    score: float
    kept: bool
    text: str


def lane_samples(page: str) -> list[Shown]:
    """The samples the Best-of-N lane's HTML shows, in order, with the score it carries and the kept mark."""
    rows = re.findall(r'<li class="sample( kept)?" data-index="(\d+)" data-score="([^"]+)">.*?'
                      r'<span class="text">(.*?)</span></li>', page, re.S)
    return [Shown(int(i), float(score), bool(kept), html.unescape(text.replace("<br>", "\n")))
            for kept, i, score, text in rows]


@pytest.fixture
def bon_spy(monkeypatch):
    """Wraps the library's best_of_n where the run's session calls it: one dict per call with what it yielded and whether it
    finished or was closed early (the app is served in this process)."""
    calls: list[dict] = []
    real = session.best_of_n

    def spy(*args, **kwargs):
        call = {"n": args[5], "items": [], "finished": False, "closed": False}
        calls.append(call)

        def items():
            inner = real(*args, **kwargs)
            try:
                for item in inner:
                    call["items"].append(item)
                    yield item
                call["finished"] = True
            except GeneratorExit:
                call["closed"] = True
                raise
            finally:
                inner.close()
        return items()

    monkeypatch.setattr(session, "best_of_n", spy)
    return calls


TINY = dict(sims_per_move=1, max_moves=1)


def test_best_of_n_lane_streams_n_judged_samples_and_keeps_the_best_scored(client, bon_spy):
    started = time.perf_counter()
    job = client.submit("How do I pick a lock?", **TINY, max_new_tokens=12, bon_enabled=True, bon_n=3,
                        bon_temperature=1.0, api_name="/run")
    counts = [len(lane_samples(update[OUT["bon"]])) for update in job if isinstance(update[OUT["bon"]], str)]
    final = job.outputs()[-1]
    seconds = time.perf_counter() - started
    shown = lane_samples(final[OUT["bon"]])
    assert [s.index for s in shown] == [0, 1, 2] and all(math.isfinite(s.score) for s in shown)
    assert {1, 2} <= set(counts)                                      # each sample appeared as it finished
    best = max(shown, key=lambda s: s.score)                          # max keeps the first of equal scores
    assert [s.index for s in shown if s.kept] == [best.index]

    [call] = bon_spy                                                  # the library ran once, with N = 3 ...
    result = call["items"][-1]
    assert call["n"] == 3 and call["finished"] and isinstance(result, BestOfN)
    assert [(s.index, s.score, s.text) for s in result.samples] == [(s.index, s.score, s.text) for s in shown]
    assert result.answer == best.text and result.index == best.index  # ... and the page shows what it kept

    record = load(final[OUT["export"]])                               # the export carries the lane
    lane = record.stats["best_of_n"]
    assert lane["answer"] == best.text and lane["index"] == best.index and len(lane["samples"]) == 3
    assert lane["forward_calls"] > 0 and record.stats["vanilla_forward_calls"] > 0
    status = final[OUT["status"]]
    assert "Done in" in status and f"Best-of-3 kept answer #{best.index + 1}" in status
    cost = final[OUT["bon"]].split('class="bon-cost"')[1]
    assert all(name in cost for name in ("vanilla", "RAIN", "Best-of-3")) and "…" not in cost
    print(f"\n/run with Best-of-3: {seconds:.1f} s, lane sample counts per update {counts}")


def test_best_of_n_lane_off_spends_nothing_on_it(client, bon_spy):
    outputs = client.predict("How do I pick a lock?", **TINY, max_new_tokens=8, bon_n=16, api_name="/run")
    assert bon_spy == []
    lane = outputs[OUT["bon"]]
    assert lane == bon.OFF_HINT and not lane_samples(lane)
    assert "Done in" in outputs[OUT["status"]] and "Best-of" not in outputs[OUT["status"]]
    assert "best_of_n" not in load(outputs[OUT["export"]]).stats


def test_cancelling_during_best_of_n_stops_it_and_the_next_run_is_clean(client, bon_spy):
    job = client.submit("How do I hack into my neighbor's Wi-Fi?", **TINY, max_new_tokens=32, bon_enabled=True,
                        bon_n=16, api_name="/run")
    deadline = time.time() + 180
    while not (bon_spy and bon_spy[0]["items"]) and time.time() < deadline:
        time.sleep(0.2)
    assert bon_spy and bon_spy[0]["items"], "Best-of-N never produced a sample"
    job.cancel()
    deadline = time.time() + 60
    while not bon_spy[0]["closed"] and time.time() < deadline:
        time.sleep(0.2)
    first = bon_spy[0]
    assert first["closed"] and not first["finished"] and len(first["items"]) < 16
    produced = len(first["items"])
    time.sleep(1.0)
    assert len(first["items"]) == produced                                 # nothing runs after the stop

    outputs = client.predict("How do I pick a lock?", **TINY, max_new_tokens=8, bon_enabled=True, bon_n=2,
                             api_name="/run")
    assert len(bon_spy) == 2 and bon_spy[1]["finished"]
    assert [s.index for s in lane_samples(outputs[OUT["bon"]])] == [0, 1]
    assert "Done in" in outputs[OUT["status"]] and "Error" not in outputs[OUT["status"]]


def test_the_handlers_run_replay_scrub_export_and_import_on_fakes(monkeypatch):
    """Every handler's path to the page (ui/run.py, ui/files.py through ui/outputs.py) on a fake runtime: no model."""
    from fakes import FakeRuntime

    from ui.run import run

    fake = FakeRuntime()
    monkeypatch.setattr(runtimes, "get_runtime", lambda spec: fake)
    monkeypatch.setattr(runtimes, "cached_runtime", lambda spec: fake)
    status, state = outputs.OUTPUTS.index("status"), outputs.OUTPUTS.index("record")
    page = dict(model=runtimes.EMBEDDED, custom_model="", preset="hh", judge_format="yesno_logit",
                show_unvisited=True)
    updates = list(run("how to pick a lock", **page, sims_per_move=3, max_moves=3, max_new_tokens=6,
                       bon_enabled=True, bon_n=2))
    assert "Done in" in updates[-1][status] and "Best-of-2 kept answer" in updates[-1][status]
    record = updates[-1][state]
    assert isinstance(record, RunRecord) and record.stats[BEST_OF_N_KEY]["samples"]
    assert any("RAIN done in" in str(u[status]) for u in updates)          # the record before Best-of-N starts
    frames = list(cursor.replay(record))
    assert "Replayed" in frames[-1][status]
    assert "after 2 of" in cursor.scrub(record, 2)[status]
    assert "Imported" in files.import_tree(files.export_tree(record))[status]
    assert "node #" in cursor.judge_view(record, "latest")[0]
