"""benchmarks/hostile/run.py: bad inputs thrown at the real `staffml` commands are refused
cleanly and leave the warehouse as it was; and the harness itself sees damage and unclean exits."""

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from staffml_dagster.generation.backend import QUESTION_COLUMNS, CellRequest
from staffml_dagster.generation.offline import ItemModelGenerator
from staffml_dagster.storage import write_parquet_atomic

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "hostile" / "run.py"


@pytest.fixture(scope="module")
def hostile():
    spec = importlib.util.spec_from_file_location("hostile_run", RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def pristine(tmp_path, specs):
    """A small data folder: one questions partition, the corpus, a report."""
    rows = pd.DataFrame(
        ItemModelGenerator().generate(specs, CellRequest("kv-cache-management", "cloud", "quantify", "L3", 3, 1)),
        columns=QUESTION_COLUMNS,
    )
    data = tmp_path / "pristine"
    write_parquet_atomic(
        rows.drop(columns=["topic", "track"]),
        data / "warehouse" / "questions" / "topic=kv-cache-management" / "track=cloud" / "part.parquet",
    )
    write_parquet_atomic(rows, data / "warehouse" / "corpus" / "part.parquet")
    (data / "reports").mkdir()
    (data / "reports" / "coverage.html").write_text("<html></html>\n")
    return data


def _pick(cases, *names):
    chosen = [c for c in cases if c.name in names]
    assert len(chosen) == len(names), [c.name for c in cases]
    return chosen


def test_a_subset_of_the_cases_is_refused_cleanly_and_nothing_changes(hostile, pristine, tmp_path):
    work, scratch = tmp_path / "data", tmp_path / "scratch"
    scratch.mkdir()
    hostile.restore(pristine, work)
    cases = _pick(
        hostile.all_cases(work, scratch),
        "sql: COPY over the corpus",
        "sql: ATTACH a file in the warehouse",
        "spec: duplicate key",
        "import: python tag",
        "export: --out the warehouse",
        "review: --where closes the SELECT and COPYs",
    )
    results = hostile.run_cases(cases, pristine, work)
    assert [r["case"] for r in results if not r["clean"]] == [], results
    assert [r["case"] for r in results if r["lost"] or r["corrupted"]] == [], results
    assert hostile.figures(results)["handled_cleanly"] == len(cases)
    assert hostile.fingerprint(work) == hostile.fingerprint(pristine)


def test_sql_that_writes_is_seen_as_damage(hostile, pristine, tmp_path):
    """--write-to a folder outside is the allowed write mode: it exits 0 (not a refusal), and a
    COPY that did reach the warehouse would be seen and undone."""
    work, scratch = tmp_path / "data", tmp_path / "scratch"
    scratch.mkdir()
    wh = work / "warehouse"
    allowed = hostile.Case(
        "sql: write mode",
        "sql",
        ["sql", "--write-to", str(scratch), f"COPY (SELECT 1 AS x) TO '{scratch}/x.csv'"],
        ("COPY",),
    )
    overwrite = hostile.Case(
        "control: COPY over the corpus",
        "sql",
        [],
        ("corpus",),
        command=[
            sys.executable,
            "-c",
            f"import duckdb, sys; duckdb.sql(\"COPY (SELECT 1 AS x) TO '{wh}/corpus/part.parquet'\"); "
            "sys.exit('corpus overwritten')",
        ],
    )
    results = {r["case"]: r for r in hostile.run_cases([allowed, overwrite], pristine, work)}
    assert results["sql: write mode"]["exit"] == 0 and not results["sql: write mode"]["clean"]
    damaged = results["control: COPY over the corpus"]
    assert damaged["changed"] == ["warehouse/corpus/part.parquet"] and damaged["corrupted"] and damaged["clean"]
    assert hostile.fingerprint(work) == hostile.fingerprint(pristine)  # restored for the next case


def test_the_harness_sees_each_kind_of_damage_and_unclean_exit(hostile, pristine, tmp_path):
    work = tmp_path / "data"
    wh = work / "warehouse"

    def control(name, code, names=("what",)):
        return hostile.Case(name, "control", [], names, command=[sys.executable, "-c", code])

    marker = tmp_path / "outside"
    cases = [
        control("vanished", f"import os, sys; os.remove({str(wh / 'corpus' / 'part.parquet')!r}); sys.exit('what')"),
        control(
            "half-written",
            f"import sys; open({str(wh / 'corpus' / '.part-1-x.parquet.tmp')!r}, 'w').write('x'); sys.exit('what')",
        ),
        control("added", f"import sys; open({str(wh / 'evil.duckdb')!r}, 'w').write('x'); sys.exit('what')"),
        hostile.Case(
            "stray",
            "control",
            [],
            ("what",),
            command=[sys.executable, "-c", f"import sys; open({str(marker)!r}, 'w'); sys.exit('what')"],
            marker=marker,
        ),
        control("exit 0", "print('what')"),
        control("traceback", "raise ValueError('what')"),
        control("names nothing", "import sys; sys.exit('something went wrong')"),
        control("clean", "import sys; sys.exit('what is wrong')"),
    ]
    results = {r["case"]: r for r in hostile.run_cases(cases, pristine, work)}
    assert results["vanished"]["vanished"] == ["warehouse/corpus/part.parquet"] and results["vanished"]["lost"]
    assert (
        results["half-written"]["half_written"] == ["warehouse/corpus/.part-1-x.parquet.tmp"]
        and results["half-written"]["corrupted"]
    )
    assert results["added"]["added"] == ["warehouse/evil.duckdb"] and results["added"]["corrupted"]
    assert results["stray"]["stray"] == [str(marker)] and results["stray"]["corrupted"]
    assert [name for name, r in results.items() if r["clean"]] == [
        "vanished",
        "half-written",
        "added",
        "stray",
        "clean",
    ]
    assert results["traceback"]["traceback"] and results["names nothing"]["missing_from_message"] == ["what"]
    assert hostile.figures(list(results.values()))["lost_or_corrupted"] == 4
    assert hostile.fingerprint(work) == hostile.fingerprint(pristine)
