"""Hive-partitioned Parquet IO manager and the DuckDB views over it."""

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from staffml_dagster.storage import (
    HiveParquetIOManager,
    atomic,
    connect_warehouse,
    parquet_io,
    read_partition,
    write_parquet_atomic,
)
from staffml_dagster.storage.atomic import write_atomic

PARTS = dg.MultiPartitionsDefinition(
    {
        "topic": dg.StaticPartitionsDefinition(["kv-cache-management", "duty-cycling"]),
        "track": dg.StaticPartitionsDefinition(["cloud", "tinyml"]),
    }
)


def _frame(topic, track, n):
    return pd.DataFrame(
        {
            "id": [f"{topic}-{track}-{i}" for i in range(n)],
            "topic": topic,
            "track": track,
            "calc": [[{"name": "x", "value": float(i)}] for i in range(n)],
        }
    )


@dg.asset(partitions_def=PARTS)
def things(context: dg.AssetExecutionContext) -> pd.DataFrame:
    keys = context.partition_key.keys_by_dimension
    n = 0 if keys["topic"] == "duty-cycling" and keys["track"] == "cloud" else 3
    return _frame(keys["topic"], keys["track"], n)


@dg.asset
def all_things(things: pd.DataFrame) -> pd.DataFrame:
    return things


def test_partitioned_round_trip_and_layout(tmp_path):
    io = HiveParquetIOManager(base_dir=str(tmp_path))
    for key in ["kv-cache-management|cloud", "duty-cycling|tinyml"]:
        assert dg.materialize([things], partition_key=key, resources={"io_manager": io}).success
    path = tmp_path / "things" / "topic=kv-cache-management" / "track=cloud" / "part.parquet"
    assert path.exists()
    assert "topic" not in pq.read_schema(path).names  # partition columns live in the path
    back = read_partition(tmp_path, "things", {"topic": "kv-cache-management", "track": "cloud"})
    assert list(back["id"]) == [f"kv-cache-management-cloud-{i}" for i in range(3)]
    assert set(back["track"]) == {"cloud"}
    assert back["calc"].iloc[2][0]["value"] == 2.0

    # an unpartitioned reader gets every materialized partition; never-materialized ones are skipped
    result = dg.materialize([things.to_source_asset(), all_things], resources={"io_manager": io})
    assert result.success
    combined = result.output_for_node("all_things")
    assert sorted(set(zip(combined["topic"], combined["track"]))) == [
        ("duty-cycling", "tinyml"),
        ("kv-cache-management", "cloud"),
    ]
    assert len(combined) == 6

    con = connect_warehouse(tmp_path)
    counts = con.execute("SELECT topic, track, count(*) AS n FROM things GROUP BY ALL ORDER BY topic").fetchall()
    assert counts == [("duty-cycling", "tinyml", 3), ("kv-cache-management", "cloud", 3)]


def test_failed_write_keeps_previous_version_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "a" / "part.parquet"
    write_parquet_atomic(pd.DataFrame({"v": [1, 2]}), path)

    def broken_write(table, where, **kwargs):
        with open(where, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(parquet_io.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_parquet_atomic(pd.DataFrame({"v": [9, 9, 9]}), path)
    monkeypatch.undo()
    assert list(pq.read_table(path).to_pandas()["v"]) == [1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["part.parquet"]


def test_unsafe_partition_values_rejected(tmp_path):
    with pytest.raises(ValueError, match="unsafe partition value"):
        parquet_io.partition_dir(tmp_path, "x", {"topic": "../../etc", "track": "cloud"})


def test_temp_files_of_killed_writes_are_removed_and_live_ones_kept(tmp_path):
    """A kill between a write and its rename leaves a temp file that nothing used to clean."""
    import os
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    folder = tmp_path / "questions" / "topic=a" / "track=cloud"
    folder.mkdir(parents=True)
    dead = folder / f".part-{gone.pid}-abc.parquet.tmp"
    live = folder / f".part-{os.getpid()}-def.parquet.tmp"
    unowned = folder / ".part-ghi.parquet.tmp"  # the earlier naming, without a pid
    for f in (dead, live, unowned):
        f.write_bytes(b"half")
    os.utime(unowned, (0, 0))  # long ago
    other = tmp_path / "corpus"
    other.mkdir()
    dead_elsewhere = other / f".part-{gone.pid}-jkl.parquet.tmp"
    dead_elsewhere.write_bytes(b"half")

    write_parquet_atomic(pd.DataFrame({"v": [1]}), folder / "part.parquet")  # cleans its own folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(["part.parquet", live.name])
    assert atomic.remove_orphan_temps(tmp_path) == [dead_elsewhere]  # a whole warehouse, at staffml run's start
    assert live.exists()


def test_parquet_files_get_the_umask_permissions(tmp_path):
    import stat

    path = tmp_path / "a" / "part.parquet"
    write_parquet_atomic(pd.DataFrame({"v": [1]}), path)
    assert stat.S_IMODE(path.stat().st_mode) == atomic.FILE_MODE
    assert stat.S_IMODE(path.stat().st_mode) & 0o044  # readable by others under the usual umask (was 0o600)


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temp_file(tmp_path):
    """Whatever kind of write fails, the reader sees the old file as it was, nothing half-written."""
    path = tmp_path / "reports" / "coverage.html"
    write_atomic(path, "<p>old</p>")

    def half_then_fail(tmp):
        tmp.write_text("<p>ne")  # half of the new content is on disk when the writer fails
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, half_then_fail)

    class Unwritable:  # neither bytes nor str: fails inside the write itself
        pass

    with pytest.raises(TypeError):
        write_atomic(path, Unwritable())
    assert path.read_text() == "<p>old</p>"
    assert [p.name for p in path.parent.iterdir()] == ["coverage.html"]

    frame = pd.DataFrame({"v": [1, 2]})
    part = tmp_path / "corpus" / "part.parquet"
    write_parquet_atomic(frame, part)
    with pytest.raises(Exception):
        write_parquet_atomic(pd.DataFrame({"v": [object()]}), part)  # pyarrow cannot convert it
    assert pq.read_table(part).to_pandas()["v"].tolist() == [1, 2]
    assert [p.name for p in part.parent.iterdir()] == ["part.parquet"]


def test_write_atomic_writes_bytes_text_as_utf8_and_through_a_writer(tmp_path):
    assert write_atomic(tmp_path / "a.png", b"\x89PNG").read_bytes() == b"\x89PNG"
    assert (write_atomic(tmp_path / "deeper" / "r.json", "κ ≥ 0.6")).read_bytes() == "κ ≥ 0.6".encode()
    write_atomic(tmp_path / "w.txt", lambda tmp: tmp.write_text("from a writer"))
    assert (tmp_path / "w.txt").read_text() == "from a writer"


def test_temp_names_carry_the_writer_pid_for_any_file(tmp_path):
    """A killed writer's temp file is recognised by its pid whatever the target's name."""
    import os
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f".coverage-{gone.pid}-x1y2z3ab.html.tmp"
    dead_dashed = tmp_path / f".coverage-2024-{gone.pid}-abcdefgh.html.tmp"
    live = tmp_path / f".coverage-{os.getpid()}-abcdefgh.html.tmp"
    for f in (dead, dead_dashed, live):
        f.write_text("half")
    write_atomic(tmp_path / "coverage.html", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["coverage.html", live.name])
