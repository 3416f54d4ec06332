"""Write question rows as a StaffML-style corpus: one YAML file per question under
``questions/<track>/<level>/<zone>/<id>.yaml``, a ``questions.jsonl`` bundle and a
``questions.parquet`` table.

Everything is built in a hidden staging folder inside the output folder and only moved
into place once every requested format is complete, so a failure leaves the previous
export (or nothing) and never a half-written one. Only the three names above are ever
replaced in the output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import yaml

from staffml_dagster.interchange.staffml_format import file_stem, folder_name, plain, row_to_record
from staffml_dagster.storage.parquet_io import write_parquet_atomic

FORMATS = ("yaml", "jsonl", "parquet")
OUTPUTS = {"yaml": "questions", "jsonl": "questions.jsonl", "parquet": "questions.parquet"}


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Safe YAML with multi-line text as literal blocks (PyYAML falls back to a quoted
    style by itself whenever a block could not represent the text exactly)."""


def _text(dumper: yaml.SafeDumper, value: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def to_yaml(record: Mapping) -> str:
    return yaml.dump(dict(record), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def corpus_rows(con=None) -> list[dict]:
    """Every row of the warehouse's ``corpus`` table as plain Python values, by id."""
    from staffml_dagster.storage import connect_warehouse

    con = con or connect_warehouse()
    if "corpus" not in {r[0] for r in con.execute("SHOW TABLES").fetchall()}:
        raise LookupError("the warehouse has no corpus table yet; materialize it first (staffml run, or corpus_job in the UI)")
    return con.sql("SELECT * FROM corpus ORDER BY id").to_arrow_table().to_pylist()


def _write_yaml_tree(records: list[dict], folder: Path) -> int:
    written: set[Path] = set()
    for record in records:
        relative = Path(folder_name(record.get("track")), folder_name(record.get("level")), folder_name(record.get("zone")),
                        f"{file_stem(str(record.get('id')))}.yaml")
        if relative in written:
            raise ValueError(f"two questions would be written to {relative}: ids must be unique")
        written.add(relative)
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(to_yaml(record), encoding="utf-8")
    return len(written)


def _write_jsonl(records: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _move_into_place(built: Path, target: Path, staging: Path) -> None:
    """Replace ``target`` by ``built`` (same file system): a file with one atomic rename; a
    folder by renaming the old one aside first and deleting it after."""
    if not (built.is_dir() and target.exists()):
        os.replace(built, target)
        return
    aside = staging / f".previous-{target.name}"
    os.replace(target, aside)
    try:
        os.replace(built, target)
    except OSError:
        os.replace(aside, target)  # put the previous export back
        raise


def export_corpus(rows: Iterable[Mapping], out_dir: Path, formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Export ``rows`` (question rows, e.g. the ``corpus`` table) to ``out_dir`` in each of
    ``formats``; returns where each format was written."""
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    rows = [{k: plain(v) for k, v in row.items()} for row in rows]
    records = [row_to_record(row) for row in rows]
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        for fmt in formats:
            built = staging / OUTPUTS[fmt]
            if fmt == "yaml":
                built.mkdir()
                _write_yaml_tree(records, built)
            elif fmt == "jsonl":
                _write_jsonl(records, built)
            else:
                write_parquet_atomic(pd.DataFrame(rows), built)
        for fmt in formats:
            _move_into_place(staging / OUTPUTS[fmt], out_dir / OUTPUTS[fmt], staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {fmt: out_dir / OUTPUTS[fmt] for fmt in formats}
