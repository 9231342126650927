"""The page's look: its CSS, theme and the one script in its head (the scrubber's Enter). Kept apart from the
wiring in ui/layout.py, which only builds the components and their events."""
from __future__ import annotations

import gradio as gr

CSS = """
.gradio-container { max-width: 1480px !important; }
#intro h1 { margin: 0 0 .1rem 0; font-size: 1.4rem; }
#intro .logo { color: #2563eb; }
.caption { font-size: .78rem; color: #64748b; margin-top: -.3rem; }
#intro p { margin: 0; color: var(--body-text-color-subdued); font-size: .9rem; max-width: 1200px; }
#status .status { padding: .45rem .7rem; border-radius: 8px; font-size: .92rem; background: #f1f5f9; color: #334155; }
#status .status.error { background: #fef2f2; color: #991b1b; border: 1px solid #fecaca; }
#status .status.ok { background: #f0fdf4; color: #166534; border: 1px solid #bbf7d0; }
#status .status.run { background: #eff6ff; color: #1e40af; border: 1px solid #bfdbfe; }
#status .status.stop { background: #fffbeb; color: #92400e; border: 1px solid #fde68a; }
#vanilla textarea { font-size: 1rem !important; line-height: 1.5 !important; height: 128px !important;
  border: 1px solid var(--border-color-primary) !important; border-radius: 8px !important; padding: .6rem .75rem !important; }
.answer-title { font-weight: 600; font-size: .9rem; margin-bottom: .25rem; color: var(--body-text-color); }
.answer-title .tag { font-weight: 500; font-size: .75rem; padding: 1px 7px; border-radius: 999px; margin-left: .35rem; }
.answer-title .tag.v { background: #f1f5f9; color: #475569; }
.answer-title .tag.r { background: #dbeafe; color: #1e40af; }
#rain { min-height: 0; }
#rain .html-container, #rain .html-container > div, #stats .html-container, #timeline .html-container,
#judge .html-container { padding: 0 !important; }
#rain .rain-answer { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6rem .75rem;
  height: 128px; overflow-y: auto; font-size: 1rem; line-height: 1.5;
  background: var(--input-background-fill); }
#rain .judge-note { font-size: .8rem; color: #92400e; background: #fffbeb; border: 1px solid #fde68a;
  border-radius: 6px; padding: .25rem .5rem; margin-top: .3rem; line-height: 1.35; }
#rain .placeholder { color: #94a3b8; }
#rain .committed { color: var(--body-text-color); }
#rain .path { background: #fef3c7; color: #92400e; border-bottom: 2px solid #f59e0b; border-radius: 3px; }
#rain .rollout { color: #64748b; font-style: italic; border-bottom: 1px dashed #94a3b8; }
.verdict { font-size: .78rem; font-weight: 600; padding: 1px 7px; border-radius: 999px; white-space: nowrap; }
.verdict.good { background: #dbeafe; color: #1e3a8a; }
.verdict.bad { background: #fee2e2; color: #991b1b; }
.verdict.neutral { background: #f1f5f9; color: #475569; }
.verdict.done { background: #dcfce7; color: #166534; }
#rain .rain-key { font-size: .75rem; color: #64748b; margin-top: .3rem; }
#rain .rain-key .k { margin-right: .8rem; }
#rain .rain-key .k.committed::before { content: "■ "; color: #1f2937; }
#rain .rain-key .k.path::before { content: "■ "; color: #f59e0b; }
#rain .rain-key .k.rollout::before { content: "■ "; color: #94a3b8; }
#stats .stats { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: .4rem; }
#stats .card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .3rem .5rem;
  background: var(--block-background-fill); }
#stats .card .v { font-size: 1.15rem; font-weight: 700; color: var(--body-text-color); }
#stats .card .l { font-size: .66rem; text-transform: uppercase; letter-spacing: .03em; color: #64748b; line-height: 1.2; }
#stats .card .sub { font-size: .68rem; color: #94a3b8; line-height: 1.2; }
#timeline .timeline { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .78rem;
  height: 330px; overflow-y: auto; border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .35rem .5rem; }
#timeline .ev { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; padding: 1px 0; }
#timeline .ev .when { display: inline-block; min-width: 4.8rem; color: #94a3b8; }
#timeline .ev.select .what { color: #b45309; }
#timeline .ev.rollout .what { color: #64748b; }
#timeline .ev.evaluate .what { color: #1d4ed8; }
#timeline .ev.expand .what { color: #475569; }
#timeline .ev.backup .what { color: #047857; }
#timeline .ev.rewind .what { color: #94a3b8; }
#timeline .ev.added .what { color: #7c3aed; }
#timeline .ev.commit { font-weight: 700; background: #f1f5f9; }
#timeline .ev.commit .what, #timeline .ev.done .what { color: #111827; }
#timeline .empty, #judge .empty { color: #94a3b8; font-size: .85rem; }
#judge .judge { font-size: .88rem; }
#judge .judge .head { margin-bottom: .35rem; }
#judge .judge .answer { border-left: 3px solid #cbd5e1; padding: .2rem .5rem; margin: .3rem 0 .5rem 0;
  max-height: 120px; overflow-y: auto; }
#judge .judge .answer .l { display: block; font-size: .7rem; text-transform: uppercase; color: #94a3b8; }
#judge table { width: 100%; border-collapse: collapse; font-size: .82rem; }
#judge th, #judge td { text-align: left; padding: 3px 6px; border-bottom: 1px solid var(--border-color-primary); }
#judge .prob { display: inline-block; padding: 0 6px; border-radius: 4px; margin-right: 4px; }
#judge .prob.good { background: #dbeafe; } #judge .prob.bad { background: #fee2e2; }
#judge .sub { font-size: .75rem; color: #94a3b8; margin-top: .3rem; }
#tree { min-height: 440px; }
#lesson { align-items: flex-start; }
#moment { gap: 6px !important; }
.step-row { gap: 6px !important; }
.step-row button { min-height: 38px; }
#narration .narration { font-size: .95rem; line-height: 1.4; background: #f8fafc; border: 1px solid #e2e8f0;
  border-radius: 8px; padding: .4rem .6rem; margin: 0; min-height: 3.2rem; }
#why { max-height: 300px; overflow-y: auto !important; }
#why .html-container { padding: 0 !important; }
.step-row button { white-space: nowrap; padding-left: .5rem !important; padding-right: .5rem !important; }
details.maths { font-size: .8rem; color: #475569; margin-top: .3rem; }
details.maths summary { cursor: pointer; color: #2563eb; }
details.maths code { display: block; white-space: normal; margin: .25rem 0; }
#model input, #preset input, #judge-format input, #evaluator input { padding-right: 2rem !important; text-overflow: ellipsis; }
#budget { padding: .4rem; }
#paper-estimate { font-size: .85rem; }
#judge-prompt-list .judge-prompt .l { font-size: .75rem; color: #64748b; margin: .4rem 0 .1rem 0; }
#judge-prompt-list pre { white-space: pre-wrap; max-height: 18rem; overflow-y: auto; font-size: .78rem; margin: 0;
  padding: .4rem .5rem; border: 1px solid var(--border-color-primary); border-radius: 6px; }
.answer-title .tag.b { background: #fef3c7; color: #92400e; }
#bon .html-container { padding: 0 !important; }
#bon .bon-samples { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .35rem .5rem;
  height: 168px; overflow-y: auto; margin: 0; list-style: none; font-size: .9rem; line-height: 1.4;
  background: var(--input-background-fill); }
#bon .sample { padding: .2rem .3rem; border-bottom: 1px dashed var(--border-color-primary); }
#bon .sample .head { display: block; font-size: .72rem; color: #64748b; }
#bon .sample .text { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
#bon .sample.kept { background: #f0fdf4; border: 1px solid #86efac; border-radius: 6px; }
#bon .sample.kept .text { display: block; }
#bon .pending, #bon .placeholder, #bon .bon-off { color: #94a3b8; font-size: .85rem; }
#bon .bon-cost { width: 100%; border-collapse: collapse; font-size: .75rem; margin-top: .3rem; border: 0; }
#bon .bon-cost th, #bon .bon-cost td { text-align: left; padding: 1px 4px; border: 0; white-space: nowrap;
  border-bottom: 1px solid var(--border-color-primary); }
#bon .bon-cost th { color: #64748b; font-weight: 600; }
.files-row { align-items: flex-end !important; }
.files-row button { min-height: 42px; white-space: nowrap; }
#import { gap: 0 !important; }
"""

THEME = gr.themes.Soft(primary_hue="blue", secondary_hue="slate", neutral_hue="slate",
                       font=[gr.themes.Font(n) for n in ("Inter", "ui-sans-serif", "system-ui", "sans-serif")],
                       font_mono=[gr.themes.Font(n) for n in ("ui-monospace", "SFMono-Regular", "Menlo", "monospace")])
# (plain Font names: no web-font download, the page works offline)

# The scrubber's number box sends its value on blur only: Enter there blurs it, so a typed simulation is shown.
HEAD = """<script>
document.addEventListener("keydown", (event) => {
  const box = event.target;
  if (event.key === "Enter" && box instanceof HTMLInputElement && box.type === "number" && box.closest("#scrub")) {
    box.blur();
  }
});
</script>"""
