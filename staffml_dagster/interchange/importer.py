"""Read a StaffML corpus from disk — safely — into question rows.

Accepts a directory tree of one-question YAML files (schema 1.0 or the legacy
track/level/zone folder layout), ``.json`` bundles (a list of questions or
``{"questions": [...]}``) and ``.jsonl`` bundles (one question per line), or a single
such file. Input is treated as hostile:

* YAML is read with the safe loader only (``CSafeLoader``, or a ``SafeLoader`` subclass
  without libyaml: no Python tags); aliases ("billion laughs") and nesting deeper than
  ``max_depth`` are refused from the event stream before anything is constructed;
* every file is size-checked before it is read (``max_file_bytes`` for a question file
  or a JSONL line, ``max_bundle_bytes`` for a bundle), and only regular files are read;
* ids must match :data:`~staffml_dagster.interchange.staffml_format.ID_PATTERN` before
  anything else happens to the question, so an id never becomes a path;
* symlinks are followed only when their target stays inside the import root;
* a bad file (or bundle entry) gives one error naming it and what is wrong, and the rest
  still import.

Nothing here knows Dagster; the CLI and the ``imported_questions`` asset call
:func:`import_corpus`.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from staffml_dagster.generation.backend import QUESTION_COLUMNS
from staffml_dagster.interchange.staffml_format import (
    IMPORT_COLUMNS,
    LEVEL_PATTERN,
    STAFFML_TRACKS,
    STAFFML_ZONES,
    FieldError,
    Vocabulary,
    plain,
    record_to_row,
    valid_id,
)
from staffml_dagster.specs import Specs, find_non_finite
from staffml_dagster.storage.atomic import write_atomic
from staffml_dagster.storage.parquet_io import PART_FILE, write_parquet_atomic

SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".jsonl": "jsonl"}
SUPPORTED_SCHEMA_VERSIONS = ("1.0", "1")
REPORT_FILE = "import_report.json"
IMPORT_BACKEND = "import"  # the backend of a question that names none: it came through an import


@dataclass(frozen=True)
class ImportLimits:
    max_file_bytes: int = 1 << 20  # one question file, or one line of a JSONL bundle
    max_bundle_bytes: int = 64 << 20  # a whole .json / .jsonl bundle
    max_depth: int = 10  # nested mappings/lists in one question (calc steps sit at depth 3)


@dataclass(frozen=True)
class ImportProblem:
    where: str  # file relative to the import root; ``file:line`` or ``file[i]`` inside a bundle
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class _Refused(Exception):
    """One file or bundle entry cannot be imported; the message says why."""


@dataclass
class ImportResult:
    root: Path
    rows: list[dict] = field(default_factory=list)
    errors: list[ImportProblem] = field(default_factory=list)
    files_seen: int = 0
    files_ignored: int = 0  # other extensions
    unmapped: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    unmapped_files: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    renamed: Counter = field(default_factory=Counter)  # (field, theirs, ours) -> count
    formats: Counter = field(default_factory=Counter)

    def frame(self) -> pd.DataFrame:
        columns = QUESTION_COLUMNS + IMPORT_COLUMNS
        if not self.rows:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return pd.DataFrame(self.rows, columns=columns)

    def report(self) -> dict:
        """Everything the import decided, as JSON: counts, errors, renames, unmapped values."""
        return {
            "root": str(self.root),
            "imported": len(self.rows),
            "files_seen": self.files_seen,
            "files_ignored": self.files_ignored,
            "formats": dict(self.formats),
            "errors": [{"where": e.where, "message": e.message} for e in self.errors],
            "renamed": [{"field": f, "from": a, "to": b, "count": n} for (f, a, b), n in sorted(self.renamed.items())],
            "unmapped": {
                f: {v: {"count": n, "files": self.unmapped_files[f][v]} for v, n in c.most_common()}
                for f, c in self.unmapped.items()
            },
        }

    def summary(self, files_listed: int = 3) -> str:
        lines = [
            f"imported {len(self.rows)} question(s) from {self.root} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.formats.items())) or 'no question files'}); "
            f"{len(self.errors)} error(s), {self.files_ignored} other file(s) ignored"
        ]
        if self.renamed:
            lines.append(
                "renamed: " + "; ".join(f"{f} {a} -> {b} x{n}" for (f, a, b), n in sorted(self.renamed.items()))
            )
        if self.unmapped:
            lines.append("unmapped (field left empty, source value kept in extra.source_values):")
            for fld, counts in sorted(self.unmapped.items()):
                for value, n in counts.most_common():
                    files = self.unmapped_files[fld][value]
                    more = f", +{len(files) - files_listed} more" if len(files) > files_listed else ""
                    lines.append(f"  {fld}: {value!r} x{n} ({', '.join(files[:files_listed])}{more})")
        if self.rows:
            df = self.frame()
            for column in ("track", "zone", "level"):
                counts = df[column].fillna("(unmapped)").value_counts().sort_index()
                lines.append(f"per {column}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return "\n".join(lines)


# --------------------------------------------------------------------------- safe parsing


class _LimitExceeded(yaml.composer.ComposerError):
    """The document breaks one of our limits (alias, depth), not the YAML grammar."""


def _limit(event: yaml.Event, depth: int, max_depth: int) -> None:
    if isinstance(event, yaml.AliasEvent):
        raise _LimitExceeded(None, None, "aliases (*name) are not allowed", event.start_mark)
    if depth > max_depth:
        raise _LimitExceeded(None, None, f"nesting deeper than {max_depth} levels", event.start_mark)


class _GuardedSafeLoader(yaml.SafeLoader):
    """Pure-Python fallback: ``yaml.SafeLoader`` that enforces the limits while composing."""

    max_depth = ImportLimits.max_depth

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        container = self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent)
        self._depth += container
        try:
            _limit(self.peek_event(), self._depth, self.max_depth)
            return super().compose_node(parent, index)
        finally:
            self._depth -= container


@functools.lru_cache(maxsize=8)
def _loader(max_depth: int) -> type[_GuardedSafeLoader]:
    return type("GuardedSafeLoader", (_GuardedSafeLoader,), {"max_depth": max_depth})


_C_SAFE_LOADER = getattr(yaml, "CSafeLoader", None)  # libyaml: about 15x faster


def _check_events(text: str, max_depth: int) -> None:
    """Walk the event stream (libyaml's parser keeps its own stack, no recursion) and refuse
    aliases and deep nesting before anything is constructed."""
    depth = 0
    for event in yaml.parse(text, Loader=_C_SAFE_LOADER):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        _limit(event, depth, max_depth)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, _LimitExceeded):
        return f"{problem} ({at.rstrip(': ')})"
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        return (
            f"{at}{problem.replace('could not determine a constructor for the tag', 'the tag')} is not allowed "
            "(plain YAML only, read with safe_load)"
        )
    if isinstance(exc, yaml.composer.ComposerError) and "another document" in problem:
        return f"{at}more than one YAML document in a question file"
    return f"malformed YAML at {at}{problem}"


def parse_yaml(text: str, max_depth: int) -> object:
    """Safe YAML (SafeLoader semantics: no Python tags) without aliases, at most
    ``max_depth`` nested containers; raises _Refused with the line and the reason."""
    try:
        if _C_SAFE_LOADER is not None:
            _check_events(text, max_depth)
            return yaml.load(text, Loader=_C_SAFE_LOADER)
        loader = _loader(max_depth)(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _Refused(_yaml_problem(exc)) from None
    except RecursionError:
        raise _Refused(f"nesting too deep (limit {max_depth})") from None


def _depth(value: object) -> int:
    """Nesting depth of mappings and lists, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, Mapping):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(text: str, max_depth: int) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        raise _Refused(f"nesting deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise _Refused(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _read_text(path: Path, limit: int) -> str:
    """A regular file's text, refused above ``limit`` bytes (checked before and while reading)."""
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise _Refused("not a regular file")
    if info.st_size > limit:
        raise _Refused(f"file is {info.st_size:,} bytes, above the limit of {limit:,}")
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _Refused(f"file grew above the limit of {limit:,} bytes while being read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Refused(f"not UTF-8 text (byte {exc.start})") from None


# --------------------------------------------------------------------------- discovery


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def discover(root: Path) -> tuple[list[Path], list[ImportProblem], int]:
    """Question files under ``root`` in a stable order, problems with symlinks, and the
    number of files with other extensions. Hidden folders are skipped; symlinked folders
    are never descended into; a symlinked file is read only if it resolves inside root."""
    real_root = os.path.realpath(root)
    files, problems, ignored = [], [], 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if os.path.islink(full) and not _inside(os.path.realpath(full), real_root):
                problems.append(
                    ImportProblem(
                        os.path.relpath(full, root), "symlink to a folder outside the import root; not followed"
                    )
                )
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d))
        )
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if name.startswith(".") or full.suffix.lower() not in SUFFIXES:
                ignored += 1
                continue
            if full.is_symlink() and not _inside(os.path.realpath(full), real_root):
                problems.append(
                    ImportProblem(
                        str(full.relative_to(root)), "symlink to a file outside the import root; not followed"
                    )
                )
                continue
            files.append(full)
    return files, problems, ignored


