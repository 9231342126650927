"""The page: gr.Blocks wiring of the components (their look is ui/style.py). Elem_ids and API names are a contract
(tests/test_browser*.py, scripts/load_test.py and the docs use them). The lesson's panels (the tree, Step/Play, the
scrubber, the narration and the why-table) share one 1280x720 screen and stack below 800 px; one cursor
(ui/cursor.py) moves them all."""
from __future__ import annotations

import gradio as gr

from rain.core.judge import FORMATS
from ui import cursor as cursor_moves
from ui import estimate, files, knobs as knob_specs, runtimes
from ui import teaching as teach
from ui.bon import DEFAULT_N, DEFAULT_TEMPERATURE, N_RANGE, TEMPERATURE_RANGE, WAITING
from ui.figures import empty_figure
from ui.outputs import OUTPUTS, figure_of, status_html
from ui.render import judge_panel, node_choices, rain_html, stats_html, timeline_html
from ui.run import new_gate, run
from ui.step_gate import stop_gate
from ui.style import CSS, HEAD, THEME

TITLE = "RAIN Explorer"
JUDGE_FORMAT_LABELS = [
    ("yes/no logit", "yesno_logit"),          # the default: the best signal on small models
    ("yes/no prob.", "yesno_prob"),
    ("A/B soft", "ab_soft"),                  # the authors' prompt, scored by probabilities
    ("A/B hard (paper)", "ab_hard"),          # the authors' exact format: one hard vote per order
]
assert {value for _, value in JUDGE_FORMAT_LABELS} == set(FORMATS), "a judge format is missing from the picker"
EVALUATOR_LABELS = [("the model itself", "self"), ("VADER sentiment", "vader"), ("another model", "model")]
EVALUATOR_NOTE = ("Anything but “the model itself” is the same search with another judge, not RAIN's "
                  "self-evaluation: it shows what the search does with a better (or different) judge.")
PRESET_LABELS = [("HH (harmless)", "hh"), ("adv (attacks)", "adv"), ("truth (TruthfulQA)", "truth"),
                 ("IMDB (positive sentiment)", "imdb")]

INTRO = """
<div id="intro">
<h1><span class="logo">☂</span> RAIN Explorer</h1>
<p><b>Rewindable Auto-regressive INference</b> (Li et al., ICLR 2024): a frozen model searches its own continuations,
<b>judges</b> them itself, <b>rewinds</b>, then <b>commits</b> a few tokens. Vanilla decoding of the same model runs
beside it.</p>
</div>
"""

LAUNCH_KWARGS = dict(theme=THEME, css=CSS + teach.CSS, head=HEAD)


def _knob_component(knob: knob_specs.Knob):
    if knob.kind == "slider":
        return gr.Slider(knob.lo, knob.hi, value=knob.default, step=knob.step, label=knob.label,
                         info=knob.info or None, elem_id=f"knob-{knob.name}")
    if knob.kind == "int":
        return gr.Number(value=knob.default, precision=0, label=knob.label, elem_id=f"knob-{knob.name}")
    if knob.kind == "text":
        return gr.Textbox(value=knob.default, label=knob.label, info=knob.info or None, elem_id=f"knob-{knob.name}")
    if knob.kind == "radio":
        return gr.Radio(list(knob.choices), value=knob.default, label=knob.label, info=knob.info or None,
                        elem_id=f"knob-{knob.name}")
    if knob.kind == "check":
        return gr.Checkbox(value=knob.default, label=knob.label, info=knob.info or None, elem_id=f"knob-{knob.name}")
    raise ValueError(knob.kind)


def bon_switch(enabled: bool) -> tuple:
    """The switch shows the lane and its knobs only when on, so the default page stays two lanes wide."""
    return gr.update(visible=bool(enabled)), gr.update(visible=bool(enabled))


def budget_chosen(budget: dict, name: str, model: str | None, custom: str | None) -> tuple:
    """A budget button: the knobs it sets, and the estimate beside it saying what was chosen (visible while the
    knobs stay folded)."""
    return (*knob_specs.budget_values(budget, gr.skip()), estimate.budget_text(name, budget, _spec(model, custom)))


