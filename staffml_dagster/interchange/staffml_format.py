"""The StaffML question format and how its fields map onto our question rows.

StaffML (the public vault in harvard-edge/cs249r_book, ``interviews/vault``) keeps one
question per YAML file. Two layouts exist:

* **schema 1.0** — ``questions/<track>/<area>/<id>.yaml`` with ``schema_version: '1.0'``;
  the file carries ``track``, ``level``, ``zone``, ``topic`` and ``competency_area``;
  ``question`` is its own key; solution, mistake and napkin math sit under ``details``.
* **legacy** — ``questions/<track>/l<N>/<zone>/<id>.yaml`` with ``schema_version: 1``;
  track, level and zone live only in the folder path and the ask is part of ``scenario``.

Bundles (``.json`` lists, ``{"questions": [...]}``, ``.jsonl``) hold the same objects,
with ``details`` nested or flattened to the top level.

Their vocabulary, as facts from ``vault/schema/enums.py`` and ``question_schema.yaml``:
tracks cloud, edge, mobile, tinyml and the cross-cutting ``global``; levels L1–L6+ (``l1``–
``l6`` in folder names); 11 zones over the skills recall, analyze, design and
*implement*. Their ``implement`` skill is our ``quantify``; zone names are mapped by name,
since a question is written to its zone's description (their compound zones pair the
skills differently from ours — e.g. their ``optimization`` is analyze + implement, ours
recall + design — but the names describe the same ask: fix a bottleneck, size a design,
compare options, turn requirements into an architecture). ``global`` has no counterpart
and is reported as unmapped, never guessed.

Everything here is plain Python over dicts; reading files safely is ``importer.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from staffml_dagster.generation.backend import QUESTION_COLUMNS
from staffml_dagster.specs import Specs

SCHEMA_VERSION = "1.0"

# --------------------------------------------------------------------------- their vocabulary

STAFFML_TRACKS = ("cloud", "edge", "mobile", "tinyml", "global")
STAFFML_ZONES = (
    "recall",
    "analyze",
    "design",
    "implement",
    "fluency",
    "diagnosis",
    "specification",
    "optimization",
    "evaluation",
    "realization",
    "mastery",
)
# their zone -> ours where the name differs; every other zone name maps to itself
ZONE_RENAMES = {"implement": "quantify"}
EXPORT_ZONE_NAMES = {ours: theirs for theirs, ours in ZONE_RENAMES.items()}
LEVEL_PATTERN = re.compile(r"^[lL]([1-6])(\+?)\Z")  # \Z: "$" would accept a final newline

# the fields of a question that live under ``details`` in their files
DETAIL_FIELDS = ("realistic_solution", "common_mistake", "napkin_math")
# columns an imported row carries besides the question columns
IMPORT_COLUMNS = ["source_format", "source_path", "extra", "unmapped"]

# ---------------------------------------------------------------------------- ids and names

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,159}\Z")  # \Z: "$" would accept "id\n"
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]{0,63}\Z")


def valid_id(value: object) -> bool:
    """An id that is safe as a file name: letters, digits, ``_ . + -``, no leading dot or
    dash, no ``..``, at most 160 characters. Anything else is refused before use."""
    return isinstance(value, str) and bool(ID_PATTERN.match(value)) and ".." not in value


def file_stem(question_id: str) -> str:
    """The file name stem for an id: the id itself when valid, otherwise a sanitized form
    with a short hash of the original so that two ids never share a file."""
    if valid_id(question_id):
        return question_id
    cleaned = re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(question_id)).replace("..", "-").strip("-.+")[:120] or "question"
    return f"{cleaned}-{hashlib.sha256(str(question_id).encode()).hexdigest()[:10]}"


def folder_name(value: object) -> str:
    """A folder for a track, level or zone; ``_unclassified`` for anything that is not a
    plain name (None, a path, a dot name)."""
    return value if isinstance(value, str) and _NAME_PART.match(value) else "_unclassified"


# ---------------------------------------------------------------------------- mapping


class FieldError(ValueError):
    """A field of a record has the wrong type or shape: names the key and the problem."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"key '{key}': {problem}")
        self.key = key


@dataclass
class MappedQuestion:
    row: dict
    unmapped: list[tuple[str, str]] = field(default_factory=list)  # (field, source value)
    renamed: list[tuple[str, str, str]] = field(default_factory=list)  # (field, theirs, ours)


