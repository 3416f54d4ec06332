"""The generator protocol every backend implements, and the question row it produces."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Protocol

from staffml_dagster.specs import Specs


@dataclass(frozen=True)
class CellRequest:
    """Ask a backend for up to ``target`` distinct questions in one cell."""

    topic: str
    track: str
    zone: str
    level: str
    target: int
    seed: int
    accepted_signatures: frozenset[str] = field(default_factory=frozenset)


class GeneratorBackend(Protocol):
    name: str
    version: str
    failures: list[dict]  # what it gave up on in this process: {"cell", "reason", "raw"} each

    def generate(self, specs: Specs, cell: CellRequest) -> list[dict]:
        """Return question rows (see QUESTION_COLUMNS) for the cell, at most ``cell.target``."""
        ...

    def run_summary(self) -> dict | None:
        """What generating cost in this process (calls, spend, tokens, failures) for the run's
        metadata; None for a backend with nothing to report (the offline one)."""
        ...


@dataclass(frozen=True)
class QuestionRow:
    """One question as a backend produces it. Its fields are the columns of ``questions`` (and,
    before their verdicts, of ``validated_questions`` and ``corpus``), in order."""

    id: str
    topic: str
    track: str
    zone: str
    level: str
    competency_area: str
    title: str
    scenario: str
    question: str
    realistic_solution: str
    common_mistake: str
    napkin_math: str
    calc: list[dict]
    answer_value: float
    answer_unit: str
    mistake_value: float | None
    mistake_id: str | None
    platforms: list[str]
    workload: str | None
    scale_point: str | None
    item_model: str | None
    framing: str | None
    asked: str | None
    signature: str | None
    claims: list[dict] | None
    distractors: list[str] | None
    backend: str
    model: str | None
    generator_version: str
    prompt_hash: str
    cost_usd: float
    spec_version: str
    created_at: str

    @classmethod
    def in_cell(cls, specs: Specs, cell: CellRequest, **content) -> QuestionRow:
        """A question of ``cell`` from its content (every other field): its id is derived from
        what makes it this question (zone, level, title, scenario, question, answer, reasoning),
        so the same content always gets the same id; topic, track, zone and level come from the
        cell, the competency area and spec version from specs; it is created now."""
        key = {"zone": cell.zone, "level": cell.level, **{k: content[k] for k in ID_FIELDS}}
        return cls(
            id=content_id(cell.track, cell.topic, key),
            topic=cell.topic,
            track=cell.track,
            zone=cell.zone,
            level=cell.level,
            competency_area=specs.topic_by_id[cell.topic].area,
            spec_version=specs.version,
            created_at=now_iso(),
            **content,
        )

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in QUESTION_COLUMNS}


QUESTION_COLUMNS = [f.name for f in fields(QuestionRow)]
ID_FIELDS = ("title", "scenario", "question", "answer_value", "answer_unit", "signature")  # with zone and level


def content_id(track: str, topic: str, payload: dict) -> str:
    """Content-addressed id: the same question content always gets the same id."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
    return f"{track}-{topic}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
