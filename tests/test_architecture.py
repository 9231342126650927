"""Rules of the code base that a grep can check (issue #10): one error base, and who may import what."""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import rain
from rain.core.errors import RainError

ROOT = Path(__file__).resolve().parent.parent


def test_every_error_meant_for_the_user_derives_from_rain_error():
    """Front ends catch RainError alone (rain/tools/cli.py main, ui/run.py, ui/files.py), so no error class may stand apart."""
    modules = [importlib.import_module(info.name) for info in pkgutil.walk_packages(rain.__path__, "rain.")
               if info.name != "rain.__main__"]
    modules += [importlib.import_module(f"ui.{name}") for name in ("runtimes", "request", "run", "files")]
    errors = {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, Exception) and cls.__module__.startswith(("rain", "ui"))}
    assert {cls.__name__ for cls in errors} >= {"ConfigError", "PromptError", "ModelLoadError", "JudgeError",
                                                "TreeFileError", "ReplayError", "EvalError", "UsageError",
                                                "UnsupportedModelError", "ModelNotAllowed", "PromptRefused"}
    assert [cls.__name__ for cls in errors if not issubclass(cls, RainError)] == []


# --- import rules -------------------------------------------------------------------------------------------

def imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names) of every import in a file, at any depth (function-level imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = tuple(alias.name for alias in node.names)
            found += [(f"{node.module}.{name}", ()) for name in names] if node.module == "rain" else \
                [(node.module, names)]
    return found


# What ui/ and app.py may import from rain/ (issue #10): the session and what its stream and records are made of.
UI_MAY_IMPORT = {
    "rain.runs.session": "the one run stream",
    "rain.core.export": "records: load, save, RunRecord",
    "rain.core.events": "the stream's search events",
    "rain.core.replay": "apply_event: the view folds events as replay does",
    "rain.core.tree": "the tree the figures draw",
    "rain.core.config": "RainConfig and its presets: the knobs",
    "rain.core.errors": "RainError, the one error a front end catches",
    "rain.runs.best_of_n": "the stream's Best-of-N items and their one JSON (BestOfN.to_dict/from_dict)",
    "rain.runs.runtimes": "load_runtime: the loaded model a session runs on (the app holds one per model)",
    "rain.runs.teaching": "ui/teaching.py shows divergence, narration and the why-table (pure functions of the events)",
    "rain.runs.fork": "ui/teaching.py's fork view runs a what-if fork of the page's record",
}
UI_MAY_IMPORT_FROM_JUDGE = {"JudgeDescription", "JudgeOrder", "FORMATS"}      # the judge's description only


def test_rain_imports_neither_gradio_nor_plotly_nor_the_front_ends():
    offending = []
    for path in sorted((ROOT / "rain").rglob("*.py")):
        for module, _ in imports(path):
            top = module.split(".")[0]
            if top == "gradio" or top == "ui" or (top == "plotly" and path.name != "eval_figures.py"):
                offending.append(f"{path.relative_to(ROOT)}: {module}")   # only `eval` draws, in its figure module
    assert offending == []


def test_the_front_ends_import_from_rain_only_the_allowed_modules():
    offending = []
    for path in sorted((ROOT / "ui").glob("*.py")) + [ROOT / "app.py"]:
        for module, names in imports(path):
            if not module.startswith("rain"):
                continue
            if module == "rain.core.judge":
                offending += [f"{path.name}: rain.core.judge.{name}" for name in names
                              if name not in UI_MAY_IMPORT_FROM_JUDGE]
            elif module not in UI_MAY_IMPORT:
                offending.append(f"{path.name}: {module}")
    assert offending == []


def test_the_readme_layout_table_names_every_module():
    """README "How the code is laid out" stays true: each module of rain/, rain/backends/engine/, ui/ and scripts/ is named."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    files = [p for folder in ("rain/core", "rain/backends", "rain/backends/engine", "rain/runs", "rain/tools", "ui", "scripts") for p in sorted((ROOT / folder).glob("*.py"))
             if not p.name.startswith("__")]
    missing = [str(p.relative_to(ROOT)) for p in files if p.name not in table]
    assert missing == []