@dataclass(frozen=True)
class Vocabulary:
    """Our ids, from specs/, that imported values must land on."""

    tracks: frozenset[str]
    zones: frozenset[str]
    levels: frozenset[str]
    topics: dict[str, str]  # topic -> area
    areas: frozenset[str]

    @classmethod
    def from_specs(cls, specs: Specs) -> "Vocabulary":
        return cls(
            tracks=frozenset(t.id for t in specs.tracks.tracks),
            zones=frozenset(z.id for z in specs.zones),
            levels=frozenset(lv.id for lv in specs.levels.levels),
            topics={t.id: t.area for t in specs.topics.topics},
            areas=frozenset(specs.topics.areas),
        )


def map_level(value: str, vocab: Vocabulary) -> str | None:
    if value in vocab.levels:
        return value
    m = LEVEL_PATTERN.match(value.strip())
    if not m:
        return None
    level = "L6+" if m.group(1) == "6" else f"L{m.group(1)}"
    return level if level in vocab.levels else None


def map_zone(value: str, vocab: Vocabulary) -> str | None:
    name = value.strip().lower()
    name = ZONE_RENAMES.get(name, name)
    return name if name in vocab.zones else None


def map_track(value: str, vocab: Vocabulary) -> str | None:
    name = value.strip().lower()
    return name if name in vocab.tracks else None  # `global` has no counterpart


def _string(record: Mapping, key: str) -> str | None:
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value
    raise FieldError(key, f"expected text, got {type(value).__name__}")


