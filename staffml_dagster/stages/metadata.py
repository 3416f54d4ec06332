"""Metadata every inspectable asset attaches: row count and a Markdown preview."""

import dagster as dg
import pandas as pd

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

def table_metadata(df: pd.DataFrame, columns: list[str] | None = None, rows: int = 10) -> dict[str, dg.MetadataValue]:
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "preview": dg.MetadataValue.md(markdown_table(df, columns, rows)),
    }
