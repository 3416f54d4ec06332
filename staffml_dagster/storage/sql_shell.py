"""The `staffml sql` shell: a locked-down DuckDB connection over the warehouse.

By default a query runs on a read-only database whose views read the warehouse's own Parquet
files and nothing else: only SELECT (with SHOW, DESCRIBE, SUMMARIZE) and EXPLAIN of a SELECT
are accepted, file access is limited to the warehouse's ``part.parquet`` files, extensions are
neither installed nor loaded, and the configuration is locked so a query cannot undo any of
it. With ``write_dir`` a query may also COPY results out, but only into that folder, which
may neither lie inside the warehouse nor contain it; the tables it reads are then copied into
memory first, so no warehouse file is reachable at all while the query runs.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from staffml_dagster.paths import warehouse_dir
from staffml_dagster.storage.duckdb_views import asset_sources

READ_ONLY_TYPES = {duckdb.StatementType.SELECT}
WRITE_TYPES = READ_ONLY_TYPES | {duckdb.StatementType.COPY}
_EXPLAIN = re.compile(r"^\s*explain\s+(analy[sz]e\s+)?", re.IGNORECASE)
_INSTALL = re.compile(r"^\s*(force\s+)?install\b", re.IGNORECASE)  # DuckDB files INSTALL under LOAD


class QueryRefused(ValueError):
    """A statement or a file access that the shell does not allow, with the reason."""


def _lock_down(con: duckdb.DuckDBPyConnection, allowed_paths: list[str], allowed_directories: list[str]) -> None:
    """No file outside the given ones, no extension installs or loads, then lock the settings."""
    quoted = lambda items: "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in items) + "]"  # noqa: E731
    con.execute(f"SET allowed_paths = {quoted(allowed_paths)}")
    con.execute(f"SET allowed_directories = {quoted(allowed_directories)}")
    for setting in (
        "autoinstall_known_extensions",
        "autoload_known_extensions",
        "allow_community_extensions",
        "enable_external_access",
    ):
        con.execute(f"SET {setting} = false")
    con.execute("SET lock_configuration = true")


def check_statements(query: str, allowed: set) -> None:
    """Raise QueryRefused unless every statement of ``query`` has an allowed type
    (EXPLAIN counts as the statement it explains: EXPLAIN ANALYZE runs it)."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryRefused(f"the query does not parse: {exc}") from exc
    if not statements:
        raise QueryRefused("the query is empty")
    for statement in statements:
        kind = statement.type
        if kind == duckdb.StatementType.EXPLAIN:
            inner = duckdb.extract_statements(_EXPLAIN.sub("", statement.query, count=1))
            kind = inner[0].type if len(inner) == 1 else kind
        if kind not in allowed:
            name = str(kind).rsplit(".", 1)[-1]
            if kind == duckdb.StatementType.LOAD and _INSTALL.match(statement.query):
                name = "INSTALL"  # the statement as written, not DuckDB's group for it
            if duckdb.StatementType.COPY in allowed:
                raise QueryRefused(
                    f"{name} statements are refused: with --write-to only SELECT and COPY ... TO a file in that folder "
                    "run"
                )
            raise QueryRefused(
                f"{name} statements are refused: staffml sql is read-only (SELECT, SHOW, DESCRIBE, SUMMARIZE, "
                "EXPLAIN); to write a result to a file use --write-to DIR with COPY (...) TO 'DIR/name.parquet'"
            )


def check_write_dir(write_dir: Path, root: Path) -> Path:
    """The resolved output folder, refused when it is the warehouse, inside it or contains it."""
    target, warehouse = Path(write_dir).resolve(), Path(root).resolve()
    if target == warehouse or warehouse in target.parents or target in warehouse.parents:
        raise QueryRefused(
            f"--write-to {write_dir}: refused, the folder overlaps the warehouse {warehouse} "
            "(its files are written only by the pipeline); choose a folder outside it"
        )
    if target.exists() and not target.is_dir():
        raise QueryRefused(f"--write-to {write_dir}: not a folder")
    return target


@contextlib.contextmanager
def read_only_connection(root: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only DuckDB database holding one view per materialized asset, each over an
    explicit list of that asset's Parquet files, the only files the connection may open."""
    root = Path(root) if root else warehouse_dir()
    sources = asset_sources(root)
    with tempfile.TemporaryDirectory(prefix="staffml-sql-") as scratch:
        db = str(Path(scratch) / "views.duckdb")
        with duckdb.connect(db) as build:
            for name, files, partitioned in sources:
                listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
                options = ", hive_partitioning = true" if partitioned else ""
                build.execute(
                    f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listed}], union_by_name = true{options})'
                )
        con = duckdb.connect(db, read_only=True)
        try:
            _lock_down(con, [str(f) for _, files, _ in sources for f in files], [])
            yield con
        finally:
            con.close()


@contextlib.contextmanager
def write_connection(query: str, write_dir: Path, root: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory database holding a copy of every asset the query names, whose only
    reachable folder is ``write_dir`` (checked to lie outside the warehouse)."""
    root = Path(root) if root else warehouse_dir()
    target = check_write_dir(write_dir, root)
    target.mkdir(parents=True, exist_ok=True)
    words = {w.lower() for w in re.findall(r"\w+", query)}
    con = duckdb.connect(":memory:")
    try:
        for name, files, partitioned in asset_sources(root):
            if name.lower() in words:
                options = ", hive_partitioning = true" if partitioned else ""
                con.execute(
                    f'CREATE TABLE "{name}" AS SELECT * FROM read_parquet(?, union_by_name = true{options})',
                    [[str(f) for f in files]],
                )
        _lock_down(con, [], [str(target) + "/"])
        yield con
    finally:
        con.close()


def run_query(query: str, root: Path | None = None, write_dir: Path | None = None) -> pd.DataFrame:
    """Run ``query`` read-only (or, with ``write_dir``, allowing COPY into that folder) and
    return its result. Refusals raise QueryRefused; DuckDB errors pass through."""
    check_statements(query, WRITE_TYPES if write_dir else READ_ONLY_TYPES)
    opened = write_connection(query, Path(write_dir), root) if write_dir else read_only_connection(root)
    with opened as con:
        try:
            result = con.execute(query)
        except duckdb.PermissionException as exc:
            where = f"outside {write_dir}" if write_dir else "outside the warehouse's Parquet files"
            raise QueryRefused(f"the query reaches a file {where} or an extension ({exc})") from exc
        return result.df() if result.description else pd.DataFrame()
