"""Hive-partitioned Parquet IO manager.

Layout: ``<warehouse>/<asset>/topic=<t>/track=<k>/part.parquet`` for assets partitioned by
(topic, track), ``<warehouse>/<asset>/part.parquet`` otherwise. Partition columns live in
the path, not in the file (the hive convention), and are restored on read. Every write
goes through :func:`~staffml_dagster.storage.atomic.write_atomic`: a reader never sees a
half-written file and a failed write leaves the previous version intact.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from staffml_dagster.paths import warehouse_dir
from staffml_dagster.storage.atomic import write_atomic

PART_FILE = "part.parquet"


def partition_dir(root: Path, asset: str, dims: dict[str, str] | None) -> Path:
    path = root / asset
    for name in sorted(dims or {}):
        value = dims[name]
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"unsafe partition value {name}={value!r}")
        path = path / f"{name}={value}"
    return path


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` whole or not at all (:func:`~staffml_dagster.storage.atomic.write_atomic`)."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def read_partition(root: Path, asset: str, dims: dict[str, str] | None) -> pd.DataFrame | None:
    """One partition's table with its partition columns restored, or None when never written."""
    path = partition_dir(root, asset, dims) / PART_FILE
    if not path.exists():
        return None
    df = pq.read_table(path).to_pandas()
    for name, value in (dims or {}).items():
        df[name] = value
    return df


def _dims(key: str | None, partitions_def: dg.PartitionsDefinition | None) -> dict[str, str] | None:
    """Partition dimensions of a key: {"topic": ..., "track": ...}."""
    if key is None:
        return None
    if isinstance(key, dg.MultiPartitionKey):
        return dict(key.keys_by_dimension)
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return dict(partitions_def.get_partition_key_from_str(key).keys_by_dimension)
    raise TypeError(f"unsupported partition key {key!r}: expected a (topic, track) multi-partition key")


class HiveParquetIOManager(dg.ConfigurableIOManager):
    """Stores pandas DataFrames as hive-partitioned Parquet under the warehouse directory."""

    base_dir: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.base_dir) if self.base_dir else warehouse_dir()

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: expected a pandas DataFrame, got {type(obj).__name__}"
            )
        asset = context.asset_key.path[-1]
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            self._handle_partition_range(context, asset, obj)
            return
        dims = (
            _dims(context.asset_partition_key, context.asset_partitions_def) if context.has_asset_partitions else None
        )
        frame = obj.drop(columns=[c for c in (dims or {}) if c in obj.columns])
        path = partition_dir(self.root, asset, dims) / PART_FILE
        write_parquet_atomic(frame, path)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def _handle_partition_range(self, context: dg.OutputContext, asset: str, obj: pd.DataFrame) -> None:
        """A single run over many partitions returns one table; each partition's rows go to
        its own file, selected by the partition columns the table must carry."""
        keys = context.asset_partition_keys
        for key in keys:
            dims = _dims(key, context.asset_partitions_def)
            missing = [c for c in dims if c not in obj.columns]
            if missing:
                raise ValueError(
                    f"{asset}: a multi-partition output needs the partition column(s) {missing} to split rows by "
                    "partition"
                )
            mask = pd.Series(True, index=obj.index)
            for name, value in dims.items():
                mask &= obj[name] == value
            frame = obj[mask].drop(columns=list(dims))
            write_parquet_atomic(frame.reset_index(drop=True), partition_dir(self.root, asset, dims) / PART_FILE)
        context.add_output_metadata({"partitions_written": dg.MetadataValue.int(len(keys))})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        asset = context.asset_key.path[-1]
        if not context.has_asset_partitions:
            df = read_partition(self.root, asset, None)
            if df is None:
                raise FileNotFoundError(
                    f"asset {asset!r} has not been materialized: {partition_dir(self.root, asset, None) / PART_FILE} "
                    "is missing"
                )
            return df
        partitions_def = context.asset_partitions_def
        frames, empty = [], None
        for key in context.asset_partition_keys:
            frame = read_partition(self.root, asset, _dims(key, partitions_def))
            if frame is None:
                continue  # never materialized: skipped
            if len(frame):
                frames.append(frame)
            elif empty is None:
                empty = frame  # an empty partition still carries the schema
        if frames:
            return pd.concat(frames, ignore_index=True)
        return empty if empty is not None else pd.DataFrame()
