"""The wheel installs one import root, `gpu_trace_analyzer`, and everything the sources hold.

The repository keeps three top-level folders (analyzer/, parsers/, rules/); pyproject.toml maps
them under one root so that installing us never overwrites another distribution's `rules` or
`parsers` package and a `rules.py` in a notebook's folder cannot shadow ours. The wheel is
built from this checkout (no build isolation: setuptools comes from the test extra).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT_ROOT = "gpu_trace_analyzer"
#: Source folder -> the package it becomes.
MAPPING = {
    "analyzer": IMPORT_ROOT,
    "parsers": f"{IMPORT_ROOT}.parsers",
    "rules": f"{IMPORT_ROOT}.rules",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel freshly built from the checkout."""
    # A copy of what the build reads, so that a stale build/ folder of the checkout (left by
    # an earlier install) cannot add files to the wheel.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in MAPPING:
        shutil.copytree(ROOT / folder, src / folder, ignore=skip)
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*build, "-w", str(out), str(src)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> list[str]:
    """Every file name inside the wheel."""
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_the_only_top_level_name_is_the_import_root(wheel_names: list[str]) -> None:
    tops = {name.split("/", 1)[0] for name in wheel_names}
    code = {t for t in tops if not t.endswith((".dist-info", ".data"))}
    assert code == {IMPORT_ROOT}


def _source_packages() -> dict[str, Path]:
    """Every package folder of the sources, by the dotted name it installs under."""
    found = {}
    for folder, package in MAPPING.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT / folder)
            found[".".join([package, *rel.parts])] = init.parent
    return found


def test_every_source_module_and_data_file_is_in_the_wheel(wheel_names: list[str]) -> None:
    names = set(wheel_names)
    missing = []
    for package, folder in _source_packages().items():
        prefix = package.replace(".", "/")
        for path in sorted(folder.iterdir()):
            wanted = path.suffix in {".py", ".toml", ".json", ".typed"} and path.is_file()
            if wanted and f"{prefix}/{path.name}" not in names:
                missing.append(f"{prefix}/{path.name}")
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"


def test_console_script_points_into_the_import_root(wheel: Path, wheel_names: list[str]) -> None:
    (entry_points,) = [n for n in wheel_names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(entry_points).decode()
    assert f"analyze = {IMPORT_ROOT}.cli:entry" in text.splitlines()


def test_a_rules_module_in_the_working_folder_does_not_shadow_ours(tmp_path: Path) -> None:
    """The reproduction from the issue: a notebook folder with its own rules.py and
    parsers.py (or Django's `rules` installed) once broke ``import analyzer.engine``."""
    for name in ("rules.py", "parsers.py", "analyzer.py"):
        (tmp_path / name).write_text("raise ImportError('the user's own module')\n")
    code = "import gpu_trace_analyzer.engine as e; print(len(e.load_builtin_rules()))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) >= 20
