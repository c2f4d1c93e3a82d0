"""The house: every package stands on the floors below it and on nothing above.

The CLI on top; then reporting; then trials; then the device simulator and the
ingest service, side by side and neither on the other; on the ground floor the
geofence core, the store, the wire format and loading from files. On the ground
floor only the core is shared (the store, the wire format and loading may use its
types). A test, so that a new import that runs back up the house fails at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: package -> floor (higher stands on lower).
FLOORS = {
    "trackfence": 4,
    "reporting": 3,
    "trials": 2,
    "devices": 1,
    "ingest": 1,
    "geofence": 0,
    "store": 0,
    "wire": 0,
    "loading": 0,
}
#: The ground floor's one allowed dependency among its own: the core's types.
GROUND_MAY_USE = {"geofence"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str) -> list[str]:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            other = module.split(".")[0]
            if other not in FLOORS or other == package:
                continue
            mine, theirs = FLOORS[package], FLOORS[other]
            upward = theirs > mine or (theirs == mine and mine > 0)
            sideways_on_ground = mine == theirs == 0 and other not in GROUND_MAY_USE
            if upward or sideways_on_ground:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return problems


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_no_package_imports_from_a_floor_above_it(package):
    assert _violations(package) == []


def test_the_check_finds_an_import_that_runs_back_up(tmp_path, monkeypatch):
    """The check itself can fail: a ground-floor module importing ingest is caught."""
    fake = tmp_path / "wire"
    fake.mkdir()
    (fake / "bad.py").write_text("from ingest.pipeline import Pipeline\nimport geofence.site\n")
    monkeypatch.setattr("tests.test_layout.ROOT", tmp_path)
    assert _violations("wire") == ["wire/bad.py:1 imports ingest.pipeline"]


def test_every_package_is_on_a_floor():
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert packages <= set(FLOORS), f"put {sorted(packages - set(FLOORS))} on a floor"


#: The longest a function may be: beyond it, a reader needs named steps to follow it.
LONGEST_FUNCTION_LINES = 80


def test_no_function_is_longer_than_a_reader_can_follow():
    long = []
    for package in sorted(FLOORS):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > LONGEST_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}: {node.name} ({lines} lines)")
    assert long == []
