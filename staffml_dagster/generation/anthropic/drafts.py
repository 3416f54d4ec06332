"""A question as Claude submits it, and what becomes of it: the ``submit_questions`` tool
whose input schema is :class:`SubmitQuestions`, the questions read out of a reply, the
question row built from one draft, and every reason that row cannot be accepted."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from staffml_dagster.core.calc import CalcStep
from staffml_dagster.core.render import napkin_math as render_napkin_math
from staffml_dagster.core.tool_schema import inline_refs
from staffml_dagster.generation.backend import CellRequest, QuestionRow
from staffml_dagster.quality.criteria import FORM_CRITERIA, row_verdicts
from staffml_dagster.specs import Specs

BACKEND_NAME = "anthropic"
GENERATOR_VERSION = "anthropic/1"
TOOL_NAME = "submit_questions"
SIGNATURE_PREFIX = "anthropic|"
EXCERPT_CHARS = 600  # of a rejected draft, in a failure record
DRAFT_CHARS = 6000  # of a rejected draft, shown back to the model in a repair prompt


# --------------------------------------------------------------------------- the tool schema


class CalcStepDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Python identifier, unique in the list")
    expression: str = Field(
        description=(
            "given: the literal quantity with unit, e.g. '3.35 TB/s'; derived: arithmetic over earlier step names"
        )
    )
    value: float = Field(description="the stated value in `unit`, 4 significant figures for derived steps")
    unit: str = Field(description="pint unit, '' for counts and ratios")
    label: str = Field(min_length=2, description="what the number is, in words")
    source: str = Field(
        default="",
        description=(
            "givens: 'specs/hardware.yaml: <platform>.<figure>', 'specs/workloads.yaml: <id>.<field>', "
            "'specs/tracks.yaml: <track>.scale_points.<axis>' or 'assumption: <why>'; derived: ''"
        ),
    )
    kind: Literal["given", "derived"]

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not name.isidentifier():
            raise ValueError(f"step name {name!r} is not a Python identifier")
        return name


class ClaimDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(
        description="snake_case name of a conclusion the text states, e.g. memory_bound, fits, option_a_wins"
    )
    expression: str = Field(description="a comparison over calc step names, e.g. 'memory_time > compute_time'")
    holds: bool = Field(description="whether the comparison holds with the calc's values")


class QuestionDraft(BaseModel):
    """One question as Claude submits it."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(min_length=5, max_length=120, description="the situation in a few words, no numbering")
    scenario: str = Field(
        min_length=40, description="the engineering situation on a named platform, with the figures the solver needs"
    )
    question: str = Field(min_length=10, description="one sentence, one interrogative, ending in a single '?'")
    realistic_solution: str = Field(min_length=40, description="names the mechanism and lands on the number")
    common_mistake: str = Field(
        min_length=40,
        description="'**The Pitfall:** ... **The Rationale:** ... **The Consequence:** ...' with the wrong number",
    )
    napkin_math: str = Field(
        min_length=10, description="the conclusion only: what the final number means for the decision"
    )
    calc: list[CalcStepDraft] = Field(
        min_length=1, description="the napkin math as re-computable steps; the last step is the answer"
    )
    answer_value: float = Field(description="equals the value of the last calc step")
    answer_unit: str = Field(description="equals the unit of the last calc step")
    mistake_value: float = Field(description="the wrong number the common mistake produces, in answer_unit")
    mistake_id: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", description="kebab-case name of the misconception")
    platforms: list[str] = Field(min_length=1, description="ids of the track's platforms the math uses")
    workload: str | None = Field(description="workload id from specs/workloads.yaml, or null")
    scale_point: str = Field(description="'<axis>=<value>' from the track's scale points, or ''")
    claims: list[ClaimDraft] = Field(
        default_factory=list,
        description=(
            "the conclusions the solution states (which option wins, fits or not, which resource binds), each as a "
            "checkable comparison; required for design, specification, realization and evaluation"
        ),
    )
    distractors: list[str] = Field(
        default_factory=list,
        description=(
            "L5 and L6+ only: calc step names the scenario states on purpose that the solution names as irrelevant"
        ),
    )


class SubmitQuestions(BaseModel):
    questions: list[QuestionDraft] = Field(min_length=1)


def tool_definition() -> dict:
    return {
        "name": TOOL_NAME,
        "description": (
            "Submit the requested interview questions. Call it exactly once with every question of the request."
        ),
        "input_schema": inline_refs(SubmitQuestions.model_json_schema()),
    }


