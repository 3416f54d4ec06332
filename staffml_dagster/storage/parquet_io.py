"""Hive-partitioned Parquet IO manager.

Layout: ``<warehouse>/<asset>/topic=<t>/track=<k>/part.parquet`` for assets partitioned by
(topic, track), ``<warehouse>/<asset>/part.parquet`` otherwise. Partition columns live in
the path, not in the file (the hive convention), and are restored on read. Every write
goes to a temporary file in the same directory and is renamed into place, so a reader
never sees a half-written file and a failed write leaves the previous version intact.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from staffml_dagster.paths import warehouse_dir

PART_FILE = "part.parquet"


def partition_dir(root: Path, asset: str, dims: dict[str, str] | None) -> Path:
    path = root / asset
    for name in sorted(dims or {}):
        value = dims[name]
        if not value or "/" in value or value.startswith("."):
            raise ValueError(f"unsafe partition value {name}={value!r}")
        path = path / f"{name}={value}"
    return path


TEMP_GLOB = ".part-*.parquet.tmp"
_TEMP_PID = re.compile(r"^\.part-(\d+)-")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
STALE_UNOWNED_SECONDS = 3600  # a temp file without a writer's pid (an older layout) is an orphan after this


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temps(directory: Path, recursive: bool = True) -> list[Path]:
    """Delete the temp files of writes whose process is gone (a kill between the write and
    its rename leaves one) under ``directory``; a write in progress is never touched.
    Returns what was deleted."""
    removed = []
    found = (directory.rglob(TEMP_GLOB) if recursive else directory.glob(TEMP_GLOB)) if directory.is_dir() else ()
    for tmp in found:
        owner = _TEMP_PID.match(tmp.name)
        try:
            orphan = not _writer_alive(int(owner.group(1))) if owner else time.time() - tmp.stat().st_mtime > STALE_UNOWNED_SECONDS
            if orphan:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
    return removed


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` to ``path`` through a temp file + rename in the same directory. The temp
    file's name carries the writer's pid, so an orphan left by a killed writer is recognized
    and deleted by the next write to that directory; the file gets the umask's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    remove_orphan_temps(path.parent, recursive=False)
    fd, tmp = tempfile.mkstemp(prefix=f".part-{os.getpid()}-", suffix=".parquet.tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file (a report page) through a temp file + rename in its directory, readable
    by others (0644) like the reports it replaces; nothing half-written is ever at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a pandas DataFrame, got {type(obj).__name__}")
        asset = context.asset_key.path[-1]
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            self._handle_partition_range(context, asset, obj)
            return
        dims = _dims(context.asset_partition_key, context.asset_partitions_def) if context.has_asset_partitions else None
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
                raise ValueError(f"{asset}: a multi-partition output needs the partition column(s) {missing} to split rows by partition")
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
                raise FileNotFoundError(f"asset {asset!r} has not been materialized: {partition_dir(self.root, asset, None) / PART_FILE} is missing")
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
