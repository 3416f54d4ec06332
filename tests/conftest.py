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


@pytest.fixture
def pipeline(tmp_path, monkeypatch):
    """The definitions bound to this test's resources: its own warehouse folder, the offline
    generator and the hashed TF-IDF embedder (no model to load). STAFFML_DATA_DIR points at
    another folder, so a stage that read or wrote the warehouse past its resources would be
    seen there: after the test that folder must hold no warehouse."""
    from types import SimpleNamespace

    from staffml_dagster.definitions import build_defs, resources

    stray = tmp_path / "environment"
    monkeypatch.setenv("STAFFML_DATA_DIR", str(stray))
    warehouse = tmp_path / "warehouse"
    res = resources(warehouse=str(warehouse), generator="item-models", embedder="tfidf")
    yield SimpleNamespace(defs=build_defs(res), resources=res, warehouse=warehouse)
    assert not (stray / "warehouse").exists(), "a stage used the environment's warehouse instead of its resource"
