"""DuckDB over the warehouse: one view per asset directory, partition columns from the path."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from staffml_dagster.paths import warehouse_dir
from staffml_dagster.storage.parquet_io import PART_FILE, read_partition


def asset_sources(root: Path) -> list[tuple[str, list[Path], bool]]:
    """(view name, its non-empty Parquet files, hive-partitioned?) for every asset directory."""
    sources = []
    if not root.is_dir():
        return sources
    for asset_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in asset_dir.rglob(PART_FILE) if f.stat().st_size > 0)
        if files:
            partitioned = any("=" in part for f in files for part in f.relative_to(asset_dir).parts[:-1])
            sources.append((asset_dir.name.replace('"', ""), files, partitioned))
    return sources


def connect_warehouse(root: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view named after every materialized asset (for
    the pipeline's own code; a query typed by a person goes through ``sql_shell``)."""
    root = Path(root) if root else warehouse_dir()
    con = duckdb.connect(":memory:")
    for name, files, partitioned in asset_sources(root):
        asset_dir = root / files[0].relative_to(root).parts[0]
        glob = str(asset_dir / ("**/" if partitioned else "") / PART_FILE).replace("'", "''")
        options = ", hive_partitioning = true" if partitioned else ""
        con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{glob}', union_by_name = true{options})")
    return con


class DuckDBWarehouse(dg.ConfigurableResource):
    """The warehouse folder the IO manager writes: a DuckDB connection with one view per asset,
    and what an asset held before this run (a stage that keeps or reuses its previous rows
    reads them here, so it reads the folder its output goes to). ``base_dir`` unset: the
    ``warehouse`` folder of ``STAFFML_DATA_DIR`` (``data/`` by default)."""

    base_dir: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.base_dir) if self.base_dir else warehouse_dir()

    def connect(self) -> duckdb.DuckDBPyConnection:
        return connect_warehouse(self.root)

    def read_partition(self, asset: str, dims: dict[str, str] | None) -> pd.DataFrame | None:
        """One partition of ``asset`` as last written, or None when never materialized."""
        return read_partition(self.root, asset, dims)
