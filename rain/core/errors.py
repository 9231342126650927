"""The one base class of every error meant for the user.

Each module keeps its own error class next to the code that raises it (`ConfigError` in rain/core/config.py,
`PromptError` in rain/core/prompts.py, ...); all of them derive from `RainError`, so a front end catches this one
class and prints its message as one line (the CLI exits with status 2; the app shows it in the status bar),
never a traceback. The classes keep their older bases (ValueError, or RuntimeError for `ModelLoadError`) so
code that caught those still does.
"""
from __future__ import annotations


class RainError(Exception):
    """Bad input, or a model or file that cannot be used; the message is one line that says what to fix."""


class UsageError(RainError, ValueError):
    """A command-line problem that is the user's to fix (the CLI, `bench --throughput`)."""
