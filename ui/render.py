"""Pure HTML/text renderings of a RunView: the RAIN answer, stats cards, the event timeline, the judge panel."""
from __future__ import annotations

import html
from typing import Any, Mapping

from rain.core.judge import JudgeDescription
from rain.runs.session import RunStats, SearchCost, VanillaCost
from rain.runs.teaching import TRUSTED_ACCURACY, judge_check_accuracy
from ui.view import RunView, Verdict, short

ESC = html.escape
CHOICE_LIMIT = 300


def text_html(text: str) -> str:
    """Escaped text with its line breaks kept."""
    return ESC(text).replace("\n", "<br>")


def tone(score: float) -> str:
    """The verdict badge's colour class: a score within ±0.05 reads as no signal."""
    return "good" if score > 0.05 else "bad" if score < -0.05 else "neutral"


def maths(formula: str) -> str:
    """A formula folded behind "show the maths", so the panel reads in words first."""
    if not formula:
        return ""
    return f'<details class="maths"><summary>show the maths</summary><code>{ESC(formula)}</code></details>'


# --- the RAIN answer ------------------------------------------------------------------------------------

def rain_html(view: RunView | None, note: str = "", divergence: tuple[str, str, str] | None = None,
              judge: str = "") -> str:
    """Committed text, then the token sets being tried and the rollout in distinct styles, then the verdict.

    `divergence` (ui/teaching.py split_at_divergence): the finished answer's text before, at and after the token
    set where RAIN parts from vanilla, marked `#divergence`. `judge`: `judge_note`'s line about the judge."""
    if view is None or not view.events:
        return ('<div class="rain-answer"><span class="placeholder">The RAIN answer grows here: committed text, '
                'with the candidate under evaluation highlighted.</span></div>')
    committed = view.committed_text()
    path_text, rollout = view.path_text(), view.rollout_text if view.in_simulation else ""
    if view.candidate is not None and view.in_simulation and view.candidate.startswith(committed):
        rest = view.candidate[len(committed):]
        if rest.startswith(path_text):
            rollout = rest[len(path_text):]
        else:
            path_text, rollout = rest, ""
    parts = [f'<span class="committed">{text_html(committed)}</span>']
    if divergence is not None and view.finished is not None and "".join(divergence).startswith(committed[:1]):
        before, at, after = divergence
        parts = [f'<span class="committed">{text_html(before)}<span id="divergence" title="RAIN parts from vanilla '
                 f'in this token set">{text_html(at)}</span>{text_html(after)}</span>']
    if path_text:
        parts.append(f'<span class="path" title="token sets on the selected path">{text_html(path_text)}</span>')
    if rollout:
        parts.append(f'<span class="rollout" title="rollout to the end of the clause">{text_html(rollout)}</span>')
    if view.in_simulation and view.latest is not None and view.candidate is not None:
        verdict = view.verdicts[view.latest]
        parts.append(f' <span class="verdict {tone(verdict.score)}">judge {verdict.score:+.2f}</span>')
    if view.finished is not None:
        parts.append(f' <span class="verdict done">done · {ESC(view.finished.reason)}</span>')
    body = "".join(parts)
    key = ('<div class="rain-key"><span class="k committed">committed</span>'
           '<span class="k path">token sets being tried</span><span class="k rollout">rollout</span>'
           f'{ESC(note)}</div>')
    judge_line = f'<div class="judge-note" id="judge-note">{ESC(judge)}</div>' if judge else ""
    return f'<div class="rain-answer">{body}</div>{key}{judge_line}'


def judge_note(model: Mapping[str, Any] | None, config: Mapping[str, Any] | None) -> str:
    """One plain line on what the judge is: another evaluator (`--evaluator`), or the model judging itself with
    judge-check's measured accuracy for it (rain.runs.teaching.judge_check_accuracy), or that nobody measured it.
    Empty when the self-judge is trusted."""
    if model is None or config is None:
        return ""
    evaluator = config.get("evaluator") or "self"
    if evaluator != "self":
        return (f"The judge is the evaluator {evaluator}, not the model judging itself: this is the same search with "
                "another judge, not RAIN's self-evaluation, and its answers are only as good as that judge.")
    accuracy = judge_check_accuracy(dict(model), dict(config))
    if accuracy is None:
        return ("The judge is the model judging itself, and nobody has checked how well this one does "
                "(python -m rain judge-check): RAIN's choices are only as good as that judge.")
    if accuracy >= TRUSTED_ACCURACY:
        return ""
    return (f"The judge is this small model judging itself: on our test pairs it scored the worse answer lower only "
            f"{accuracy:.0%} of the time (a coin: 50%), so RAIN can approve a bad answer. A stronger judge would "
            "show what the search adds.")


