import shutil
from pathlib import Path

import pytest

from staffml_dagster.specs import cached_specs, default_specs_dir

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture(scope="session")
def specs():
    return cached_specs()


@pytest.fixture
def specs_copy(tmp_path):
    """A writable copy of specs/ for tests that break one file."""
    target = tmp_path / "specs"
    shutil.copytree(default_specs_dir(), target)
    return target


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("STAFFML_DATA_DIR", str(data))
    return data / "warehouse"