def path_hints(path: Path) -> tuple[dict[str, str], str | None]:
    """Classification carried by the folders: ``<track>/<level>/<zone>/<file>`` (legacy)
    or ``<track>/<area>/<file>`` (schema 1.0)."""
    dirs = path.parent.parts
    zones = {*STAFFML_ZONES, "quantify", "debug"}
    if (
        len(dirs) >= 3
        and dirs[-3].lower() in STAFFML_TRACKS
        and LEVEL_PATTERN.match(dirs[-2])
        and dirs[-1].lower() in zones
    ):
        return {"track": dirs[-3], "level": dirs[-2], "zone": dirs[-1]}, "legacy"
    if len(dirs) >= 2 and dirs[-2].lower() in STAFFML_TRACKS:
        return {"track": dirs[-2], "competency_area": dirs[-1]}, "tree"
    return {}, None


# --------------------------------------------------------------------------- one question


def _source_format(record: Mapping, kind: str, layout: str | None) -> str:
    if kind != "yaml":
        return f"{kind}-bundle"
    version = str(record.get("schema_version", ""))
    if version == "1.0":
        return "staffml-1.0"
    if version == "1" or layout == "legacy":
        return "staffml-legacy"
    return "yaml"


def _question(
    obj: object, where: str, kind: str, hints: dict, layout: str | None, vocab: Vocabulary, limits: ImportLimits
):
    """Validate and map one question object; raises _Refused with the reason."""
    if not isinstance(obj, Mapping):
        raise _Refused(f"expected a question (a mapping of keys), got {type(obj).__name__}")
    depth = _depth(obj)
    if depth > limits.max_depth:
        raise _Refused(f"nesting deeper than {limits.max_depth} levels ({depth})")
    infinite = find_non_finite(obj)  # before plain(), which would turn NaN into a silent null
    if infinite is not None:
        raise _Refused(
            f"{'.'.join(str(k) for k in infinite)}: not a finite number (inf or NaN); every figure must be a real value"
        )
    try:
        record = plain(obj)
    except TypeError as exc:
        raise _Refused(f"unsupported value: {exc}") from None
    if "id" not in record or record["id"] in (None, ""):
        raise _Refused("missing required key 'id'")
    if not valid_id(record["id"]):
        raise _Refused(
            f"id {str(record['id'])[:80]!r} is not a valid question id: letters, digits, '_', '.', '+', '-' only, "
            "not starting with '.' or '-', no '..', at most 160 characters"
        )
    if record.get("scenario") in (None, ""):
        raise _Refused("missing required key 'scenario'")
    version = record.get("schema_version")
    if version is not None and str(version) not in SUPPORTED_SCHEMA_VERSIONS:
        raise _Refused(f"unsupported schema_version {version!r}; this importer reads 1.0 and the legacy 1")
    try:
        mapped = record_to_row(record, vocab, hints)
    except FieldError as exc:
        raise _Refused(str(exc)) from None
    row = mapped.row
    if "backend" not in record:  # an explicit null (our own export of such a row) stays null
        row["backend"] = IMPORT_BACKEND
    row["source_format"] = _source_format(record, kind, layout)
    row["source_path"] = where
    row["unmapped"] = [f"{f}={v}" for f, v in mapped.unmapped]
    row["extra"] = json.dumps(row["extra"], ensure_ascii=False)
    return row, mapped