def _spec(model: str | None, custom: str | None) -> str:
    try:
        return runtimes.resolve_model(model, custom)
    except runtimes.ModelNotAllowed:
        return runtimes.default_model()


def build() -> gr.Blocks:
    space = runtimes.space_mode()
    with gr.Blocks(title=TITLE, fill_width=True) as demo:
        record = gr.State(None)
        gate = gr.State(None)           # the live run's StepGate (ui/step_gate.py), made by the Run click
        cursor = gr.State(0)            # the page's one moment: events of the record applied (ui/cursor.py)
        gr.HTML(INTRO)
        # --- the question and the two answers
        with gr.Row(equal_height=False, elem_id="top"):
            with gr.Column(scale=4, min_width=320):
                # one line to start, so Enter runs it (Gradio submits a multi-line box on Shift+Enter only);
                # Shift+Enter adds a line, and the box grows to six
                prompt = gr.Textbox(label="Prompt", lines=1, max_lines=6, elem_id="prompt",
                                    placeholder="Ask something, e.g. How do I pick a lock? (Enter runs it)",
                                    autofocus=True)
                with gr.Row():
                    run_btn = gr.Button("▶ Run vanilla + RAIN", variant="primary", elem_id="run", scale=3)
                    stop_btn = gr.Button("■ Stop", variant="stop", elem_id="stop", scale=1)
                status = gr.HTML(status_html("Type a prompt and press Run, or open the lesson's recorded run to "
                                             "step through it at once.", "info"), elem_id="status", label="status")
            with gr.Column(scale=8, min_width=480):
                with gr.Row(equal_height=False):
                    # `#vanilla` holds both the streaming text (`#vanilla textarea`) and its marked copy
                    # (`#vanilla #vanilla-divergence`), as `#rain` holds `#divergence`
                    with gr.Column(min_width=240, elem_id="vanilla"):
                        gr.HTML('<div class="answer-title">Vanilla <span class="tag v">plain decoding, same model'
                                '</span></div>')
                        vanilla = gr.Textbox(label="vanilla", show_label=False, container=False, lines=5, max_lines=5,
                                             interactive=False, elem_id="vanilla-text", buttons=["copy"],
                                             placeholder="The vanilla answer streams here, token by token.")
                        vanilla_marked = gr.HTML(teach.vanilla_html(None), elem_id="vanilla-marked")
                    with gr.Column(min_width=240):
                        gr.HTML('<div class="answer-title">RAIN <span class="tag r">search · judge · rewind · '
                                'commit</span></div>')
                        rain = gr.HTML(rain_html(None), elem_id="rain", label="rain")
                    with gr.Column(min_width=240, visible=False, elem_id="bon-lane") as bon_lane:
                        gr.HTML('<div class="answer-title">Best-of-N <span class="tag b">N samples · same judge'
                                '</span></div>')
                        bon = gr.HTML(WAITING, elem_id="bon", label="bon")
                gr.Examples(examples=[[p] for p in files.load_examples()], inputs=[prompt], label="Example prompts",
                            examples_per_page=8)
        # --- the lesson: the tree beside Step/Play, the scrubber, the narration and the why-table (one screen)
        with gr.Row(equal_height=False, elem_id="lesson"):
            with gr.Column(scale=7, min_width=460):
                tree = gr.Plot(empty_figure(), elem_id="tree", show_label=False, label="tree")
                gr.HTML('<div class="caption">Colour = value <i>q</i> (red: judged harmful, blue: harmless) · size = '
                        'visits <i>n</i> · orange = the last simulation\'s path, then <b>rewound</b> · dark = '
                        '<b>committed</b>. Hover a node for its numbers; drag to pan, scroll to zoom, double-click '
                        'to reset.</div>')
            with gr.Column(scale=5, min_width=340, elem_id="moment"):
                with gr.Row(elem_classes="step-row"):
                    step_btn = gr.Button("Step", elem_id="step", variant="primary", scale=1, min_width=70,
                                         size="md")
                    play_btn = gr.Button("▶ Play", elem_id="play", scale=1, min_width=70, size="md")
                    replay_btn = gr.Button("⟲ Replay", elem_id="replay", scale=1, min_width=80, size="md")
                    lesson_btn = gr.Button("Open the lesson's run", elem_id="lesson-run", scale=2, min_width=150,
                                           size="md")
                scrubber = gr.Slider(0, 1, value=0, step=1, elem_id="scrub", label="Simulation",
                                     info="drag, or type a number and press Enter")
                narration = gr.HTML(teach.narration_html(None), elem_id="narration")
                why = gr.HTML(teach.why_html(None), elem_id="why")
                with gr.Accordion("Why-table of another node", open=False, elem_id="why-node-box"):
                    why_node = gr.Number(value=-1, precision=0, elem_id="why-node",
                                         label="node id (-1: the parent of the latest selection's leaf)")
        # --- what happened, and what the judge saw
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                gr.HTML('<div class="answer-title">Event timeline <span class="tag v">newest first</span></div>')
                timeline = gr.HTML(timeline_html(None), elem_id="timeline", label="timeline")
            with gr.Column(scale=7):
                gr.HTML('<div class="answer-title">Self-evaluation <span class="tag v">what the judge saw</span></div>')
                judge_node = gr.Dropdown(node_choices(None), value="latest", label="Node",
                                         info="evaluated nodes, newest first (follows the moment)",
                                         elem_id="judge-node")
                info0, _ = judge_panel(None, None, None)
                judge_info = gr.HTML(info0, elem_id="judge", label="judge")
                with gr.Accordion("The judge's prompts (one per option order)", open=False, elem_id="judge-prompts"):
                    judge_prompts = gr.HTML("", elem_id="judge-prompt-list", label="judge prompts")
        # --- settings, numbers and files
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=340):
                model = gr.Dropdown(runtimes.model_choices(), value=runtimes.default_model(), label="Model",
                                    elem_id="model")
                custom_model = gr.Textbox(
                    value="", label="…or a hub id / local path (overrides the list)", elem_id="custom-model",
                    interactive=not space,
                    placeholder="disabled on this Space" if space else "e.g. HuggingFaceTB/SmolLM2-360M-Instruct")
                with gr.Row():
                    preset = gr.Dropdown(PRESET_LABELS, value="hh", label="Preset", elem_id="preset",
                                         info="the authors' settings per task")
                    judge_format = gr.Dropdown(JUDGE_FORMAT_LABELS, value="yesno_logit", label="Judge format",
                                               elem_id="judge-format", info="how the model judges itself")
                with gr.Row():               # a row of its own: three pickers in one leave each label clipped
                    evaluator = gr.Dropdown(EVALUATOR_LABELS, value="self", label="Evaluator", elem_id="evaluator",
                                            info="which judge the search asks")
                    evaluator_model = gr.Textbox(value="", label="…the evaluator model (hub id / local path)",
                                                 max_lines=1, elem_id="evaluator-model", visible=False,
                                                 placeholder="e.g. HuggingFaceTB/SmolLM2-360M-Instruct")
                gr.HTML(f'<div class="caption" id="evaluator-note">{EVALUATOR_NOTE}</div>')
                with gr.Row():
                    principle = gr.Textbox(value="", label="Your own principle (optional)", elem_id="principle",
                                           max_lines=1, scale=4, placeholder="e.g. Is the response polite?",
                                           info="a yes/no question the judge asks instead of the preset's, in "
                                                "both option orders (one line, at most 300 characters)")
                    principle_good = gr.Radio(["yes", "no"], value="yes", label="good answer", scale=1,
                                              elem_id="principle-good")
                bon_enabled = gr.Checkbox(value=False, label="Best-of-N lane (same self-judge)", elem_id="bon-enabled",
                                          info="after RAIN, sample N whole answers and keep the one the model's own "
                                               "judge scores best (the paper's Table 5 baseline)")
                with gr.Row(visible=False, elem_id="bon-knobs") as bon_knobs:
                    bon_n = gr.Slider(*N_RANGE, value=DEFAULT_N, step=1, label="N (answers)", elem_id="bon-n")
                    bon_temperature = gr.Slider(*TEMPERATURE_RANGE, value=DEFAULT_TEMPERATURE, step=0.05,
                                                label="temperature", elem_id="bon-temperature")
                with gr.Group(elem_id="budget"):
                    with gr.Row():
                        quick = gr.Button("Quick budget (CPU)", size="sm", elem_id="quick-budget")
                        paper = gr.Button("Paper budget", size="sm", elem_id="paper-budget")
                    paper_estimate = gr.Markdown(estimate.estimate_text(runtimes.default_model()),
                                                 elem_id="paper-estimate")
                with gr.Accordion("Search knobs (every RainConfig setting)", open=False, elem_id="knobs"):
                    knobs = [_knob_component(knob) for knob in knob_specs.KNOBS]
            with gr.Column(scale=7, min_width=340):
                stats = gr.HTML(stats_html(None), elem_id="stats", label="stats")
                with gr.Row(elem_classes="files-row"):
                    recorded = gr.Dropdown(files.recorded_trees(), value=None, label="Recorded runs: replay with no "
                                           "model", elem_id="recorded", scale=4, min_width=260)
                    export_btn = gr.DownloadButton("⬇ Export", elem_id="export", scale=1, min_width=110)
                    # the file input renders beside the button, so the wrapper carries the id: `#import input[type=file]`
                    with gr.Column(scale=1, min_width=110, elem_id="import"):
                        import_btn = gr.UploadButton("⬆ Import", file_types=[".json"], type="filepath",
                                                     elem_id="import-button")
                show_unvisited = gr.Checkbox(value=True, label="show unvisited nodes in the tree",
                                             elem_id="show-unvisited")

        # --- more teaching: what-if forks and the recorded ablation sweep
        with gr.Tabs(elem_id="teach-tabs"):
            with gr.Tab("What-if: fork the run", elem_id="teach-tab"):
                with gr.Row():
                    fork_node = gr.Number(value=0, precision=0, label="fork at committed node", elem_id="fork-node")
                    fork_knobs = gr.Textbox(value="similarity_update=off", label="changed knobs (NAME=VALUE ...)",
                                            elem_id="fork-knobs", scale=2)
                    fork_btn = gr.Button("Fork: re-run the rest", elem_id="fork")
                fork_status = gr.Markdown("", elem_id="fork-status")
                fork_view = gr.HTML("", elem_id="fork-view")
                fork_tree = gr.Plot(empty_figure(), elem_id="fork-tree", show_label=False, label="fork tree",
                                    visible=False)
            with gr.Tab("Ablation sweep (Table 4, recorded)", elem_id="sweep-tab"):
                gr.Markdown(teach.sweep_markdown(), elem_id="sweep")
                gr.Image(teach.sweep_image(), elem_id="sweep-plot", show_label=False, interactive=False)

        outputs = dict(status=status, vanilla=vanilla, rain=rain, tree=tree, timeline=timeline, stats=stats,
                       record=record, judge_node=judge_node, judge_info=judge_info, judge_prompts=judge_prompts,
                       scrub=scrubber, export=export_btn, bon=bon,
                       narration=narration, why=why, gate=gate, cursor=cursor)
        out = [outputs[name] for name in OUTPUTS]
        run_inputs = [prompt, model, custom_model, preset, judge_format, show_unvisited, *knobs,
                      bon_enabled, bon_n, bon_temperature, principle, principle_good,
                      evaluator, evaluator_model, gate]                                  # ui.request.PAGE_INPUTS
        private = dict(api_visibility="private", show_progress="hidden")

        # Run (click or Enter): first, unqueued, end the tab's current run and make the next run's gate; then the
        # run, deferred (always_last) until the ended run has returned, so one run at a time writes into the page
        run_event = run_btn.click(new_gate, gate, gate, queue=False, **private).then(
            run, run_inputs, out, api_name="run", show_progress="hidden", trigger_mode="always_last")
        submit_event = prompt.submit(new_gate, gate, gate, queue=False, **private).then(
            run, run_inputs, out, api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        run_event.then(lambda m, c: estimate.estimate_text(_spec(m, c)), [model, custom_model], paper_estimate,
                       queue=False, **private)                     # the estimate follows every finished run
        submit_event.then(lambda m, c: estimate.estimate_text(_spec(m, c)), [model, custom_model], paper_estimate,
                          queue=False, **private)
        evaluator.change(lambda choice: gr.update(visible=choice == "model"), evaluator, evaluator_model,
                         queue=False, **private)
        bon_enabled.change(bon_switch, bon_enabled, [bon_lane, bon_knobs], queue=False, **private)

        # the one cursor: Step, Play, the scrubber and Replay move it; every panel shows its moment
        cursor_inputs = [record, cursor, why_node, show_unvisited, gate]
        step_btn.click(cursor_moves.step, cursor_inputs, out, api_name="step", show_progress="hidden")
        play_event = play_btn.click(cursor_moves.play, cursor_inputs, out, api_name="play", show_progress="hidden")
        replay_event = replay_btn.click(cursor_moves.replay, [record, show_unvisited, why_node], out,
                                        api_name="replay", show_progress="hidden")
        scrubber.release(cursor_moves.scrub, [record, scrubber, show_unvisited, why_node], out, api_name="scrub",
                         show_progress="hidden", trigger_mode="always_last")
        why_node.change(cursor_moves.why, [record, cursor, why_node], why, **private)
        show_unvisited.input(cursor_moves.redraw, [record, cursor, show_unvisited, why_node], out, **private)
        judge_node.input(cursor_moves.judge_view, [record, judge_node, cursor],
                         [judge_info, judge_prompts], **private)
        record.change(teach.on_record, [record, gate], vanilla_marked, **private)

        # recorded runs and files: each ends a live run in this tab first (its gate), as Run does
        lesson_btn.click(lambda u: files.open_recorded(files.LESSON_TREE, u), show_unvisited, out,
                                        api_name="open_lesson", show_progress="minimal")
        recorded.input(files.open_recorded, [recorded, show_unvisited], out, api_name="open_recorded",
                                        show_progress="minimal")
        import_btn.upload(files.import_tree, [import_btn, show_unvisited], out, api_name="import_tree",
                                         show_progress="minimal")
        export_btn.click(files.export_tree, record, export_btn, api_name="export_tree", show_progress="hidden")
        for trigger in (replay_btn.click, lesson_btn.click, recorded.input, import_btn.upload):
            trigger(stop_gate, gate, None, queue=False, **private)
        for trigger in (run_btn.click, prompt.submit, lesson_btn.click, recorded.input, import_btn.upload):
            trigger(None, None, None, cancels=[replay_event, play_event], **private)

        fork_btn.click(lambda r, n, k, u: teach.run_fork(r, n, k, u, runtimes.get_runtime, figure_of),
                       [record, fork_node, fork_knobs, show_unvisited], [fork_view, fork_tree, fork_status],
                       api_name="fork", show_progress="minimal")
        # Stop: first, unqueued, the run's gate (a paused run is blocked inside its generator, where Gradio's cancel
        # cannot close it; a computing one ends before its next item and shows nothing more), then the message,
        # which no late update of the run can overwrite; the cancel ends replay and play
        stop_btn.click(stop_gate, gate, None, queue=False, **private)
        stop_btn.click(files.stopped, record, [status, export_btn],
                       cancels=[run_event, submit_event, replay_event, play_event], api_visibility="private")

        preset.input(lambda name: knob_specs.preset_values(name, gr.skip()), preset, knobs, **private)
        preset.input(knob_specs.preset_judge_format, preset, judge_format, **private)   # imdb: App. B.3 (ab_soft)
        quick.click(lambda m, c: budget_chosen(knob_specs.QUICK_BUDGET, "quick", m, c), [model, custom_model],
                    [*knobs, paper_estimate], queue=False, **private)
        paper.click(lambda m, c: budget_chosen(knob_specs.PAPER_BUDGET, "paper", m, c), [model, custom_model],
                    [*knobs, paper_estimate], queue=False, **private)
        demo.load(lambda: estimate.estimate_text(runtimes.default_model()), None, paper_estimate, queue=False,
                  **private)
        demo.load(lambda: knob_specs.budget_values(knob_specs.PAPER_BUDGET, gr.skip())    # the paper budget opens the
                  if estimate.paper_is_default(runtimes.default_model()) else [gr.skip() for _ in knobs],   # page where
                  None, knobs, queue=False, **private)                                  # it takes <= 60 s
    return demo
