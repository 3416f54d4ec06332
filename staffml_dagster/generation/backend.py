"""The generator protocol every backend implements, and the question row it produces."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from staffml_dagster.specs import Specs

QUESTION_COLUMNS = [
    "id", "topic", "track", "zone", "level", "competency_area", "title", "scenario", "question",
    "realistic_solution", "common_mistake", "napkin_math", "calc", "answer_value", "answer_unit",
    "mistake_value", "mistake_id", "platforms", "workload", "scale_point", "item_model", "framing",
    "asked", "signature", "claims", "distractors", "backend", "model", "generator_version", "prompt_hash", "cost_usd", "spec_version", "created_at",
]


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


def content_id(track: str, topic: str, payload: dict) -> str:
    """Content-addressed id: the same question content always gets the same id."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=True, default=str)
    return f"{track}-{topic}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
