"""A site file is compiled once per content: in a trial run, across its processes, too."""

from __future__ import annotations

import tomllib
from collections import Counter

import pytest

import loading.site_files as site_files
from loading.site_files import load_site
from tests.conftest import ROOT
from trials.definition import trial_from_mapping
from trials.harness.runner import run_trial
from trials.score import score_trial

SITE = ROOT / "examples" / "sites" / "ecm1-kings-cross.toml"
EXAMPLE = ROOT / "examples" / "trials" / "three-suppliers.toml"


@pytest.fixture
def compilations(monkeypatch, tmp_path):
    """Every site compiled, counted in a file (forked processes append to it too)."""
    log = tmp_path / "compiled.log"
    real = site_files.site_from_toml

    def counted(text, **kwargs):
        with log.open("a") as out:
            out.write(f"{tomllib.loads(text)['site']['name']}\n")
        return real(text, **kwargs)

    monkeypatch.setattr(site_files, "site_from_toml", counted)
    site_files._COMPILED.clear()

    def read() -> Counter:
        return Counter(log.read_text().splitlines()) if log.exists() else Counter()

    return read


def test_the_same_content_is_compiled_once_and_a_change_is_seen(compilations, tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(SITE.read_text())
    first = load_site(path)
    assert load_site(path) is first
    path.write_text(SITE.read_text().replace('name = "ECM1', 'name = "Changed ECM1', 1))
    changed = load_site(path)
    assert changed is not first and changed.name.startswith("Changed")
    assert sum(compilations().values()) == 2


def test_a_file_read_beside_the_site_is_part_of_its_content(compilations, tmp_path):
    beside = tmp_path / "trough.geojson"
    square = [[-0.1088, 51.5577], [-0.1087, 51.5577], [-0.1087, 51.5578], [-0.1088, 51.5578]]
    beside.write_text(
        '{"type": "Polygon", "coordinates": [' + str([*square, square[0]]) + "]}"
    )
    path = tmp_path / "site.toml"
    path.write_text(
        SITE.read_text() + '\n[[exclusion]]\nname = "trough"\ngeojson_file = "trough.geojson"\n'
    )
    first = load_site(path)
    assert load_site(path) is first
    beside.write_text(beside.read_text().replace("51.5578", "51.55785"))
    assert load_site(path) is not first  # the site file is the same, what it reads is not


def test_a_trial_run_compiles_each_site_once_across_its_processes(compilations, tmp_path):
    data = tomllib.loads(EXAMPLE.read_text())
    data["trial"]["repeats"] = 1
    data["trial"].pop("feedback", None)
    data["scenario"] = [
        {"file": "../scenarios/plain-line.toml"},
        {"file": "../scenarios/night-working.toml"},
    ]
    trial = trial_from_mapping(data, EXAMPLE)
    manifest = run_trial(trial, tmp_path / "run", workers=2)
    from store import open_store
    from trials.collect import collect

    store = open_store(manifest.db)
    try:
        result = score_trial(trial, manifest, collect(trial, manifest, store, tmp_path / "run",
                             reopen=lambda: open_store(manifest.db), workers=2))  # fmt: skip
    finally:
        store.close()
    assert result.rows.fixes  # scored, so every reader and writer had its sites
    counted = compilations()
    assert counted and set(counted.values()) == {1}, counted
