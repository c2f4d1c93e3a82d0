"""The trial module in two rooms: the scoring, and the harness that drives everything else.

`trials/harness/` runs the simulator and ingest (and reads a real trial's references
through the simulator's truth); the rest of `trials/` scores, and imports neither
ingest nor the harness, nor (but for the loaders below) the simulator. Every import
counts, a lazy one inside a function too. A test, so that scoring that reaches for
the simulator or ingest again fails at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

#: Scoring modules that still import the simulator, and why: the scenario file, the
#: suppliers' simulated profiles and the reference-track reader are loaders that live in
#: devices.sim today. Each leaves this list when its loader moves to the ground floor.
STILL_ON_DEVICES = {
    "definition": {"devices.sim.profiles", "devices.sim.scenario"},
    "schedule": {"devices.sim.scenario"},
    "shiftlog": {"devices.sim.recordings"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _scoring() -> dict[str, set[str]]:
    return {p.stem: _imports(p) for p in sorted((ROOT / "trials").glob("*.py"))}


def test_the_scoring_imports_neither_ingest_nor_the_harness():
    for name, modules in _scoring().items():
        upstairs = {m for m in modules if m.split(".")[0] == "ingest"}
        upstairs |= {m for m in modules if m.startswith("trials.harness")}
        assert not upstairs, f"trials/{name}.py imports {sorted(upstairs)}"


def test_the_scoring_imports_the_simulator_only_for_its_loaders():
    on_devices = {
        name: {m for m in modules if m.split(".")[0] == "devices"}
        for name, modules in _scoring().items()
    }
    assert {k: v for k, v in on_devices.items() if v} == STILL_ON_DEVICES


def test_the_harness_is_what_drives_the_simulator_and_ingest():
    harness = {p.stem for p in (ROOT / "trials" / "harness").glob("*.py")} - {"__init__"}
    assert {"runner", "replay", "wear", "live", "provision", "offline"} <= harness
    runner = _imports(ROOT / "trials" / "harness" / "runner.py")
    assert {"ingest.settings", "devices.sim.generate", "trials.manifest"} <= runner
