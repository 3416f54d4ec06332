"""The offline backend: questions from item models (automatic item generation).

For one cell (topic, track, zone, level) it takes the designs written for that zone and
level in the item models native to the topic, ranges them over their settings in a seeded
order, and keeps one question per distinct reasoning: (item model, design, outcome of its
claims). A row's ``signature`` is that reasoning; the setting it was rendered at is in
``platforms``, ``workload`` and ``scale_point``. Everything is computed from specs/; the same
seed and specs give the same questions and ids.
"""

from __future__ import annotations

import hashlib
import random

from staffml_dagster.generation.backend import CellRequest, content_id, now_iso
from staffml_dagster.generation.item_model import Draft, assigned_topic, draft, models_for_topic, plan
from staffml_dagster.specs import Specs

GENERATOR_VERSION = "item-models/3"
_CHECKED: set[tuple[str, str, str]] = set()


def _checked(specs: Specs, models: list):
    """Item models whose references to specs/ (topics, zones, levels, families) resolve: a
    misspelt topic in a YAML file fails with the file's name, never yields silently nothing."""
    for model in models:
        key = (specs.version, model.id, model.version)
        if key not in _CHECKED:
            model.check_against(specs)
            _CHECKED.add(key)
    return models




class ItemModelGenerator:
    """GeneratorBackend producing questions from item models, offline and deterministic."""

    name = "item-models"
    version = GENERATOR_VERSION

    def drafts(self, specs: Specs, cell: CellRequest):
        """One draft per distinct reasoning of the cell, in the seeded order.

        Two questions are the same if a candidate would solve them the same way: the same design
        whose claims come out the same (memory- vs compute-bound, fits or not, which option wins)
        with other numbers is not a new question. So a cell holds at most one question per
        (item model, design, outcome), and its offline capacity is the number of those."""
        rng = random.Random(f"{cell.seed}|{cell.topic}|{cell.track}|{cell.zone}|{cell.level}")
        first: dict[str, tuple] = {}
        for model in _checked(specs, models_for_topic(cell.topic, cell.track)):
            for design in model.designs_for(cell.topic, cell.track, cell.zone, cell.level):
                settings = model.settings(specs, cell.track)
                rng.shuffle(settings)
                for s in settings:
                    if assigned_topic(model, design, s) != cell.topic:
                        continue
                    p = plan(model, specs, design, s)
                    if p is not None and p.reasoning not in cell.accepted_signatures:
                        first.setdefault(p.reasoning, (model, design, s, p))
        order = list(first)
        rng.shuffle(order)
        for key in order:
            model, design, s, p = first[key]
            yield draft(model, specs, design, s, cell.topic, p)

    def generate(self, specs: Specs, cell: CellRequest) -> list[dict]:
        rows = []
        for d in self.drafts(specs, cell):
            if len(rows) >= cell.target:
                break
            rows.append(self.row(specs, cell, d))
        return rows

    def row(self, specs: Specs, cell: CellRequest, d: Draft) -> dict:
        topic = specs.topic_by_id[cell.topic]
        content = {
            "zone": cell.zone, "level": cell.level, "title": d.title, "scenario": d.scenario, "question": d.question,
            "answer_value": d.answer.value, "answer_unit": d.answer.unit, "signature": d.reasoning,
        }
        prompt_hash = hashlib.sha256(f"{self.version}|{specs.version}|{d.signature}".encode()).hexdigest()[:16]  # setting included
        s = d.setting
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
            "calc": [st.as_dict() for st in d.calc],
            "answer_value": float(d.answer.value),
            "answer_unit": d.answer.unit,
            "mistake_value": float(d.mistake_value),
            "mistake_id": d.mistake_id,
            "platforms": [p.id for p in (s.platform, s.platform_b) if p is not None],
            "workload": s.workload.id if s.workload else None,
            "scale_point": s.scale_point,
            "item_model": d.item_model,
            "framing": d.design,
            "asked": d.answer.name,
            "signature": d.reasoning,
            "claims": d.claims,
            "distractors": d.distractors,
            "backend": self.name,
            "model": None,
            "generator_version": self.version,
            "prompt_hash": prompt_hash,
            "cost_usd": 0.0,
            "spec_version": specs.version,
            "created_at": now_iso(),
        }
