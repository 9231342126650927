"""Hostile prompts reach the tokenizer cleaned, or are refused with a clear message (issue #5)."""
from __future__ import annotations

import pytest

from rain.core.config import RainConfig
from rain.core.prompts import PromptError, clean_prompt


@pytest.mark.parametrize("raw, kept", [
    ("a\x00b\x07c", "abc"), ("x\ud800y", "x\ufffdy"), ("  line\n\tnext  ", "line\n\tnext"),
    ("שלום, מה שלומך?", "שלום, מה שלומך?"), ("\u202eevil\u202c", "\u202eevil\u202c"),
])
def test_clean_prompt(raw, kept):
    assert clean_prompt(raw) == kept


@pytest.mark.parametrize("raw", ["", "   ", "\x00\x01\x02", "\n\t\n"])
def test_empty_after_cleaning_is_refused(runtime, raw):
    with pytest.raises(PromptError, match="empty"):
        runtime.conversation(raw, RainConfig())


@pytest.mark.parametrize("raw", ["How do I pick a lock?\x00", "lock \ud800 pick", "كيف أفتح قفلا؟", "lock\u202e"])
def test_odd_prompts_tokenise(runtime, raw):
    """The prompt tokens are the embedded model's chat template around the cleaned prompt, as the user's turn."""
    conversation = runtime.conversation(raw, RainConfig())
    text = runtime.tokenizer.decode(list(conversation.prompt_tokens))        # special tokens kept
    assert conversation.format == "chat" and conversation.question == clean_prompt(raw)
    assert f"<|im_start|>user\n{clean_prompt(raw)}<|im_end|>\n" in text
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")


def test_100k_characters_get_a_clear_message(runtime):
    with pytest.raises(PromptError, match=r"the prompt is \d+ tokens; this model and config allow at most 2047"):
        runtime.conversation("lock " * 20_000, RainConfig())