def _bundle_entries(path: Path, kind: str, limits: ImportLimits, rel: str) -> Iterator[tuple[str, object]]:
    """(where, parsed object or _Refused) for each entry of a bundle."""
    text = _read_text(path, limits.max_bundle_bytes)
    if kind == "json":
        data = parse_json(text, limits.max_depth + 2)
        if isinstance(data, Mapping) and isinstance(data.get("questions"), list):
            data = data["questions"]
        if not isinstance(data, list):
            raise _Refused('a JSON bundle must be a list of questions or an object with a "questions" list')
        for i, obj in enumerate(data):
            size = len(json.dumps(obj, ensure_ascii=False).encode())
            if size > limits.max_file_bytes:  # one entry is held to what one question file may weigh
                yield (
                    f"{rel}[{i}]",
                    _Refused(
                        f"entry of {size:,} bytes is above the limit of {limits.max_file_bytes:,} bytes for one "
                        "question"
                    ),
                )
                continue
            yield f"{rel}[{i}]", obj
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{rel}:{number}"
        if len(line.encode()) > limits.max_file_bytes:
            yield where, _Refused(f"line is above the limit of {limits.max_file_bytes:,} bytes")
            continue
        try:
            yield where, parse_json(line, limits.max_depth)
        except _Refused as exc:
            yield where, exc


