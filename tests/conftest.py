from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def example_site():
    from trackfence.sites import load_site

    return load_site(ROOT / "examples" / "sites" / "ecm1-kings-cross.toml")
