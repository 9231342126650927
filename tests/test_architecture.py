"""Rules of the code base that a grep can check (issue #10): one error base, and who may import what."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import rain
from rain.errors import RainError

ROOT = Path(__file__).resolve().parent.parent


def test_every_error_meant_for_the_user_derives_from_rain_error():
    """Front ends catch RainError alone (rain/cli.py main, ui/handlers.py), so no error class may stand apart."""
    modules = [importlib.import_module(f"rain.{info.name}") for info in pkgutil.walk_packages(rain.__path__)
               if info.name != "__main__"]
    modules.append(importlib.import_module("ui.handlers"))
    errors = {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, Exception) and cls.__module__.startswith(("rain", "ui"))}
    assert {cls.__name__ for cls in errors} >= {"ConfigError", "PromptError", "ModelLoadError", "JudgeError",
                                                "TreeFileError", "ReplayError", "EvalError", "UsageError",
                                                "UnsupportedModelError", "ModelNotAllowed"}
    assert [cls.__name__ for cls in errors if not issubclass(cls, RainError)] == []