def _number(record: Mapping, key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(key, f"expected a number, got {type(value).__name__} {value!r:.40}")
    return float(value)


_CALC_TEXT = ("name", "expression", "unit", "label", "source", "kind")


def _calc(record: Mapping) -> list[dict] | None:
    steps = record.get("calc")
    if steps is None:
        return None
    if not isinstance(steps, list):
        raise FieldError("calc", f"expected a list of steps, got {type(steps).__name__}")
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            raise FieldError(f"calc[{i}]", f"expected a mapping, got {type(step).__name__}")
        unknown = sorted(set(step) - {*_CALC_TEXT, "value"})
        if unknown:
            raise FieldError(f"calc[{i}]", f"unknown key(s) {unknown}; a step has {', '.join((*_CALC_TEXT, 'value'))}")
        clean = {}
        for key in _CALC_TEXT:
            if key in step:
                clean[key] = _string(step, key)
        if "value" in step:
            clean["value"] = _number(step, "value")
        out.append(clean)
    return out


def _names(record: Mapping, key: str, what: str) -> list[str] | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise FieldError(key, f"expected a list of {what} (text)")
    return list(value)


def _claims(record: Mapping) -> list[dict] | None:
    claims = record.get("claims")
    if claims is None:
        return None
    if not isinstance(claims, list):
        raise FieldError("claims", f"expected a list of claims, got {type(claims).__name__}")
    out = []
    for i, claim in enumerate(claims):
        if not isinstance(claim, Mapping) or set(claim) != {"name", "expression", "holds"}:
            raise FieldError(f"claims[{i}]", "expected a mapping with exactly name, expression and holds")
        if not isinstance(claim["holds"], bool):
            raise FieldError(f"claims[{i}].holds", f"expected true or false, got {claim['holds']!r:.40}")
        out.append(
            {"name": _string(claim, "name"), "expression": _string(claim, "expression"), "holds": claim["holds"]}
        )
    return out


_NUMBER_COLUMNS = {"answer_value", "mistake_value", "cost_usd"}
_SPECIAL_COLUMNS = {"calc", "platforms", "claims", "distractors", *_NUMBER_COLUMNS}


def record_to_row(record: Mapping, vocab: Vocabulary, hints: Mapping[str, str] | None = None) -> MappedQuestion:
    """Map one StaffML question object onto a question row (QUESTION_COLUMNS + ``extra``).

    ``hints`` are classification values read from the folder path (legacy layout); the
    file's own keys win over them. Unknown keys go to ``extra`` unchanged (those under
    ``details`` stay under ``extra["details"]``); a source value that was renamed or
    could not be mapped is kept in ``extra["source_values"]``. Raises :class:`FieldError`
    for a key of the wrong type.
    """
    record = dict(record)
    details = record.pop("details", None)
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise FieldError(
            "details", f"expected a mapping of solution, mistake and napkin math, got {type(details).__name__}"
        )
    details = dict(details)
    for key in DETAIL_FIELDS:
        if key in details:
            if record.get(key) is not None and record[key] != details[key]:
                raise FieldError(key, "given both at the top level and under details, with different text")
            record[key] = details.pop(key)

    row: dict = {}
    for column in QUESTION_COLUMNS:
        if column in _SPECIAL_COLUMNS:
            continue
        row[column] = _string(record, column)
    for column in _NUMBER_COLUMNS:
        row[column] = _number(record, column)
    row["calc"] = _calc(record)
    row["platforms"] = _names(record, "platforms", "platform ids")
    row["claims"] = _claims(record)
    row["distractors"] = _names(record, "distractors", "calc step names")

    mapped = MappedQuestion(row)
    source_values: dict[str, str] = {}
    for key, value in (hints or {}).items():
        if row.get(key) is None:
            row[key] = value
    mappers = {"track": map_track, "zone": map_zone, "level": map_level}
    for key, mapper in mappers.items():
        value = row[key]
        if value is None:
            continue
        ours = mapper(value, vocab)
        if ours is None:
            mapped.unmapped.append((key, value))
            source_values[key] = value
        elif ours != value:
            mapped.renamed.append((key, value, ours))
            source_values[key] = value
        row[key] = ours
    topic = row["topic"]
    if topic is not None and topic not in vocab.topics:
        mapped.unmapped.append(("topic", topic))
        source_values["topic"] = topic
        row["topic"] = None
    area = row["competency_area"]
    if area is not None and area not in vocab.areas:
        mapped.unmapped.append(("competency_area", area))
        source_values["competency_area"] = area
        row["competency_area"] = None
    elif area is None and row["topic"] is not None:
        row["competency_area"] = vocab.topics[row["topic"]]

    extra = {k: v for k, v in record.items() if k not in QUESTION_COLUMNS}
    if details:
        extra["details"] = details
    if source_values:
        extra["source_values"] = source_values
    row["extra"] = extra
    return mapped


# ---------------------------------------------------------------------------- export


def plain(value: object) -> object:
    """A JSON/YAML-ready copy: numpy scalars and arrays to Python, NaN to None, dates to
    ISO text, tuples to lists."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy array or scalar
        return plain(value.tolist())
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    raise TypeError(f"a value of type {type(value).__name__} has no plain (JSON/YAML) form")


_HEAD = ("id", "track", "level", "zone", "topic", "competency_area", "title", "scenario", "question")
_DEFAULTS = {"status": "published", "provenance": "imported"}
_KEEP_NULL = {"backend"}  # a missing backend reads back as "import"; a null one must stay null


def row_to_record(row: Mapping) -> dict:
    """One question row as a StaffML schema-1.0 object: their keys first (zone ``quantify``
    written as their ``implement``), ``details`` nested, then our own columns (calc,
    answer, platforms, provenance of generation) as additional keys, which their schema
    tolerates, then whatever ``extra`` carried. None-valued additional keys are left out
    (reading a missing key gives None again), except ``backend``, whose absence means
    "imported"."""
    row = {k: plain(v) for k, v in row.items()}
    extra = row.pop("extra", None) or {}
    if isinstance(extra, str):
        extra = json.loads(extra) if extra.strip() else {}
    extra = dict(extra)
    extra.pop("source_values", None)  # describes an earlier import, not this question
    extra.pop("schema_version", None)  # what is written is schema 1.0, whatever was read
    for column in ("source_format", "source_path", "unmapped"):
        row.pop(column, None)
    record: dict = {"schema_version": SCHEMA_VERSION}
    for key in _HEAD:
        record[key] = row.pop(key, None)
    record["zone"] = EXPORT_ZONE_NAMES.get(record["zone"], record["zone"])
    details = {key: row.pop(key, None) for key in DETAIL_FIELDS}
    details.update(extra.pop("details", None) or {})
    record["details"] = details
    for key, default in _DEFAULTS.items():
        record[key] = extra.pop(key, default)
    for key, value in row.items():
        if value is not None or key in _KEEP_NULL:
            record[key] = value
    for key, value in extra.items():
        record.setdefault(key, value)
    return record
