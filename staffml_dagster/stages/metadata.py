"""Metadata every inspectable asset attaches: row count and a Markdown preview; and, for the
partitioned stages, each partition's own figures on its own materialization event."""

from collections.abc import Callable, Mapping, Sequence

import dagster as dg
import pandas as pd

from staffml_dagster.partitions import topic_track


def _cell(value: object, width: int) -> str:
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    text = str(value).replace("|", "/").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(df: pd.DataFrame, columns: list[str] | None = None, rows: int = 10, width: int = 80) -> str:
    columns = [c for c in (columns or list(df.columns)) if c in df.columns]
    if df.empty or not columns:
        return "_empty_"
    head = df[columns].head(rows).apply(lambda col: col.map(lambda v: _cell(v, width)))
    return head.to_markdown(index=False)


def table_metadata(
    df: pd.DataFrame, columns: list[str] | None = None, rows: int = 10, preview_of: pd.DataFrame | None = None
) -> dict[str, dg.MetadataValue]:
    """The table's row count and a preview of its first rows, or of ``preview_of`` (a subset
    worth looking at, such as the excluded pairs): the count is always the whole table's."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "preview": dg.MetadataValue.md(markdown_table(df if preview_of is None else preview_of, columns, rows)),
    }


def rows_by_partition(df: pd.DataFrame, partition_keys: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The rows of each (topic, track) partition key of a run, split on the table's ``topic``
    and ``track`` columns; a partition with no rows gets an empty table of the same columns."""
    groups = dict(iter(df.groupby(["topic", "track"], sort=False))) if len(df) else {}
    out = {}
    for key in partition_keys:
        dims = topic_track.get_partition_key_from_str(key).keys_by_dimension
        out[key] = groups.get((dims["topic"], dims["track"]), df.iloc[0:0])
    return out


def run_partition_keys(context: dg.AssetExecutionContext) -> list[str]:
    """The partition keys the run materializes; none when it targets no partition."""
    return list(context.partition_keys) if context.has_partition_key or context.has_partition_key_range else []


def add_partition_metadata(
    context: dg.AssetExecutionContext,
    df: pd.DataFrame,
    build: Callable[[str | None, pd.DataFrame], Mapping[str, object]],
) -> dict:
    """Put each partition's own figures (``build(key, its rows)``) on its own materialization
    event. A run over many partitions returns one table; without this every partition would
    show the whole run's row count and samples. Run-wide figures go in the output metadata,
    which every partition's event also carries; a partition's own figures win over them.
    Returns what the output metadata must add: the whole table's figures when the run targets
    no partition, else nothing."""
    keys = run_partition_keys(context)
    if not keys:  # called without a partition (a direct invocation): the whole table is the figure
        return dict(build(None, df))
    for key, rows in rows_by_partition(df, keys).items():
        context.add_asset_metadata(dict(build(key, rows)), partition_key=key)
    return {}
