"""Write question rows as a StaffML-style corpus: one YAML file per question under
``questions/<track>/<level>/<zone>/<id>.yaml``, a ``questions.jsonl`` bundle and a
``questions.parquet`` table.

Every export is one *generation*: a folder ``.exports/<generation>/`` holding all the formats
at once (the requested ones written anew, the others carried over from the previous export as
hard links). ``.exports/current`` is a symbolic link to the published generation, and the three
names in the output folder are links through it (``questions -> .exports/current/questions``),
so publishing is one atomic rename of ``current``: every format switches together or none
does, a kill at any point leaves the previous export whole, and a failed export changes
nothing. Generations that are not current (the previous one, or one left by a killed export)
are deleted by the next export, which holds a lock on ``.exports`` while it works. Only the
three names above and ``.exports`` are ever touched in the output folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
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
        raise LookupError(
            "the warehouse has no corpus table yet; materialize it first (staffml run, or corpus_job in the UI)"
        )
    return con.sql("SELECT * FROM corpus ORDER BY id").to_arrow_table().to_pylist()


def _write_yaml_tree(records: list[dict], folder: Path) -> int:
    written: set[Path] = set()
    for record in records:
        relative = Path(
            folder_name(record.get("track")),
            folder_name(record.get("level")),
            folder_name(record.get("zone")),
            f"{file_stem(str(record.get('id')))}.yaml",
        )
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


EXPORTS = ".exports"
CURRENT = "current"


class ExportRefused(ValueError):
    """The output folder would overwrite something that is not an export (the warehouse)."""


def _check_out_dir(out_dir: Path) -> None:
    from staffml_dagster.paths import warehouse_dir

    target, warehouse = out_dir.resolve(), warehouse_dir().resolve()
    if target == warehouse or warehouse in target.parents:
        raise ExportRefused(
            f"--out {out_dir}: refused, it is inside the warehouse {warehouse}, whose files only the "
            "pipeline writes (an export there would replace the questions table); choose another folder"
        )


def _carry_over(previous: Path, generation: Path, name: str) -> None:
    """Hard-link the previous generation's output ``name`` into the new one (files are never
    changed in place, so sharing them is safe)."""
    source = previous / name
    if source.is_dir():
        shutil.copytree(source, generation / name, copy_function=os.link)
    elif source.is_file():
        os.link(source, generation / name)


def _publish(exports: Path, generation: Path) -> None:
    """Point ``current`` at ``generation`` with one atomic rename of a fresh link over it."""
    link = exports / f".{CURRENT}-{generation.name}"
    os.symlink(generation.name, link)
    os.replace(link, exports / CURRENT)


def _link_outputs(out_dir: Path, names: Iterable[str]) -> None:
    """Make each output name a link through ``current``. A real file or folder left by an
    export of the earlier layout is replaced by its link (its content is already in the
    current generation)."""
    for name in names:
        path, target = out_dir / name, f"{EXPORTS}/{CURRENT}/{name}"
        if path.is_symlink() and os.readlink(path) == target:
            continue
        link = out_dir / f".{name}.link-{uuid.uuid4().hex[:8]}"
        os.symlink(target, link)
        if path.is_dir() and not path.is_symlink():
            aside = out_dir / EXPORTS / f".replaced-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(path, aside)
        os.replace(link, path)


def _clean(out_dir: Path, exports: Path) -> None:
    """Delete every generation but the current one, and staging folders of the earlier layout."""
    current = os.readlink(exports / CURRENT) if (exports / CURRENT).is_symlink() else None
    for entry in exports.iterdir():
        if entry.name in (CURRENT, current, ".lock"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    for entry in out_dir.glob(".export-*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
    for entry in out_dir.glob(".*.link-*"):
        if entry.is_symlink():
            entry.unlink(missing_ok=True)


def _before_publish(generation: Path) -> None:
    """Called with the complete new generation just before it is published (a test hook)."""


def export_corpus(rows: Iterable[Mapping], out_dir: Path, formats: Iterable[str] = FORMATS) -> dict[str, Path]:
    """Export ``rows`` (question rows, e.g. the ``corpus`` table) to ``out_dir`` in each of
    ``formats``; returns where each format was written. On any error nothing is published."""
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    rows = [{k: plain(v) for k, v in row.items()} for row in rows]
    records = [row_to_record(row) for row in rows]
    exports = out_dir / EXPORTS
    exports.mkdir(parents=True, exist_ok=True)
    with open(exports / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one export of this folder at a time: the cleaning below is safe
        _clean(out_dir, exports)
        generation = exports / f"gen-{uuid.uuid4().hex[:12]}"
        generation.mkdir()  # with the umask's permissions, as the outputs had before
        try:
            for fmt in formats:
                built = generation / OUTPUTS[fmt]
                if fmt == "yaml":
                    built.mkdir()
                    _write_yaml_tree(records, built)
                elif fmt == "jsonl":
                    _write_jsonl(records, built)
                else:
                    write_parquet_atomic(pd.DataFrame(rows), built)
            kept = [fmt for fmt in FORMATS if fmt not in formats]
            for fmt in kept:  # what this export does not rewrite stays as it was: from the current generation ...
                if (exports / CURRENT).is_symlink():
                    _carry_over(exports / CURRENT, generation, OUTPUTS[fmt])
                elif (out_dir / OUTPUTS[fmt]).exists():  # ... or from an export of the earlier layout
                    _carry_over(out_dir, generation, OUTPUTS[fmt])
            _before_publish(generation)
            _publish(exports, generation)
        except BaseException:
            if not ((exports / CURRENT).is_symlink() and os.readlink(exports / CURRENT) == generation.name):
                shutil.rmtree(generation, ignore_errors=True)  # never published: nothing changed
            raise
        _link_outputs(out_dir, [OUTPUTS[fmt] for fmt in FORMATS if (generation / OUTPUTS[fmt]).exists()])
        _clean(out_dir, exports)
    return {fmt: out_dir / OUTPUTS[fmt] for fmt in formats}