TOOL = tool_definition()
TOOL_HASH = hashlib.sha256(json.dumps(TOOL, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- reading a reply


def extract_questions(message: Mapping) -> tuple[list | None, str | None]:
    """The raw question items of a reply's ``submit_questions`` call, or why there are none."""
    blocks = [
        b
        for b in message.get("content") or []
        if isinstance(b, Mapping) and b.get("type") == "tool_use" and b.get("name") == TOOL_NAME
    ]
    truncated = " (the reply hit max_tokens)" if message.get("stop_reason") == "max_tokens" else ""
    if not blocks:
        return None, f"the reply has no {TOOL_NAME} tool call (stop_reason {message.get('stop_reason')!r}){truncated}"
    payload = blocks[0].get("input")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            return None, f"the tool input is not valid JSON: {exc.msg} at char {exc.pos}{truncated}"
    questions = payload.get("questions") if isinstance(payload, Mapping) else None
    if isinstance(questions, str):
        try:
            questions = json.loads(questions)
        except json.JSONDecodeError as exc:
            return None, f"'questions' is a string that is not valid JSON: {exc.msg} at char {exc.pos}{truncated}"
    if not isinstance(questions, list) or not questions:
        return None, f"the tool input has no non-empty 'questions' list{truncated}"
    return questions, None


def excerpt(obj: object, limit: int | None = EXCERPT_CHARS) -> str:
    """A draft or reply as text, cut to ``limit`` characters (marked with an ellipsis); whole without one."""
    text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, default=str)
    return text if limit is None or len(text) <= limit else text[:limit] + "…"


def validation_reasons(exc: ValidationError) -> list[str]:
    """Up to six schema problems of a draft, each naming its field."""
    out = []
    for err in exc.errors()[:6]:
        where = ".".join(str(p) for p in err["loc"]) or "<question>"
        out.append(f"{where}: {err['msg']}")
    if exc.error_count() > 6:
        out.append(f"and {exc.error_count() - 6} more schema problem(s)")
    return out


# --------------------------------------------------------------------------- one draft -> one row


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def draft_signature(draft: QuestionDraft) -> str:
    """platforms | workload | scale point | title: the same draft twice in a cell is a repeat."""
    platforms = ",".join(sorted(draft.platforms))
    return f"{SIGNATURE_PREFIX}{platforms}|{draft.workload or '-'}|{draft.scale_point or '-'}|{slug(draft.title)}"


def build_row(specs: Specs, cell: CellRequest, draft: QuestionDraft, *, model: str, phash: str, cost: float) -> dict:
    """The question row of a draft (its id follows its content, like an offline row's)."""
    steps = [
        CalcStep(s.name, s.expression, float(s.value), s.unit, s.label, s.source if s.kind == "given" else "", s.kind)
        for s in draft.calc
    ]
    return QuestionRow.in_cell(
        specs,
        cell,
        title=draft.title.strip(),
        scenario=draft.scenario.strip(),
        question=draft.question.strip(),
        realistic_solution=draft.realistic_solution.strip(),
        common_mistake=draft.common_mistake.strip(),
        napkin_math=render_napkin_math(steps, draft.napkin_math.strip()),
        calc=[s.as_dict() for s in steps],
        answer_value=float(draft.answer_value),
        answer_unit=draft.answer_unit,
        mistake_value=float(draft.mistake_value),
        mistake_id=draft.mistake_id,
        platforms=list(draft.platforms),
        workload=draft.workload,
        scale_point=draft.scale_point,
        item_model="llm",
        framing=cell.zone,
        asked=steps[-1].name,
        signature=draft_signature(draft),
        claims=[c.model_dump() for c in draft.claims],
        distractors=list(draft.distractors),
        backend=BACKEND_NAME,
        generator_version=GENERATOR_VERSION,
        prompt_hash=phash[:16],
        model=model,
        cost_usd=round(cost, 6),
    ).as_dict()


def draft_problems(specs: Specs, cell: CellRequest, draft: QuestionDraft) -> list[str]:
    """What the criteria cannot see in a row: the draft's workload belongs to the cell's track,
    and no calc step name is defined twice (the row's calc would keep both)."""
    problems = []
    track_workloads = {w.id for w in specs.workloads.workloads if cell.track in w.tracks}
    if draft.workload is not None and draft.workload not in track_workloads:
        problems.append(f"workload {draft.workload!r} is not a {cell.track} workload in specs/workloads.yaml")
    names = [s.name for s in draft.calc]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"calc step name(s) defined twice: {dupes}")
    return problems


def row_problems(specs: Specs, cell: CellRequest, draft: QuestionDraft, row: Mapping) -> list[str]:
    """Every reason the row built from ``draft`` cannot be accepted (empty = accepted): the
    draft's own problems, then each failed criterion of its form with its reasons, judged by
    :func:`~staffml_dagster.quality.criteria.row_verdicts` as validation judges it."""
    verdicts = row_verdicts(row, specs, FORM_CRITERIA)
    return draft_problems(specs, cell, draft) + [
        f"{v.criterion}: {v.reason}" for v in verdicts.values() if not v.passed
    ]
