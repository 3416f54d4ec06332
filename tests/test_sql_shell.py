"""`staffml sql` is read-only by default: each attack of issue 17 is refused, SELECTs still work,
and writing needs --write-to with a folder outside the warehouse."""

import hashlib

import pandas as pd
import pytest

from staffml_dagster.cli import main
from staffml_dagster.storage import write_parquet_atomic
from staffml_dagster.storage.sql_shell import QueryRefused, run_query


@pytest.fixture
def filled(warehouse):
    """A small warehouse: two questions partitions and an unpartitioned corpus."""
    for topic, track, n in [("kv-cache-management", "cloud", 3), ("duty-cycling", "tinyml", 2)]:
        rows = pd.DataFrame({"id": [f"{topic}-{track}-{i}" for i in range(n)], "zone": "recall"})
        write_parquet_atomic(rows, warehouse / "questions" / f"topic={topic}" / f"track={track}" / "part.parquet")
    write_parquet_atomic(
        pd.DataFrame({"id": ["a", "b", "c", "d", "e"], "topic": "kv-cache-management"}),
        warehouse / "corpus" / "part.parquet",
    )
    (warehouse / "corpus" / "notes.txt").write_text("not a table\n")
    return warehouse


def _snapshot(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_selects_still_work(filled, capsys):
    assert main(["sql", "SELECT track, count(*) AS n FROM questions GROUP BY ALL ORDER BY ALL"]) == 0
    out = capsys.readouterr().out
    assert "cloud" in out and "tinyml" in out
    assert run_query("SELECT count(*) AS n FROM corpus")["n"].tolist() == [5]
    assert set(run_query("SHOW TABLES")["name"]) == {"questions", "corpus"}
    assert len(run_query("DESCRIBE questions")) == 4  # id, zone and the two partition columns
    assert len(run_query("EXPLAIN SELECT * FROM corpus")) >= 1
    assert main(["sql", "SELECT * FROM no_such_view"]) == 2


@pytest.mark.parametrize(
    "attack, reason",
    [
        ("COPY (SELECT * FROM corpus LIMIT 1) TO '{wh}/corpus/part.parquet'", "COPY statements are refused"),
        (
            "COPY (SELECT 'x' AS id, 'kv-cache-management' AS topic, 'cloud' AS track FROM corpus LIMIT 1) "
            "TO '{wh}/questions' (FORMAT parquet, PARTITION_BY (topic, track), OVERWRITE)",
            "COPY statements are refused",
        ),
        ("ATTACH '{wh}/evil.duckdb' AS evil", "ATTACH statements are refused"),
        ("INSTALL httpfs", "INSTALL statements are refused"),
        ("FORCE INSTALL httpfs", "INSTALL statements are refused"),
        ("LOAD parquet", "LOAD statements are refused"),
        ("SET enable_external_access = true", "SET statements are refused"),
        ("CREATE TABLE t AS SELECT 1", "CREATE statements are refused"),
        ("SELECT 1; COPY (SELECT 1) TO '{wh}/x.csv'", "COPY statements are refused"),
        ("EXPLAIN ANALYZE COPY (SELECT * FROM corpus) TO '{wh}/corpus/part.parquet'", "COPY statements are refused"),
        ("SELECT * FROM read_csv('/etc/passwd')", "outside the warehouse's Parquet files"),
        ("SELECT * FROM read_text('/etc/passwd')", "outside the warehouse's Parquet files"),
        ("SELECT * FROM glob('/etc/*')", "outside the warehouse's Parquet files"),
        ("SELECT * FROM read_text('{wh}/corpus/notes.txt')", "outside the warehouse's Parquet files"),
        (
            "SELECT * FROM read_text('{wh}/corpus/../../../../../../etc/passwd')",
            "outside the warehouse's Parquet files",
        ),
    ],
)
def test_each_attack_is_refused_and_the_warehouse_is_untouched(filled, capsys, attack, reason):
    before = _snapshot(filled.parent)
    assert main(["sql", attack.format(wh=filled)]) == 2
    err = capsys.readouterr().err
    assert "query refused, nothing run" in err and reason in err
    assert _snapshot(filled.parent) == before
    assert run_query("SELECT count(*) AS n FROM corpus")["n"].tolist() == [5]


def test_write_mode_copies_out_but_never_into_the_warehouse(filled, tmp_path, capsys):
    out = tmp_path / "exports"
    assert (
        main(["sql", "--write-to", str(out), f"COPY (SELECT * FROM corpus WHERE id < 'c') TO '{out}/two.parquet'"]) == 0
    )
    assert pd.read_parquet(out / "two.parquet")["id"].tolist() == ["a", "b"]
    before = _snapshot(filled)
    with pytest.raises(QueryRefused, match="outside"):
        run_query(f"COPY (SELECT * FROM corpus LIMIT 1) TO '{filled}/corpus/part.parquet'", write_dir=out)
    with pytest.raises(QueryRefused, match="outside"):
        run_query(
            f"COPY (SELECT * FROM corpus) TO '{out}/../data/warehouse/corpus' "
            "(FORMAT parquet, PARTITION_BY (topic), OVERWRITE)",
            write_dir=out,
        )
    with pytest.raises(QueryRefused, match="ATTACH statements are refused"):
        run_query(f"ATTACH '{out}/x.duckdb'", write_dir=out)
    with pytest.raises(QueryRefused, match="outside"):
        run_query("SELECT * FROM read_csv('/etc/passwd')", write_dir=out)
    assert _snapshot(filled) == before


@pytest.mark.parametrize("where", ["warehouse", "inside", "parent"])
def test_write_folder_overlapping_the_warehouse_is_refused(filled, capsys, where):
    folder = {"warehouse": filled, "inside": filled / "questions", "parent": filled.parent}[where]
    before = _snapshot(filled)
    assert (
        main(
            ["sql", "--write-to", str(folder), f"COPY (SELECT * FROM corpus LIMIT 1) TO '{filled}/corpus/part.parquet'"]
        )
        == 2
    )
    assert "overlaps the warehouse" in capsys.readouterr().err
    assert _snapshot(filled) == before