# --------------------------------------------------------------------------- the corpus


def import_corpus(path: Path | str, specs: Specs, limits: ImportLimits | None = None) -> ImportResult:
    """Import every question under ``path`` (a folder or one file). Raises
    FileNotFoundError when the path does not exist; every other problem is an entry in
    ``result.errors`` and the rest of the corpus still imports."""
    limits = limits or ImportLimits()
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"import path {path} does not exist")
    vocab = Vocabulary.from_specs(specs)
    if path.is_dir():
        root = path.resolve()
        files, problems, ignored = discover(root)
    else:
        root = path.resolve().parent
        files, problems, ignored = ([root / path.name], [], 0) if path.suffix.lower() in SUFFIXES else ([], [], 1)
    result = ImportResult(root=root, errors=list(problems), files_seen=len(files) + ignored, files_ignored=ignored)
    first_seen: dict[str, str] = {}

    def accept(obj: object, where: str, kind: str, hints: dict, layout: str | None) -> None:
        try:
            if isinstance(obj, _Refused):
                raise obj
            row, mapped = _question(obj, where, kind, hints, layout, vocab, limits)
            if row["id"] in first_seen:
                raise _Refused(f"duplicate id {row['id']!r}, first read from {first_seen[row['id']]}")
        except _Refused as exc:
            result.errors.append(ImportProblem(where, str(exc)))
            return
        first_seen[row["id"]] = where
        result.rows.append(row)
        result.formats[row["source_format"]] += 1
        for fld, value in mapped.unmapped:
            result.unmapped[fld][value] += 1
            result.unmapped_files[fld][value].append(where)
        for rename in mapped.renamed:
            result.renamed[rename] += 1

    for file in files:
        rel = str(file.relative_to(root))
        kind = SUFFIXES[file.suffix.lower()]
        try:
            if kind == "yaml":
                obj = parse_yaml(_read_text(file, limits.max_file_bytes), limits.max_depth)
                if obj is None:
                    raise _Refused("empty file")
                hints, layout = path_hints(file)
                accept(obj, rel, kind, hints, layout)
            else:
                for where, obj in _bundle_entries(file, kind, limits, rel):
                    accept(obj, where, kind, {}, None)
        except _Refused as exc:
            result.errors.append(ImportProblem(rel, str(exc)))
        except OSError as exc:
            result.errors.append(ImportProblem(rel, f"cannot be read: {exc.strerror or exc}"))
    return result


def write_import(result: ImportResult, out_dir: Path) -> Path:
    """Write the imported rows as ``<out_dir>/part.parquet`` and the report beside it,
    each through a temp file + rename. Returns the Parquet path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / PART_FILE
    write_parquet_atomic(result.frame(), target)
    write_atomic(out_dir / REPORT_FILE, json.dumps(result.report(), indent=2, ensure_ascii=False))
    return target
