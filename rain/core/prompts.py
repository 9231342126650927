"""The generation prompt: the model's chat template when it has one, our HH-style few-shot text otherwise.

A `Conversation` is what the search and the vanilla baseline share: the prompt tokens, the ids that end the
assistant's turn, and how to read the answer text back (cut at the next turn marker, docs/algorithm.md §1.3 getv).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal, Sequence

from rain.core.errors import RainError
from rain.core.lm import TextCodec
from rain.data import DATA_DIR

FEWSHOT_FILE = DATA_DIR / "fewshot_generation.txt"
TURN_MARKER = "Human:"              # a new human turn in a few-shot answer ends it (the authors' >5 "Human:")
TAIL_TOKENS = 12                    # decode this many trailing tokens to look for the marker

LONE_SURROGATE = re.compile("[\ud800-\udfff]")    # a Python str holds one only when the input was broken

PromptFormat = Literal["auto", "chat", "fewshot"]


class PromptError(RainError, ValueError):
    """The prompt cannot be used (empty, or too long for the model); the message says why."""


class PromptTooLong(PromptError):
    """The prompt leaves no room to answer: `tokens` long against a `limit` (the message is the CLI's; a front end
    without a max_length control says it in its own words from the fields)."""

    def __init__(self, message: str, tokens: int, limit: int):
        super().__init__(message)
        self.tokens, self.limit = tokens, limit


@dataclass(frozen=True)
class Conversation:
    question: str
    prompt_tokens: tuple[int, ...]
    prompt_last_char: str           # last character of the decoded prompt: the clause test at the root
    stop_ids: frozenset[int]        # token ids that end the assistant's turn
    turn_marker: str | None         # text that ends the turn in few-shot prompts; None for chat templates
    format: str

    def turn_ended(self, codec: TextCodec, answer_tokens: Sequence[int]) -> bool:
        """Has the answer started a new turn? (an end-of-turn id, or the marker in the last few tokens)"""
        if any(t in self.stop_ids for t in answer_tokens[-TAIL_TOKENS:]):
            return True
        return bool(self.turn_marker) and self.turn_marker in codec.decode(answer_tokens[-TAIL_TOKENS:])

    def answer_text(self, codec: TextCodec, answer_tokens: Sequence[int]) -> str:
        """The answer as people and the judge read it: special tokens dropped, cut at a new turn."""
        text = codec.decode(answer_tokens)
        if self.turn_marker and self.turn_marker in text:
            text = text[: text.index(self.turn_marker)].rstrip()
        return text


def prompt_of(item: dict) -> str | None:
    """A dataset line's prompt: its "prompt", or the authors' adv format (spec §1.6) goal + " " + controls (a
    GCG adversarial suffix); None when it has neither."""
    if isinstance(item.get("prompt"), str):
        return item["prompt"]
    if isinstance(item.get("goal"), str) and isinstance(item.get("controls", ""), str):
        return f"{item['goal']} {item.get('controls', '')}".strip()
    return None


def clean_prompt(text: str) -> str:
    """What we keep of a user's prompt: valid Unicode without NUL or control characters (newline and tab stay).

    Lone surrogates become U+FFFD and control characters are dropped, so any string a browser or a JSONL file
    can carry reaches the tokenizer safely; right-to-left text and other scripts pass unchanged.
    """
    text = LONE_SURROGATE.sub("\ufffd", text)
    return "".join(ch for ch in text if ch in "\n\t" or not unicodedata.category(ch).startswith("C")
                   or unicodedata.category(ch) == "Cf").strip()


def build_conversation(codec: TextCodec, tokenizer, question: str, prompt_format: PromptFormat = "auto",
                       max_prompt_tokens: int | None = None, generation: str = "answer") -> Conversation:
    """Tokenise the question into a generation prompt, refusing empty or over-long prompts clearly.

    generation "continue" (the imdb preset): the prompt is text the model continues as it stands (a review
    opening), tokenised as the tokenizer does plain text (BOS where the model expects one); no template, no turn.
    """
    if not isinstance(question, str):
        raise PromptError("the prompt must be text")
    question = clean_prompt(question)
    if not question:
        raise PromptError("the prompt is empty")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    use_chat = prompt_format == "chat" or (prompt_format == "auto" and has_template)
    if generation == "continue":
        tokens = tuple(tokenizer(question, add_special_tokens=True)["input_ids"])
        stop_ids = frozenset(codec.eos_ids) | frozenset(getattr(tokenizer, "all_special_ids", []))
        return _checked(codec, question, tokens, stop_ids, None, "continue", max_prompt_tokens)
    if use_chat:
        if not has_template:
            raise PromptError("this model has no chat template; use the few-shot prompt format")
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                             add_generation_prompt=True, tokenize=False)
        stop_ids = frozenset(codec.eos_ids) | frozenset(getattr(tokenizer, "all_special_ids", []))
        marker = None
    else:
        text = FEWSHOT_FILE.read_text() + f"\nHuman: {question}\nAssistant:"
        stop_ids = frozenset(codec.eos_ids)
        marker = TURN_MARKER
    return _checked(codec, question, tuple(codec.encode(text)), stop_ids, marker, "chat" if use_chat else "fewshot",
                    max_prompt_tokens)


def _checked(codec: TextCodec, question: str, tokens: tuple[int, ...], stop_ids: frozenset[int],
             marker: str | None, prompt_format: str, max_prompt_tokens: int | None) -> Conversation:
    if max_prompt_tokens is not None and len(tokens) >= max_prompt_tokens:
        raise PromptTooLong(f"the prompt is {len(tokens)} tokens; this model and config allow at most "
                            f"{max_prompt_tokens - 1} (shorten it or raise max_length)", len(tokens),
                            max_prompt_tokens - 1)
    decoded = codec.decode(tokens)
    return Conversation(question=question, prompt_tokens=tokens, prompt_last_char=decoded[-1:] or "\n",
                        stop_ids=stop_ids, turn_marker=marker, format=prompt_format)
