"""The offline backend: automatic item generation from item models.

For one cell it enumerates (item model, platform, workload, scale point, asked step)
candidates in a seeded order, frames each for the cell's zone and level, and keeps the
first ones whose solution-path signature is new. Everything is computed from specs/;
the same seed and spec version give the same questions and the same ids.
"""

from __future__ import annotations

import hashlib
import random
from itertools import product

from staffml_dagster.generation.backend import CellRequest, content_id, now_iso
from staffml_dagster.generation.calc import Calc
from staffml_dagster.generation.framings import Draft, Framer, build_calc, topic_item_models
from staffml_dagster.generation.item_model import ItemModel, Setting
from staffml_dagster.generation.item_models import REGISTRY
from staffml_dagster.specs import Specs

GENERATOR_VERSION = "item-models/2"
ASK_ZONES = {"quantify", "fluency", "diagnosis", "optimization", "analyze", "evaluation"}


def models_for(topic: str, track: str) -> list[ItemModel]:
    names = topic_item_models(topic)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise KeyError(f"assets/topics.yaml: topic {topic!r} names unknown item model(s) {unknown}")
    return [REGISTRY[n] for n in names if track in REGISTRY[n].tracks]


def _settings(specs: Specs, model: ItemModel, topic: str, track: str) -> list[tuple]:
    platforms = specs.platforms_for(track)
    if model.workload_families is None:
        workloads = [None]
    else:
        workloads = [w for w in specs.workloads_for(topic, track) if w.family in model.workload_families]
        if not workloads:  # the topic's own families do not fit this model: use the model's families on the track
            workloads = [w for w in specs.workloads.workloads if w.family in model.workload_families and track in w.tracks]
    axes = specs.track_by_id[track].scale_points
    topic_axes = [a for a in specs.topic_by_id[topic].scale_axes if a in model.scale_axes] or list(model.scale_axes)
    scales = [(a, v) for a in topic_axes for v in axes.get(a, [])] or [("devices", 1.0)]
    return list(product(platforms, workloads, scales))


def _level_asks(model: ItemModel, calc: Calc, lo: int, hi: int) -> list[str]:
    counts = {}
    for ask in model.asks:
        try:
            counts[ask] = sum(1 for s in calc.closure(ask) if s.kind == "derived")
        except KeyError:
            continue
    if not counts:
        return []
    fitting = [a for a, d in counts.items() if lo <= d <= hi]
    if fitting:
        return fitting
    best = min(abs(d - lo) if d < lo else abs(d - hi) for d in counts.values())
    return [a for a, d in counts.items() if (abs(d - lo) if d < lo else abs(d - hi)) == best]


def signature(draft: Draft) -> str:
    """Solution path (item model x framing x asked step) and the parameters the math uses."""
    sources = " ".join(s.source for s in draft.calc)
    platforms = ",".join(draft.platforms) if "specs/hardware.yaml" in sources else "-"
    workload = draft.workload if draft.workload and "specs/workloads.yaml" in sources else "-"
    scale = draft.scale_point if "specs/tracks.yaml" in sources else "-"
    return f"{draft.item_model}|{draft.framing}|{draft.asked}|{platforms}|{workload}|{scale}"


class ItemModelGenerator:
    """GeneratorBackend producing questions from item models, offline and deterministic."""

    name = "item-models"
    version = GENERATOR_VERSION

    def drafts(self, specs: Specs, cell: CellRequest):
        """Distinct drafts for the cell, in the seeded order, without a count limit."""
        level = specs.level_by_id[cell.level]
        lo, hi = level.steps
        rng = random.Random(f"{cell.seed}|{cell.topic}|{cell.track}|{cell.zone}|{cell.level}")
        topic = specs.topic_by_id[cell.topic]
        candidates = [(m, *setting) for m in models_for(cell.topic, cell.track) for setting in _settings(specs, m, cell.topic, cell.track)]
        rng.shuffle(candidates)
        seen = set(cell.accepted_signatures)
        platforms = specs.platforms_for(cell.track)
        for i, (model, platform, workload, (axis, value)) in enumerate(candidates):
            crng = random.Random(f"{cell.seed}|{cell.topic}|{cell.track}|{cell.zone}|{cell.level}|{i}")
            s = Setting(specs, cell.topic, cell.track, platform, workload, axis, value, crng.choice(topic.failure_modes))
            if not model.accepts(s):
                continue
            other = None
            if cell.zone == "evaluation":
                others = [p for p in platforms if p.id != platform.id]
                if not others:
                    continue
                other = Setting(specs, cell.topic, cell.track, crng.choice(others), workload, axis, value, s.failure_mode)
                if not model.accepts(other):
                    continue
            try:
                base = build_calc(model, s)
            except ValueError:
                continue  # the platform lacks a figure this model needs
            asks = _level_asks(model, base, lo, hi) if cell.zone in ASK_ZONES else [model.asks[0] if model.asks else ""]
            crng.shuffle(asks)
            for ask in asks:
                framer = Framer(model, s, cell.zone, level, random.Random(f"{crng.random()}"), other)
                try:
                    draft = framer.frame(ask)
                except (ValueError, KeyError):  # this framing does not apply to this setting
                    draft = None
                if draft is None:
                    continue
                draft.signature = signature(draft)
                if draft.signature in seen:
                    continue
                seen.add(draft.signature)
                yield draft
                break

    def generate(self, specs: Specs, cell: CellRequest) -> list[dict]:
        rows = []
        for draft in self.drafts(specs, cell):
            if len(rows) >= cell.target:
                break
            rows.append(self.row(specs, cell, draft))
        return rows

    def row(self, specs: Specs, cell: CellRequest, d: Draft) -> dict:
        topic = specs.topic_by_id[cell.topic]
        content = {
            "zone": cell.zone, "level": cell.level, "title": d.title, "scenario": d.scenario, "question": d.question,
            "answer_value": d.answer_value, "answer_unit": d.answer_unit, "signature": d.signature,
        }
        prompt_hash = hashlib.sha256(f"{self.version}|{specs.version}|{d.signature}".encode()).hexdigest()[:16]
        return {
            "id": content_id(cell.track, cell.topic, content),
            "topic": cell.topic,
            "track": cell.track,
            "zone": cell.zone,
            "level": cell.level,
            "competency_area": topic.area,
            "title": d.title,
            "scenario": d.scenario,
            "question": d.question,
            "realistic_solution": d.realistic_solution,
            "common_mistake": d.common_mistake,
            "napkin_math": d.napkin_math,
            "calc": [s.as_dict() for s in d.calc],
            "answer_value": float(d.answer_value),
            "answer_unit": d.answer_unit,
            "mistake_value": float(d.mistake_value),
            "mistake_id": d.mistake_id,
            "platforms": list(d.platforms),
            "workload": d.workload,
            "scale_point": d.scale_point,
            "item_model": d.item_model,
            "framing": d.framing,
            "asked": d.asked,
            "signature": d.signature,
            "backend": self.name,
            "model": None,
            "generator_version": self.version,
            "prompt_hash": prompt_hash,
            "cost_usd": 0.0,
            "spec_version": specs.version,
            "created_at": now_iso(),
        }
