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
from dataclasses import dataclass

from staffml_dagster.core.item_model import Draft, assigned_topic, draft, models_for_topic, plan
from staffml_dagster.generation.backend import CellRequest, QuestionRow
from staffml_dagster.specs import Specs

GENERATOR_VERSION = "item-models/3"
_CHECKED: set[tuple[str, str, str]] = set()
_SPACES: dict[tuple, tuple[dict, int, tuple]] = {}  # a cell's enumeration, kept for the rest of the process


def _checked(specs: Specs, models: list):
    """Item models whose references to specs/ (topics, zones, levels, families) resolve: a
    misspelt topic in a YAML file fails with the file's name, never yields silently nothing."""
    for model in models:
        key = (specs.version, model.id, model.version)
        if key not in _CHECKED:
            model.check_against(specs)
            _CHECKED.add(key)
    return models


@dataclass(frozen=True)
class CellSpace:
    """What enumerating a cell found: its distinct reasonings and the settings planned."""

    distinct: int
    settings: int


class ItemModelGenerator:
    """GeneratorBackend producing questions from item models, offline and deterministic."""

    name = "item-models"
    version = GENERATOR_VERSION

    def __init__(self):
        self.failures: list[dict] = []  # no call to fail or answer to reject: it never gives up on a row

    def run_summary(self) -> None:
        """Offline generation costs nothing and calls nothing: no summary."""
        return None

    def _reasonings(self, specs: Specs, cell: CellRequest) -> tuple[dict[str, tuple], int, random.Random]:
        """Every distinct reasoning the cell's native designs reach over all their settings, each
        with the first setting (in the seeded order) that reaches it; how many settings were
        planned to find them; and the seeded generator, to order them."""
        models = _checked(specs, models_for_topic(cell.topic, cell.track))
        key = (
            specs.version,
            cell.topic,
            cell.track,
            cell.zone,
            cell.level,
            cell.seed,
            cell.accepted_signatures,
            tuple((m.id, m.version) for m in models),
        )
        if key in _SPACES:  # measured by cell_capacity earlier in this process: the same enumeration
            first, planned, state = _SPACES[key]
            rng = random.Random()
            rng.setstate(state)
            return dict(first), planned, rng
        rng = random.Random(f"{cell.seed}|{cell.topic}|{cell.track}|{cell.zone}|{cell.level}")
        first: dict[str, tuple] = {}
        planned = 0
        for model in models:
            for design in model.designs_for(cell.topic, cell.track, cell.zone, cell.level):
                settings = model.settings(specs, cell.track)
                rng.shuffle(settings)
                for s in settings:
                    if assigned_topic(model, design, s) != cell.topic:
                        continue
                    planned += 1
                    p = plan(model, specs, design, s)
                    if p is not None and p.reasoning not in cell.accepted_signatures:
                        first.setdefault(p.reasoning, (model, design, s, p))
        if len(_SPACES) > 20_000:
            _SPACES.clear()
        _SPACES[key] = (dict(first), planned, rng.getstate())
        return first, planned, rng

    def space(self, specs: Specs, cell: CellRequest) -> CellSpace:
        """The cell's capacity, counted exactly: the generator's whole space is enumerable, so
        its distinct reasonings are measured, not estimated from a sample."""
        first, planned, _ = self._reasonings(specs, cell)
        return CellSpace(distinct=len(first), settings=planned)

    def drafts(self, specs: Specs, cell: CellRequest):
        """One draft per distinct reasoning of the cell, in the seeded order.

        Two questions are the same if a candidate would solve them the same way: the same design
        whose claims come out the same (memory- vs compute-bound, fits or not, which option wins)
        with other numbers is not a new question. So a cell holds at most one question per
        (item model, design, outcome), and its offline capacity is the number of those."""
        first, _, rng = self._reasonings(specs, cell)
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
        prompt_hash = hashlib.sha256(f"{self.version}|{specs.version}|{d.signature}".encode()).hexdigest()[
            :16
        ]  # setting included
        s = d.setting
        return QuestionRow.in_cell(
            specs,
            cell,
            title=d.title,
            scenario=d.scenario,
            question=d.question,
            realistic_solution=d.realistic_solution,
            common_mistake=d.common_mistake,
            napkin_math=d.napkin_math,
            calc=[st.as_dict() for st in d.calc],
            answer_value=float(d.answer.value),
            answer_unit=d.answer.unit,
            mistake_value=float(d.mistake_value),
            mistake_id=d.mistake_id,
            platforms=[p.id for p in (s.platform, s.platform_b) if p is not None],
            workload=s.workload.id if s.workload else None,
            scale_point=s.scale_point,
            item_model=d.item_model,
            framing=d.design,
            asked=d.answer.name,
            signature=d.reasoning,
            claims=d.claims,
            distractors=d.distractors,
            backend=self.name,
            model=None,
            generator_version=self.version,
            prompt_hash=prompt_hash,
            cost_usd=0.0,
        ).as_dict()
