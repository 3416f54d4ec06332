"""What the backend keeps on disk under its ``cache_dir``: one JSON file per reply, keyed by
sha256(model, prompt hash, sample, tool schema), so regenerating a cell with the same prompts
makes no API call; and one manifest per Message Batch (its id, the cells it asked for, each
request's cache key), so a batch is collected by a later process without resubmitting it.

Only reply bodies, usage and cost are stored — never request headers or credentials. Every
file is written whole or not at all (:func:`write_json_atomic`)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from staffml_dagster.generation.anthropic.drafts import TOOL_HASH
from staffml_dagster.generation.anthropic.errors import AnthropicBackendError
from staffml_dagster.generation.backend import CellRequest
from staffml_dagster.storage.atomic import write_atomic

logger = logging.getLogger(__name__)

BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def write_json_atomic(path: Path, obj: object) -> None:
    """``obj`` as JSON at ``path``, written whole or not at all (:func:`storage.atomic.write_atomic`)."""
    write_atomic(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str))


def cache_key(model: str, phash: str, sample: str) -> str:
    """sha256 of (model, prompt hash, sample index) — plus the tool schema's hash, so a
    schema change never serves replies written for the old schema."""
    return hashlib.sha256(json.dumps([model, phash, str(sample), TOOL_HASH]).encode()).hexdigest()


class ResponseCache:
    """One JSON file per response: ``<dir>/responses/<key[:2]>/<key>.json``."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def path(self, key: str) -> Path:
        return self.dir / "responses" / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            logger.warning("anthropic cache: unreadable entry %s is ignored and will be rewritten", path.name)
            return None
        return entry if isinstance(entry, dict) and isinstance(entry.get("message"), dict) else None

    def put(self, key: str, entry: dict) -> None:
        write_json_atomic(self.path(key), entry)


# --------------------------------------------------------------------------- batch manifests


def cell_key(cell: CellRequest) -> str:
    return f"{cell.topic}|{cell.track}|{cell.zone}|{cell.level}"


def cell_json(cell: CellRequest) -> dict:
    return {
        "topic": cell.topic,
        "track": cell.track,
        "zone": cell.zone,
        "level": cell.level,
        "target": cell.target,
        "seed": cell.seed,
        "accepted_signatures": sorted(cell.accepted_signatures),
    }


def cell_from_json(d: Mapping) -> CellRequest:
    return CellRequest(
        d["topic"],
        d["track"],
        d["zone"],
        d["level"],
        int(d["target"]),
        int(d["seed"]),
        frozenset(d.get("accepted_signatures", [])),
    )


class BatchManifests:
    """One JSON manifest per submitted batch: ``<dir>/<batch id>.json``."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def path(self, batch_id: str) -> Path:
        if not BATCH_ID.match(batch_id):
            raise ValueError(f"not a batch id: {batch_id[:40]!r}")
        return self.dir / f"{batch_id}.json"

    def save(self, manifest: dict) -> None:
        write_json_atomic(self.path(str(manifest["batch_id"])), manifest)

    def load(self, batch_id: str) -> dict:
        path = self.path(batch_id)
        if not path.is_file():
            raise AnthropicBackendError(
                f"no persisted batch {batch_id} under {self.dir}; was it submitted with this cache_dir?"
            )
        return json.loads(path.read_text())

    def pending(self) -> list[str]:
        """Ids of the batches not collected yet, oldest first; an unreadable manifest is skipped with a warning."""
        if not self.dir.is_dir():
            return []
        pending = []
        for path in self.dir.glob("*.json"):
            try:
                manifest = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                logger.warning("anthropic batch manifest %s is unreadable; skipped", path.name)
                continue
            if not manifest.get("collected"):
                pending.append((manifest.get("created_at", ""), manifest["batch_id"]))
        return [b for _, b in sorted(pending)]