# --- stats ----------------------------------------------------------------------------------------------

def _card(label: str, value: str, sub: str = "") -> str:
    sub_html = f'<div class="sub">{ESC(sub)}</div>' if sub else ""
    return f'<div class="card"><div class="v">{ESC(value)}</div><div class="l">{ESC(label)}</div>{sub_html}</div>'


def stats_html(view: RunView | None, rain_seconds: float | None = None, vanilla_seconds: float | None = None,
               vanilla_tokens: int | None = None, final: RunStats | None = None) -> str:
    """The stats cards: the record's figures (`final`), else the search's at its end, else the live ones."""
    if view is None:
        return '<div class="stats">' + "".join(_card(label, "–") for label in (
            "simulations", "moves", "nodes", "answer tokens", "forward calls", "RAIN time", "vanilla time",
            "RAIN / vanilla")) + "</div>"
    final = final or RunStats.from_dict(view.finished.stats if view.finished else {})
    rain, vanilla = final.rain or SearchCost(), final.vanilla or VanillaCost()
    sims = view.simulation if rain.simulations is None else rain.simulations
    answer_tokens = view.answer_tokens() if rain.answer_tokens is None else rain.answer_tokens
    cards = [
        _card("simulations", str(sims), f"{view.cache_hits} judged from cache"),
        _card("moves", str(view.moves), "token sets committed"),
        _card("nodes", str(len(view.tree.nodes)), f"{view.added_nodes} added dynamically"),
        _card("answer tokens", str(answer_tokens)),
        _card("forward calls", str(rain.forward_calls) if rain.forward_calls is not None else "…",
              f"{rain.forwarded_tokens} tokens" if rain.forwarded_tokens is not None else "at the end"),
    ]
    seconds = rain.seconds if rain.seconds is not None else rain_seconds if rain_seconds is not None else view.seconds
    if seconds is not None:
        per = seconds / max(sims, 1)
        cards.append(_card("RAIN time", f"{seconds:.1f} s", f"{per:.2f} s per simulation (compute, pauses "
                                                             "excluded)"))
    else:
        cards.append(_card("RAIN time", "–"))
    v_seconds = vanilla_seconds if vanilla.seconds is None else vanilla.seconds
    if v_seconds is not None:
        tokens = f"{vanilla_tokens} tokens" if vanilla_tokens is not None else ""
        cards.append(_card("vanilla time", f"{v_seconds:.1f} s", tokens))
    else:
        cards.append(_card("vanilla time", "–"))
    ratio = final.rain_over_vanilla
    if ratio is None and seconds is not None and v_seconds:
        ratio = seconds / max(v_seconds, 1e-9)
    cards.append(_card("RAIN / vanilla", f"{ratio:.1f}×" if ratio is not None else "–", "compute time"))
    return '<div class="stats">' + "".join(cards) + "</div>"


# --- timeline -------------------------------------------------------------------------------------------

def timeline_html(view: RunView | None) -> str:
    if view is None or not view.timeline:
        return ('<div class="timeline"><div class="empty">select → roll out → evaluate → expand → back up → '
                'rewind … → commit: the latest events appear here, newest first.</div></div>')
    rows = "".join(f'<div class="ev {line.kind}" title="{ESC(line.text)}"><span class="when">{ESC(line.label)}'
                   f'</span><span class="what">{ESC(line.text)}</span></div>' for line in view.timeline)
    return f'<div class="timeline">{rows}</div>'


# --- the judge ------------------------------------------------------------------------------------------

def node_choices(view: RunView | None) -> list[tuple[str, str]]:
    """The node picker: "latest", then evaluated nodes, newest first."""
    choices = [("latest evaluated node", "latest")]
    if view is None:
        return choices
    recent = sorted(view.verdicts.values(), key=lambda v: (v.simulation, v.node), reverse=True)[:CHOICE_LIMIT]
    for verdict in recent:
        text = view.node_text(verdict.node)
        choices.append((f"#{verdict.node} · sim {verdict.simulation} · {verdict.score:+.2f} · “{short(text, 24)}”",
                        str(verdict.node)))
    return choices


