"""Rules of the code base that the imports can check (issues #10 and #21): one error base, the floors of rain/
and who may import what, no import cycle, a page that loads no model library, modules of a readable size."""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
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


# --- the import graph ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    source: str          # the importing module, e.g. "rain.runs.session"
    target: str          # the imported module (a package's submodule when one is named), e.g. "rain.core.tree"
    lazy: bool           # inside a function or class body, not at the module's top level
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    return sorted((ROOT / "rain").rglob("*.py")) + sorted((ROOT / "ui").glob("*.py")) + [ROOT / "app.py"]


MODULES = {module_name(path) for path in project_files()}


def imports_of(path: Path) -> list[Import]:
    """Every import statement of a file, at any depth: `from P import name` names the module P.name when that is
    a module of ours, else P; relative imports are resolved against the file's package. An import under a
    module-level `if TYPE_CHECKING:` counts as a module-level one."""
    source = module_name(path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    top |= {id(inner) for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for inner in node.body}         # annotations only: in the graph, but not an import in a function body
    found = []
    for node in ast.walk(tree):
        lazy = id(node) not in top
        if isinstance(node, ast.Import):
            found += [Import(source, alias.name, lazy, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append(Import(source, submodule if submodule in MODULES else base, lazy, node.lineno))
    return found


GRAPH = [found for path in project_files() for found in imports_of(path)]
OURS = [found for found in GRAPH if found.target.split(".")[0] in ("rain", "ui", "app")]


# The floors, lowest first. A module may import its own floor and the floors below, never one above.
# ui/ (the page) and app.py stand on rain.runs beside rain.tools: neither sees the other, and the page reaches the
# compute only through rain.runs.runtimes.load_runtime, which imports a backend when a runtime is asked for.
FLOORS = {
    "rain.data": 0,          # the files the library reads (no code but their folder's path)
    "rain.core": 0,          # the algorithm and its data
    "rain.backends": 1,      # the compute: engines, model loading, the torch and vLLM runtimes
    "rain.runs": 2,          # one run as one stream, and what is built from its record
    "rain.tools": 3,         # the command line and what it measures
    "ui": 3,                 # the page
    "app": 4,                # launches the page
}
PUBLIC_FACE = {"rain": ("rain.core", "rain.runs"), "rain.__main__": ("rain.tools.cli",)}
MAY_NOT_SEE = {"ui": ("rain.backends", "rain.tools"), "app": ("rain.backends", "rain.tools"),
               "rain.tools": ("ui",)}


def floor_of(module: str) -> str:
    return next(floor for floor in sorted(FLOORS, key=len, reverse=True)
                if module == floor or module.startswith(floor + "."))


def test_every_module_stands_on_a_floor():
    loose = sorted(m for m in MODULES if m not in PUBLIC_FACE and m != "ui" and not any(
        m == floor or m.startswith(floor + ".") for floor in FLOORS))
    assert loose == []
    assert {floor_of(m) for m in MODULES if m not in PUBLIC_FACE and m != "ui"} == set(FLOORS)


def upward_imports(graph: list[Import]) -> list[str]:
    offending = []
    for found in graph:
        if found.source in PUBLIC_FACE:
            if not found.target.startswith(PUBLIC_FACE[found.source]):
                offending.append(f"{found.source}:{found.line} -> {found.target} (the public face)")
            continue
        if found.target in ("rain", "ui") or found.source == "ui":
            continue        # a package's own __init__ (a docstring) or `from ui import x` (resolved to ui.x)
        source, target = floor_of(found.source), floor_of(found.target)
        hidden = MAY_NOT_SEE.get(source, ())
        if FLOORS[target] > FLOORS[source] or any(found.target.startswith(name) for name in hidden):
            offending.append(f"{found.source}:{found.line} -> {found.target}")
    return offending


def test_no_module_imports_a_floor_above_its_own():
    assert upward_imports(OURS) == []


def cycles(graph: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), plus modules importing themselves."""
    edges: dict[str, set[str]] = {}
    for found in graph:
        edges.setdefault(found.source, set()).add(found.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found_cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found_cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found_cycles


def test_the_import_graph_has_no_cycle():
    """Package __init__ files re-export their own submodules (rain.backends.engine), which is no cycle of code."""
    graph = [f for f in OURS if not (f.source in ("rain.backends.engine",) and f.target.startswith(f.source + "."))]
    assert cycles(graph) == []


# Imports inside a function body. Of our own modules only the runtime factory's: it imports a backend when a
# runtime is asked for, so that the page and `import rain` load neither torch nor vLLM.
LAZY_OURS = {
    ("rain.runs.runtimes", "rain.backends.torch_runtime"): "torch and transformers, when a trie runtime is asked for",
    ("rain.runs.runtimes", "rain.backends.vllm_runtime"): "vLLM (optional, in .venv-vllm), when asked for",
}
# Optional or heavy third-party libraries imported where they are used, so that the rest runs without them.
LAZY_THIRD_PARTY = {
    "vllm": "optional backend (.venv-vllm)",
    "ray": "optional (`run --ray`); a missing Ray is one line",
    "spaces": "present only on a Hugging Face ZeroGPU Space",
    "matplotlib": "sweep's PNG only",
    "plotly": "eval's HTML figure only (rain/tools/eval_figures.py)",
    "jsonschema": "only when a tree file is imported",
    "vaderSentiment": "the IMDB eval's judge only",
    "afinn": "the IMDB eval's second sentiment judge only",
    "tqdm": "the progress bars of long commands",
    "torch": "model code that a torch-free module builds on request",
    "transformers": "model code that a torch-free module builds on request",
}


def test_lazy_imports_are_only_the_listed_ones():
    stdlib = sys.stdlib_module_names
    offending = []
    for found in GRAPH:
        if not found.lazy:
            continue
        top = found.target.split(".")[0]
        if top in ("rain", "ui", "app"):
            if (found.source, found.target) not in LAZY_OURS:
                offending.append(f"{found.source}:{found.line} -> {found.target}")
        elif top not in LAZY_THIRD_PARTY and top not in stdlib:
            offending.append(f"{found.source}:{found.line} -> {found.target}")
    assert offending == []


def test_the_guards_fail_when_broken():
    """An upward import, a cycle and an unlisted lazy import, added to the real graph, are each caught."""
    up = Import("rain.core.tree", "rain.runs.session", False, 1)
    assert upward_imports(OURS + [up]) == ["rain.core.tree:1 -> rain.runs.session"]
    assert upward_imports(OURS + [Import("ui.run", "rain.backends.torch_runtime", True, 1)]) != []
    back = Import("rain.core.config", "rain.core.tree", False, 1)
    forth = Import("rain.core.tree", "rain.core.config", False, 1)
    assert cycles(OURS + [back, forth]) == [["rain.core.config", "rain.core.tree"]]


# --- the page and the library's face load no model library -------------------------------------------------

TORCH_FREE = ["rain", "rain.runs.session", "rain.runs.runtimes", "rain.runs.teaching", "rain.runs.fork",
              "rain.core.export", "rain.core.judge"] + sorted(m for m in MODULES if m.startswith("ui."))
HEAVY = ("torch", "transformers", "vllm")


def test_the_page_and_import_rain_load_no_model_library():
    """`import ui.layout` and every ui/ module (and `import rain`) in a fresh interpreter load neither torch,
    transformers nor vLLM: the page's rain modules are the pure API; a runtime loads its backend when built."""
    code = (f"import importlib, sys\nfor name in {TORCH_FREE!r}: importlib.import_module(name)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- size ---------------------------------------------------------------------------------------------------

LONG = 400


def test_no_module_is_long_without_saying_why():
    """A module over 400 lines says in its docstring why it is one file ("over 400 lines")."""
    long = []
    for path in project_files():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONG and "over 400 lines" not in (ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert long == []


def test_rain_imports_neither_gradio_nor_plotly_nor_the_page():
    offending = []
    for found in GRAPH:
        if not found.source.startswith("rain"):
            continue
        top = found.target.split(".")[0]
        if top in ("gradio", "ui") or (top == "plotly" and found.source != "rain.tools.eval_figures"):
            offending.append(f"{found.source}: {found.target}")      # only `eval` draws, in its figure module
    assert offending == []


def test_the_layout_page_names_every_module():
    """docs/architecture.md stays true: each module of rain/, ui/ and scripts/ is named; README's floor map names
    every floor of rain/."""
    table = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    floors = [p.name for p in sorted((ROOT / "rain").iterdir()) if (p / "__init__.py").exists()]
    assert [f for f in floors if f"`rain/{f}/`" not in readme and f != "data"] == []
    files = [p for p in sorted((ROOT / "rain").rglob("*.py")) + sorted((ROOT / "ui").glob("*.py"))
             + sorted((ROOT / "scripts").glob("*.py")) if not p.name.startswith("__")]
    missing = [str(p.relative_to(ROOT)) for p in files if p.name not in table]
    assert missing == []
