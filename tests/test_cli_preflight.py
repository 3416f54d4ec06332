"""`staffml run` checks specs/, the item models and the partition keys before it materializes
anything: each bad input stops it with exit 2, a message naming the file and key, and the
warehouse as it was."""

import hashlib
import re

import pandas as pd
import pytest
import yaml

from staffml_dagster import cli
from staffml_dagster.storage import write_parquet_atomic


def _snapshot(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def guarded(warehouse, monkeypatch):
    """A warehouse with a topics table, and a run that fails the test if it starts."""
    write_parquet_atomic(pd.DataFrame({"topic": ["kv-cache-management"]}), warehouse / "topics" / "part.parquet")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the run started despite a bad input")

    monkeypatch.setattr(cli, "run_pipeline", must_not_run)
    return warehouse


def _yaml_edit(path, mutate):
    data = yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _text_edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


BAD_SPECS = {
    "duplicate key": (
        "hardware.yaml",
        lambda p: _text_edit(p, "    memory_kind: HBM3\n", "    memory_kind: HBM3\n    memory_kind: DDR4\n"),
        r"bad spec: hardware.yaml: line \d+, column \d+: is not valid YAML: duplicate key 'memory_kind'",
    ),
    "infinite bandwidth": (
        "hardware.yaml",
        lambda p: _yaml_edit(p, lambda d: d["platforms"][0]["memory_bandwidth"].update(value=float("inf"))),
        r"bad spec: hardware.yaml: platforms\[0\]\(h100-sxm\)\.memory_bandwidth\.value: is not a finite number",
    ),
    "negative batch": (
        "tracks.yaml",
        lambda p: _yaml_edit(p, lambda d: d["tracks"][0]["scale_points"].update(batch=[-1, 8])),
        r"bad spec: tracks.yaml: tracks\[0\]\(cloud\)\.scale_points\.batch\[0\]: .*greater than 0",
    ),
    "wrong dimension": (
        "hardware.yaml",
        lambda p: _yaml_edit(p, lambda d: d["platforms"][0]["memory_bandwidth"].update(unit="GB")),
        r"bad spec: hardware.yaml: platforms\[0\]\(h100-sxm\)\.memory_bandwidth: unit 'GB' measures",
    ),
    "empty topics": (
        "topics.yaml",
        lambda p: _yaml_edit(p, lambda d: d.update(topics=[])),
        r"bad spec: topics.yaml: topics: .*at least 1",
    ),
    "not UTF-8": (
        "skills.yaml",
        lambda p: p.write_bytes(p.read_bytes() + "# na\u00efve\n".encode("latin-1")),
        r"bad spec: skills.yaml: line \d+: is not UTF-8 text",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_stops_the_run_before_anything_is_materialized(guarded, specs_copy, monkeypatch, capsys, case):
    file, breaks, message = BAD_SPECS[case]
    breaks(specs_copy / file)
    monkeypatch.setenv("STAFFML_SPECS_DIR", str(specs_copy))
    before = _snapshot(guarded)
    assert cli.main(["run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # not even the "materializing" line
    assert re.search(message, captured.err), captured.err
    assert "nothing materialized" in captured.err and "Traceback" not in captured.err
    assert _snapshot(guarded) == before


@pytest.mark.parametrize(
    "key, message",
    [
        ("no-such-topic|cloud", "unknown topic 'no-such-topic' (not in topics.yaml)"),
        ("kv-cache-management|space", "unknown track 'space'"),
        ("kv-cache-management", 'expected "<topic>|<track>"'),
    ],
)
def test_unknown_partition_key_stops_the_run(guarded, capsys, key, message):
    before = _snapshot(guarded)
    assert cli.main(["run", "--partition", "kv-cache-management|cloud", "--partition", key]) == 2
    err = capsys.readouterr().err
    assert f"bad --partition: partition {key!r}: " in err and message in err and "nothing materialized" in err
    assert _snapshot(guarded) == before


def test_bad_item_model_stops_the_run(guarded, tmp_path, monkeypatch, capsys):
    import shutil

    from staffml_dagster.core.item_model import _load_all
    from staffml_dagster.paths import assets_dir

    assets = tmp_path / "assets"
    shutil.copytree(assets_dir(), assets)
    _text_edit(
        assets / "item_models" / "kv-cache-sessions.yaml", "zone: recall\n    level: L1", "zone: recall\n    level: L5"
    )
    monkeypatch.setenv("STAFFML_ASSETS_DIR", str(assets))
    before = _snapshot(guarded)
    try:
        assert cli.main(["run"]) == 2
    finally:
        _load_all.cache_clear()
    err = capsys.readouterr().err
    assert "bad item model: kv-cache-sessions.yaml: questions.kv-heads-recall: level L5 is outside zone recall" in err
    assert _snapshot(guarded) == before
