"""Hive-partitioned Parquet storage and the DuckDB views over it."""

from staffml_dagster.storage.duckdb_views import DuckDBWarehouse, connect_warehouse
from staffml_dagster.storage.parquet_io import HiveParquetIOManager, read_partition, write_parquet_atomic, write_text_atomic

__all__ = ["DuckDBWarehouse", "HiveParquetIOManager", "connect_warehouse", "read_partition", "write_parquet_atomic", "write_text_atomic"]
