"""The library as a package (pyproject.toml): its pins agree with requirements.txt, its version is written once,
and a built wheel holds every file the library reads at run time and the `rain` command."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import rain
from rain.data import DATA_DIR

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirement_lines(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line.replace(" ", "") for line in lines if line}


def test_the_package_pins_what_the_space_installs():
    """requirements.txt (the Space's list) = the package's dependencies + its `app` extra, pin for pin."""
    packaged = {r.replace(" ", "") for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["app"]}
    assert packaged == requirement_lines(ROOT / "requirements.txt")


def test_the_version_is_written_once():
    assert PROJECT["dynamic"] == ["version"] and "version" not in PROJECT
    assert re.fullmatch(r"\d+\.\d+\.\d+", rain.__version__)


def test_the_library_reads_no_file_outside_the_package():
    """What rain/ reads at run time lives in rain/ (rain/data/, rain/core/schema/): no path into assets/."""
    offending = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / "rain").rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"""["']assets["']""", line)]
    assert offending == []


def test_a_built_wheel_holds_the_library_its_data_and_the_rain_command(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    wheel = next(tmp_path.glob("rain_explorer-*.whl"))
    assert wheel.name.startswith(f"rain_explorer-{rain.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    data = {f"rain/data/{p.name}" for p in DATA_DIR.iterdir() if p.suffix in (".json", ".jsonl", ".txt")}
    assert data and data <= names
    assert "rain/core/schema/tree.schema.json" in names and "rain/tools/cli.py" in names
    assert not any(name.startswith(("ui/", "tests/", "assets/", "app.py")) for name in names)
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "rain = rain.tools.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