def pick_verdict(view: RunView | None, choice: str | int | None) -> Verdict | None:
    if view is None or not view.verdicts:
        return None
    if choice in (None, "", "latest"):
        return view.verdicts.get(view.latest) if view.latest is not None else None
    try:
        return view.verdicts.get(int(choice))
    except (TypeError, ValueError):
        return None


def fill_prompt(template: str, exchange: str | None, question: str, answer: str) -> str:
    try:
        body = (exchange or "Human: {question}\nAssistant: {answer}").format(question=question, answer=answer)
    except (KeyError, IndexError, ValueError):
        body = f"Human: {question}\nAssistant: {answer}"
    return template.replace("{exchange}", body)


def judged_prompt(template: str, description: JudgeDescription, question: str, answer: str) -> str:
    """The template with the exchange as the judge read it (truth: cut after its last '.')."""
    try:
        return template.replace("{exchange}", description.exchange_text(question, answer))
    except (KeyError, IndexError, ValueError):
        return fill_prompt(template, description.exchange, question, answer)


def prompts_html(description: JudgeDescription, question: str, answer: str) -> str:
    """One block per option order: what it asks and its whole prompt with the exchange filled in."""
    blocks = [f'<div class="judge-prompt"><div class="l">order {index} asks {ESC(order.asks)}</div>'
              f'<pre>{ESC(judged_prompt(order.template, description, question, answer))}</pre></div>'
              for index, order in enumerate(description.orders, 1) if order.template]
    return "".join(blocks)


def judge_panel(view: RunView | None, judge: Mapping[str, Any] | None, choice: str | int | None,
                config: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(info HTML, the prompts HTML: one per option order) for the picked node; `config` is the run's RainConfig
    dict."""
    verdict = pick_verdict(view, choice)
    if verdict is None or view is None:
        message = "No evaluation yet." if view is None or not view.verdicts else "That node was not evaluated."
        return f'<div class="judge"><div class="empty">{message} Every simulation asks the model to judge the ' \
               'partial answer it reached; pick a node to see the question and the label probabilities.</div></div>', ""
    description = JudgeDescription.of_record(judge, config)
    fmt = description.format
    parts = verdict.parts or description.parts(verdict.orders) or []
    rows = []
    for index, (order, probs) in enumerate(zip(description.orders, verdict.orders)):
        cells = " ".join(f'<span class="prob {"good" if label == order.good else "bad"}">P({ESC(label)}) = '
                         f'{p:.3f}</span>' for label, p in probs.items())
        part = parts[index] if index < len(parts) else None
        shown = description.part_text(part)
        rows.append(f"<tr><td>{ESC(order.asks)}</td><td>{cells}</td><td>“{ESC(order.good)}”</td><td>{shown}</td></tr>")
    formula = description.formula(parts) if parts else ""
    part_name = description.part_name
    first = description.orders[0] if description.orders else None
    principle = (f'<div class="sub">Your principle: “{ESC(description.principle)}” · good answer: '
                 f'{ESC(first.meanings.get(first.good, "?"))}</div>' if description.principle and first else "")
    text = view.node_text(verdict.node)
    badge = tone(verdict.score)
    evaluator = (judge or {}).get("evaluator") or {"spec": "self"}
    other = (f'<div class="sub">Evaluator <code>{ESC(evaluator.get("spec", "?"))}</code>: '
             f'{ESC(evaluator.get("scores", ""))}. The same search with another judge, not RAIN\'s '
             'self-evaluation.</div>' if evaluator.get("spec", "self") != "self" else "")
    table = (f'<table><tr><th>order asks</th><th>label probabilities</th><th>good label</th><th>{part_name}</th></tr>'
             + "".join(rows) + '</table><div class="sub">The orders swap the labels\' meanings, which cancels a '
             f'bias towards one label.</div>{maths(formula)}' if description.orders
             else f'<div class="sub">{ESC(description.score_rule)}</div>')
    info = (f'<div class="judge"><div class="head">node #{verdict.node} “{ESC(short(text, 40))}” · simulation '
            f'{verdict.simulation} · evaluator <code>{ESC(evaluator.get("spec", "self"))}</code> · format '
            f'<code>{ESC(fmt)}</code> · <span class="verdict {badge}">score '
            f'{verdict.score:+.3f}</span>{" · cached" if verdict.cache_hit else ""}</div>'
            f'<div class="answer"><span class="l">evaluated answer</span>'
            f'{text_html(verdict.answer) or "<i>(nothing written yet)</i>"}</div>' + table + principle + other
            + '</div>')
    return info, prompts_html(description, view.question, verdict.answer)
