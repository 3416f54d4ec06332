"""The anthropic backend: Claude writes the questions, code checks them.

One call asks Claude for several questions of one cell (topic, track, zone, level) through
a forced ``submit_questions`` tool whose input schema is :class:`SubmitQuestions`. The
system prompt has two blocks built from ``assets/prompts/``: a static block per track
(role, the five quality criteria, output rules, the track's hardware table), marked for
prompt caching, and a per-cell block (topic, zone, level, capacity dimensions, titles to
avoid, exemplars as delimited data: corpus questions reviews rated staff-worthy, see
``quality/exemplars.py``).

Every returned question is parsed and checked on its own (pydantic, platforms of the
track, calc recomputes, last step is the answer, the mistake differs, and the quality
criteria). A question that fails is sent back alone with a focused repair prompt, up to
``max_retries_per_row`` times, and is otherwise recorded in :attr:`last_failures` (and
the run-long :attr:`failures`) with its reason: nothing is dropped silently.

Responses are cached on disk under ``cache_dir`` keyed by sha256(model, prompt hash,
sample index), so regenerating a cell with the same prompts makes no API call. Cost comes
from each response's ``usage`` and the price table in ``specs/models.yaml``; a run stops
with :class:`BudgetExceeded` before any call once ``budget_usd`` is spent. Backfills go
through the Message Batches API (:meth:`AnthropicGenerator.submit_batch`,
:meth:`~AnthropicGenerator.collect_batch`, :meth:`~AnthropicGenerator.resume_batches`);
batch results land in the same response cache, at the batch discount.

The API key is read from ``ANTHROPIC_API_KEY`` once, handed to the SDK client, and never
stored on this object, logged, hashed, cached or put into an exception message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from staffml_dagster.core.calc import CalcStep, recompute
from staffml_dagster.core.render import napkin_math as render_napkin_math
from staffml_dagster.core.tool_schema import inline_refs
from staffml_dagster.generation.backend import CellRequest, content_id, now_iso
from staffml_dagster.paths import assets_dir, data_dir
from staffml_dagster.quality import criteria
from staffml_dagster.specs import Figure, Platform, SpecError, Specs, default_specs_dir, load_file

logger = logging.getLogger(__name__)

GENERATOR_VERSION = "anthropic/1"
TOOL_NAME = "submit_questions"
KEY_ENV = "ANTHROPIC_API_KEY"
MISSING_KEY_MESSAGE = (
    "ANTHROPIC_API_KEY is not set; export it or choose the offline backend (STAFFML_GENERATOR=item-models)"
)
SIGNATURE_PREFIX = "anthropic|"
MODELS_FILE = "models.yaml"
RETRY_STATUS = frozenset({408, 409, 429})  # and every 5xx, 529 (overloaded) included
MAX_NONSTREAMING_TOKENS = 20_000  # the SDK refuses non-streaming calls it expects to exceed 10 minutes
MAX_BATCH_REQUESTS = 100_000
EXCERPT_CHARS = 600


# --------------------------------------------------------------------------- errors


class AnthropicBackendError(RuntimeError):
    """Base class of this backend's own errors (never carries the API key)."""


class MissingAPIKey(AnthropicBackendError):
    pass


class BudgetExceeded(AnthropicBackendError):
    pass


class BatchTimeout(AnthropicBackendError):
    pass


# --------------------------------------------------------------------------- price table (specs/models.yaml)


class ModelPrice(BaseModel):
    """USD per ``per_tokens`` tokens for one model, and how to ask it for a tool call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=3)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_read: float = Field(ge=0)
    forced_tool_choice: bool = True
    thinking: Literal["omit", "disabled"] = "omit"
    note: str | None = None


class ModelsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=10, description="the pricing page the numbers come from")
    currency: Literal["USD"]
    per_tokens: int = Field(gt=0)
    batch_discount: float = Field(gt=0, le=1, description="multiplier on every token price for Message Batches")
    default_model: str
    models: dict[str, ModelPrice] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_priced(self) -> "ModelsSpec":
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} has no entry under models ({', '.join(self.models)})")
        return self

    def price(self, model: str) -> ModelPrice:
        if model not in self.models:
            raise SpecError(
                MODELS_FILE, f"models.{model}",
                f"no price for this model; add input, output, cache_write_5m and cache_read (USD per MTok, from {self.source.split(' ')[0]}) "
                f"or choose one of {', '.join(sorted(self.models))}",
            )
        return self.models[model]


def load_models(path: Path | str | None = None) -> ModelsSpec:
    """Load ``specs/models.yaml`` (yaml.safe_load + pydantic); errors name the file and key."""
    path = Path(path) if path else default_specs_dir() / MODELS_FILE
    return load_file(path, ModelsSpec)  # raises SpecError("models.yaml", key, why)


def usage_dict(usage: Any) -> dict[str, int]:
    """The four billed token counts of a response's ``usage`` (missing ones are 0)."""
    if usage is None:
        return {k: 0 for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    get = usage.get if isinstance(usage, Mapping) else (lambda k, d=None: getattr(usage, k, d))
    return {k: int(get(k, 0) or 0) for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}


def cost_usd(price: ModelPrice, usage: Any, per_tokens: int = 1_000_000, discount: float = 1.0) -> float:
    """USD for one response: every token category at its price, times the batch discount if any."""
    u = usage_dict(usage)
    total = (
        u["input_tokens"] * price.input
        + u["output_tokens"] * price.output
        + u["cache_creation_input_tokens"] * price.cache_write_5m
        + u["cache_read_input_tokens"] * price.cache_read
    )
    return total / per_tokens * discount


# --------------------------------------------------------------------------- structured output


class CalcStepDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="Python identifier, unique in the list")
    expression: str = Field(description="given: the literal quantity with unit, e.g. '3.35 TB/s'; derived: arithmetic over earlier step names")
    value: float = Field(description="the stated value in `unit`, 4 significant figures for derived steps")
    unit: str = Field(description="pint unit, '' for counts and ratios")
    label: str = Field(min_length=2, description="what the number is, in words")
    source: str = Field(default="", description="givens: 'specs/hardware.yaml: <platform>.<figure>', 'specs/workloads.yaml: <id>.<field>', 'specs/tracks.yaml: <track>.scale_points.<axis>' or 'assumption: <why>'; derived: ''")
    kind: Literal["given", "derived"]

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not name.isidentifier():
            raise ValueError(f"step name {name!r} is not a Python identifier")
        return name


class ClaimDraft(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(description="snake_case name of a conclusion the text states, e.g. memory_bound, fits, option_a_wins")
    expression: str = Field(description="a comparison over calc step names, e.g. 'memory_time > compute_time'")
    holds: bool = Field(description="whether the comparison holds with the calc's values")


class QuestionDraft(BaseModel):
    """One question as Claude submits it."""

    model_config = ConfigDict(extra="ignore")

    title: str = Field(min_length=5, max_length=120, description="the situation in a few words, no numbering")
    scenario: str = Field(min_length=40, description="the engineering situation on a named platform, with the figures the solver needs")
    question: str = Field(min_length=10, description="one sentence, one interrogative, ending in a single '?'")
    realistic_solution: str = Field(min_length=40, description="names the mechanism and lands on the number")
    common_mistake: str = Field(min_length=40, description="'**The Pitfall:** ... **The Rationale:** ... **The Consequence:** ...' with the wrong number")
    napkin_math: str = Field(min_length=10, description="the conclusion only: what the final number means for the decision")
    calc: list[CalcStepDraft] = Field(min_length=1, description="the napkin math as re-computable steps; the last step is the answer")
    answer_value: float = Field(description="equals the value of the last calc step")
    answer_unit: str = Field(description="equals the unit of the last calc step")
    mistake_value: float = Field(description="the wrong number the common mistake produces, in answer_unit")
    mistake_id: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", description="kebab-case name of the misconception")
    platforms: list[str] = Field(min_length=1, description="ids of the track's platforms the math uses")
    workload: str | None = Field(description="workload id from specs/workloads.yaml, or null")
    scale_point: str = Field(description="'<axis>=<value>' from the track's scale points, or ''")
    claims: list[ClaimDraft] = Field(default_factory=list, description="the conclusions the solution states (which option wins, fits or not, which resource binds), each as a checkable comparison; required for design, specification, realization and evaluation")
    distractors: list[str] = Field(default_factory=list, description="L5 and L6+ only: calc step names the scenario states on purpose that the solution names as irrelevant")


class SubmitQuestions(BaseModel):
    questions: list[QuestionDraft] = Field(min_length=1)


def tool_definition() -> dict:
    return {
        "name": TOOL_NAME,
        "description": "Submit the requested interview questions. Call it exactly once with every question of the request.",
        "input_schema": inline_refs(SubmitQuestions.model_json_schema()),
    }


TOOL = tool_definition()
TOOL_HASH = hashlib.sha256(json.dumps(TOOL, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- prompts

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def load_template(name: str) -> str:
    path = assets_dir() / "prompts" / name
    if not path.is_file():
        raise FileNotFoundError(f"prompt template assets/prompts/{name} not found at {path}")
    return path.read_text()


def fill(template: str, values: Mapping[str, object], name: str = "template") -> str:
    """Replace ``{placeholder}`` names; an unknown placeholder is an error naming the template."""

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise KeyError(f"assets/prompts/{name}: placeholder {{{key}}} has no value")
        return str(values[key])

    return _PLACEHOLDER.sub(sub, template)


def _fig(f: Figure | None) -> str:
    return "" if f is None else f"{f.value:g} {f.unit}".strip()


def _platform_line(p: Platform) -> str:
    compute = ", ".join(
        f"{prec} {_fig(fig)}" + (f" [{fig.note}]" if fig.note else "") for prec, fig in p.compute.items()
    )
    parts = [
        f"memory {_fig(p.memory)} {p.memory_kind} (`{p.id}.memory`)",
        (f"memory bandwidth {_fig(p.memory_bandwidth)} (`{p.id}.memory_bandwidth`)" if p.memory_bandwidth
         else "no published memory bandwidth (weights in on-chip SRAM; the host link is its interconnect)"),
        f"peak compute per precision (`{p.id}.compute.<precision>`): {compute}; default precision {p.default_precision}",
        f"power {_fig(p.power)} (`{p.id}.power`)",
    ]
    for attr in ("idle_power", "clock", "flash"):
        fig = getattr(p, attr)
        if fig is not None:
            parts.append(f"{attr.replace('_', ' ')} {_fig(fig)} (`{p.id}.{attr}`)")
    if p.interconnect:
        parts.append(f"interconnect {p.interconnect}")
    return f"- **`{p.id}`** — {p.name} ({p.vendor} {p.kind}): " + "; ".join(parts) + "."


def hardware_block(specs: Specs, track: str) -> str:
    """The track's hardware figures with units, as the static prompt lists them."""
    lines = ["## Platforms", ""]
    lines += [_platform_line(p) for p in specs.platforms_for(track)]
    links = [i for i in specs.hardware.interconnects if track in i.tracks]
    if links:
        lines += ["", "## Links (cite as `specs/hardware.yaml: interconnects.<id>.bandwidth` or `.latency`)", ""]
        for i in links:
            lat = f", latency {_fig(i.latency)}" if i.latency else ""
            note = f" [{i.bandwidth.note}]" if i.bandwidth.note else ""
            lines.append(f"- `{i.id}` — {i.name} ({i.scope}): bandwidth {_fig(i.bandwidth)} per direction{note}{lat}.")
    lines += ["", "## Economics (cite as `specs/hardware.yaml: economics.<key>`)", ""]
    lines += [f"- `{k}`: {_fig(f)}" + (f" [{f.note}]" if f.note else "") for k, f in specs.hardware.economics.items()]
    lines += ["", "## Energy per operation, 45 nm (cite as `specs/hardware.yaml: energy_per_op.<key>`)", ""]
    lines.append("; ".join(f"`{k}` {_fig(f)}" for k, f in specs.hardware.energy_per_op.items()) + ".")
    if specs.hardware.energy_sources:
        lines += ["", "## Energy sources (cite as `specs/hardware.yaml: energy_sources.<key>`)", ""]
        lines.append("; ".join(f"`{k}` {_fig(f)}" for k, f in specs.hardware.energy_sources.items()) + ".")
    lines += ["", "## Conventions pinned by specs/hardware.yaml", ""]
    lines += [f"- {c}" for c in specs.hardware.conventions]
    return "\n".join(lines)


def static_block(specs: Specs, track: str) -> str:
    t = specs.track_by_id[track]
    return fill(load_template("static.md"), {
        "track": track, "track_name": t.name, "track_description": t.description,
        "hardware": hardware_block(specs, track),
    }, "static.md")


_SPEC_POLICY = {
    "given": "every figure the solver needs, hardware figures included, is stated in the scenario.",
    "partial": "the scenario states the workload and scale figures but leaves the platform's own hardware figures for the candidate to recall (calc still carries them with their specs/hardware.yaml source).",
    "withheld": "design under ambiguity: the scenario names the platform and the goal but not the specs; the candidate recalls the figures and chooses assumptions (calc still carries every figure with its source).",
}


def _escape_data(text: str) -> str:
    return re.sub(r"</?\s*exemplar", lambda m: m.group(0).replace("<", "&lt;"), str(text), flags=re.IGNORECASE)


def exemplar_block(exemplars: list[dict]) -> str:
    if not exemplars:
        return "(none for this cell)"
    out = []
    for ex in exemplars:
        body = "\n".join(
            f"{key}: {_escape_data(ex[key])}" for key in ("topic", "zone", "level", "title", "scenario", "question", "realistic_solution", "common_mistake", "napkin_math")
            if ex.get(key) not in (None, "")
        )
        reviewed = f' reviewed_by="{_escape_data(ex["reviewed_by"]).replace(chr(34), "")}"' if ex.get("reviewed_by") else ""
        out.append(f'<exemplar source="corpus:{_escape_data(ex["id"])}"{reviewed}>\n{body}\n</exemplar>')
    return "\n\n".join(out)


def select_exemplars(exemplars: Iterable[dict] | None, cell: CellRequest, limit: int) -> list[dict]:
    """Up to ``limit`` validated corpus questions, the closest to the cell first (stable order)."""
    ranked = []
    for ex in exemplars or ():
        if not isinstance(ex, Mapping) or not ex.get("id"):
            raise ValueError("every exemplar must be a corpus question dict with an 'id'")
        if ex.get("passed") is False:
            continue  # only validated corpus questions may serve as exemplars
        same_topic, same_zone, same_track = ex.get("topic") == cell.topic, ex.get("zone") == cell.zone, ex.get("track") == cell.track
        rank = 0 if same_topic and same_zone else 1 if same_topic else 2 if same_zone and same_track else 3 if same_track else 4
        ranked.append((rank, str(ex["id"]), dict(ex)))
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in ranked[:limit]]


def titles_from_signatures(signatures: Iterable[str]) -> list[str]:
    """Titles of this backend's accepted questions, recovered from their signatures."""
    return sorted(s.rsplit("|", 1)[-1].replace("-", " ") for s in signatures if s.startswith(SIGNATURE_PREFIX))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _scale_text(axis: str, value: float) -> str:
    return f"{axis}={value:g}"


def cell_block(specs: Specs, cell: CellRequest, count: int, sample: int, avoid_titles: list[str], exemplars: list[dict]) -> str:
    topic = specs.topic_by_id[cell.topic]
    zone = specs.zone_by_id[cell.zone]
    level = specs.level_by_id[cell.level]
    platforms = specs.platforms_for(cell.track)
    workloads = specs.workloads_for(cell.topic, cell.track)
    scales = specs.scale_points_for(cell.topic, cell.track)
    lead_platform = platforms[sample % len(platforms)].id if platforms else "-"
    lead_scale = _scale_text(*scales[sample % len(scales)]) if scales else "-"
    focus = (
        f"Focus of this call (call {sample + 1}): lead with platform `{lead_platform}` and scale point `{lead_scale}`; "
        "the other questions of this call use other platforms, workloads or scale points."
    )
    workload_text = "; ".join(
        f"`{w.id}` ({w.name}, {w.family}, {w.params:.4g} params"
        + "".join(f", {a} {getattr(w, a)}" for a in ("layers", "hidden", "heads", "kv_heads", "head_dim") if getattr(w, a))
        + f", {_fig(w.flops_per_inference)} per {w.input})"
        for w in workloads
    ) or "(none apply; set workload to null)"
    return fill(load_template("cell.md"), {
        "count": count,
        "topic_id": topic.id, "topic_name": topic.name, "topic_area": topic.area, "topic_description": topic.description, "topic_mechanism": topic.mechanism,
        "track": cell.track, "platform_ids": ", ".join(f"`{p.id}`" for p in platforms),
        "zone_id": zone.id, "zone_skills": " + ".join(zone.skills), "zone_description": zone.description, "zone_asks": zone.asks,
        "level_id": level.id, "level_name": level.name, "level_scope": level.scope,
        "steps_min": level.steps[0], "steps_max": level.steps[1], "spec_policy": _SPEC_POLICY[level.specs],
        "platforms": ", ".join(f"`{p.id}`" for p in platforms),
        "workloads": workload_text,
        "failure_modes": "; ".join(topic.failure_modes),
        "scale_points": ", ".join(f"`{_scale_text(a, v)}`" for a, v in scales) or "(none)",
        "focus": focus,
        "avoid": "\n".join(f"- {t}" for t in avoid_titles) or "(none yet)",
        "exemplars": exemplar_block(exemplars),
    }, "cell.md")


def prompt_hash(model: str, static: str, cell: str) -> str:
    digest = hashlib.sha256()
    for part in (model, static, cell):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


# --------------------------------------------------------------------------- checking one question

def check_row(specs: Specs, cell: CellRequest, draft: QuestionDraft, row: dict) -> list[str]:
    """Every reason this question cannot be accepted (empty = accepted)."""
    tol = specs.quality.numeric_tolerance
    problems: list[str] = []
    own = {p.id for p in specs.platforms_for(cell.track)}
    foreign = [p for p in draft.platforms if p not in own]
    if foreign:
        problems.append(f"platforms {foreign} are not platforms of the {cell.track} track ({', '.join(sorted(own))})")
    track_workloads = {w.id for w in specs.workloads.workloads if cell.track in w.tracks}
    if draft.workload is not None and draft.workload not in track_workloads:
        problems.append(f"workload {draft.workload!r} is not a {cell.track} workload in specs/workloads.yaml")
    names = [s.name for s in draft.calc]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"calc step name(s) defined twice: {dupes}")
    calc = row["calc"]
    problems += recompute(calc, rel_tol=tol)
    last = calc[-1]
    if last["unit"] != draft.answer_unit or not math.isclose(float(last["value"]), draft.answer_value, rel_tol=tol):
        problems.append(f"the last calc step gives {last['value']:g} {last['unit']!r}, but the answer is {draft.answer_value:g} {draft.answer_unit!r}")
    if math.isclose(draft.mistake_value, draft.answer_value, rel_tol=tol):
        problems.append(f"mistake_value {draft.mistake_value:g} equals the answer {draft.answer_value:g}; the mistake must lead to a different number")
    verdicts = [
        criteria.specificity(row, specs),
        criteria.grounding(row, specs, specs.quality.grounding_tolerance),
        criteria.falsifiability(row, tol),
        criteria.computability(row, tol),
        criteria.hygiene(row, specs),
    ]
    for verdict in verdicts:
        if verdict.passed:
            continue
        for reason in verdict.reason.split("; "):
            if verdict.criterion == "specificity" and reason.startswith(f"zone {cell.zone} fits levels"):
                continue  # a property of the cell, not of this draft
            if verdict.criterion == "computability" and reason.startswith(("step ", "the last step")):
                continue  # recompute() and the answer check above already report these
            if verdict.criterion == "falsifiability" and reason.startswith("the mistake's value"):
                continue  # the mistake_value check above already reports it
            problems.append(f"{verdict.criterion}: {reason}")
    return list(dict.fromkeys(problems))


def draft_signature(draft: QuestionDraft) -> str:
    platforms = ",".join(sorted(draft.platforms))
    return f"{SIGNATURE_PREFIX}{platforms}|{draft.workload or '-'}|{draft.scale_point or '-'}|{_slug(draft.title)}"


def build_row(specs: Specs, cell: CellRequest, draft: QuestionDraft, *, model: str, phash: str, cost: float) -> dict:
    steps = [CalcStep(s.name, s.expression, float(s.value), s.unit, s.label, s.source if s.kind == "given" else "", s.kind) for s in draft.calc]
    signature = draft_signature(draft)
    content = {
        "zone": cell.zone, "level": cell.level, "title": draft.title, "scenario": draft.scenario, "question": draft.question,
        "answer_value": draft.answer_value, "answer_unit": draft.answer_unit, "signature": signature,
    }
    return {
        "id": content_id(cell.track, cell.topic, content),
        "topic": cell.topic,
        "track": cell.track,
        "zone": cell.zone,
        "level": cell.level,
        "competency_area": specs.topic_by_id[cell.topic].area,
        "title": draft.title.strip(),
        "scenario": draft.scenario.strip(),
        "question": draft.question.strip(),
        "realistic_solution": draft.realistic_solution.strip(),
        "common_mistake": draft.common_mistake.strip(),
        "napkin_math": render_napkin_math(steps, draft.napkin_math.strip()),
        "calc": [s.as_dict() for s in steps],
        "answer_value": float(draft.answer_value),
        "answer_unit": draft.answer_unit,
        "mistake_value": float(draft.mistake_value),
        "mistake_id": draft.mistake_id,
        "platforms": list(draft.platforms),
        "workload": draft.workload,
        "scale_point": draft.scale_point,
        "item_model": "llm",
        "framing": cell.zone,
        "asked": steps[-1].name,
        "signature": signature,
        "claims": [c.model_dump() for c in draft.claims],
        "distractors": list(draft.distractors),
        "backend": AnthropicGenerator.name,
        "generator_version": GENERATOR_VERSION,
        "prompt_hash": phash[:16],
        "spec_version": specs.version,
        "created_at": now_iso(),
        "model": model,
        "cost_usd": round(cost, 6),
    }


def extract_questions(message: Mapping) -> tuple[list | None, str | None]:
    """The raw question items of a reply's ``submit_questions`` call, or why there are none."""
    blocks = [b for b in message.get("content") or [] if isinstance(b, Mapping) and b.get("type") == "tool_use" and b.get("name") == TOOL_NAME]
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


def _excerpt(obj: object) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False, default=str)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _validation_reasons(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors()[:6]:
        where = ".".join(str(p) for p in err["loc"]) or "<question>"
        out.append(f"{where}: {err['msg']}")
    if exc.error_count() > 6:
        out.append(f"and {exc.error_count() - 6} more schema problem(s)")
    return out


# --------------------------------------------------------------------------- on-disk cache


def atomic_write_json(path: Path, obj: object) -> None:
    """Write JSON next to ``path`` then os.replace it in: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, ensure_ascii=False, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def cache_key(model: str, phash: str, sample: str) -> str:
    """sha256 of (model, prompt hash, sample index) — plus the tool schema's hash, so a
    schema change never serves replies written for the old schema."""
    return hashlib.sha256(json.dumps([model, phash, str(sample), TOOL_HASH]).encode()).hexdigest()


class ResponseCache:
    """One JSON file per response: ``<dir>/responses/<key[:2]>/<key>.json``. Only response bodies,
    usage and cost are stored — never request headers or credentials."""

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
        atomic_write_json(self.path(key), entry)


# --------------------------------------------------------------------------- the generator


@dataclass
class _Call:
    cell: CellRequest
    label: str  # sample index, or sample.repair labels
    count: int
    static: str
    user: str
    phash: str
    key: str


@dataclass
class _Reply:
    message: dict | None
    cost: float
    cached: bool
    problem: str | None = None


def cell_key(cell: CellRequest) -> str:
    return f"{cell.topic}|{cell.track}|{cell.zone}|{cell.level}"


def _cell_json(cell: CellRequest) -> dict:
    return {"topic": cell.topic, "track": cell.track, "zone": cell.zone, "level": cell.level, "target": cell.target,
            "seed": cell.seed, "accepted_signatures": sorted(cell.accepted_signatures)}


def _cell_from_json(d: Mapping) -> CellRequest:
    return CellRequest(d["topic"], d["track"], d["zone"], d["level"], int(d["target"]), int(d["seed"]), frozenset(d.get("accepted_signatures", [])))


_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class AnthropicGenerator:
    """GeneratorBackend writing questions with Claude (see the module docstring)."""

    name = "anthropic"
    version = GENERATOR_VERSION

    def __init__(
        self,
        client: Any = None,
        *,
        model: str | None = None,
        cache_dir: Path | str | None = None,
        budget_usd: float = 5.0,
        max_retries_per_row: int = 2,
        max_api_retries: int = 4,
        questions_per_call: int = 4,
        extra_rounds: int = 1,
        max_exemplars: int = 3,
        exemplars: list[dict] | None = None,
        max_tokens_per_question: int = 3000,
        models_path: Path | str | None = None,
        http_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ):
        self.prices = load_models(models_path)
        self.model = model or self.prices.default_model
        self.price = self.prices.price(self.model)  # unknown model: SpecError naming models.yaml before any call
        if client is None:
            key = os.environ.get(KEY_ENV, "").strip()
            if not key:
                raise MissingAPIKey(MISSING_KEY_MESSAGE)
            import anthropic  # the SDK takes seconds to import: only when Claude is asked

            client = anthropic.Anthropic(api_key=key, max_retries=0, http_client=http_client)
            del key
        elif hasattr(client, "with_options"):
            client = client.with_options(max_retries=0)  # retries are ours: observable, with backoff and a budget check
        self.client = client
        self.cache_dir = Path(cache_dir) if cache_dir else data_dir() / "cache" / "anthropic"
        self.cache = ResponseCache(self.cache_dir)
        self.budget_usd = float(budget_usd)
        self.max_retries_per_row = int(max_retries_per_row)
        self.max_api_retries = int(max_api_retries)
        self.questions_per_call = max(1, int(questions_per_call))
        self.extra_rounds = max(0, int(extra_rounds))
        self.max_exemplars = int(max_exemplars)
        self.exemplars = list(exemplars or [])
        self.max_tokens_per_question = int(max_tokens_per_question)
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.spent_usd = 0.0
        self.stats: Counter = Counter()
        self.last_failures: list[dict] = []
        self.failures: list[dict] = []

    def __repr__(self) -> str:
        return f"AnthropicGenerator(model={self.model!r}, cache_dir={str(self.cache_dir)!r}, budget_usd={self.budget_usd}, spent_usd={self.spent_usd:.4f})"

    # ------------------------------------------------------------------ public API

    def generate(self, specs: Specs, cell: CellRequest, *, exemplars: list[dict] | None = None, avoid_titles: Iterable[str] = ()) -> list[dict]:
        """Rows for one cell, at most ``cell.target``; failures go to :attr:`last_failures`."""
        self.last_failures = []
        return self._generate(specs, cell, self._exemplars_for(cell, exemplars), list(avoid_titles))

    def submit_batch(self, specs: Specs, cells: list[CellRequest], *, exemplars: list[dict] | None = None) -> str | None:
        """Submit the first-round calls of ``cells`` that are not cached yet as one Message
        Batch; persist its id and custom_id -> cell mapping. Returns the batch id, or None
        when every call is already cached (then :meth:`generate` needs no API call)."""
        requests, mapping, cells_meta = [], {}, {}
        for cell in cells:
            chosen = self._exemplars_for(cell, exemplars)
            avoid = titles_from_signatures(cell.accepted_signatures)
            static = static_block(specs, cell.track)
            cells_meta[cell_key(cell)] = {"cell": _cell_json(cell), "exemplars": chosen}
            for sample, count in enumerate(self._plan(cell.target)):
                call = self._first_call(specs, cell, static, count, sample, avoid, chosen)
                if self.cache.get(call.key) is not None:
                    continue
                custom_id = f"q{len(requests):05d}-{call.key[:16]}"
                requests.append({"custom_id": custom_id, "params": self._params(call)})
                mapping[custom_id] = {"cell": cell_key(cell), "sample": call.label, "count": count, "cache_key": call.key, "prompt_hash": call.phash}
        if not requests:
            logger.info("anthropic batch: every first-round call of %d cell(s) is cached; nothing to submit", len(cells))
            return None
        if len(requests) > MAX_BATCH_REQUESTS:
            raise ValueError(f"{len(requests)} requests exceed the Message Batches limit of {MAX_BATCH_REQUESTS}; submit fewer cells per batch")
        self._check_budget()
        batch = self._with_retries(lambda: self.client.messages.batches.create(requests=requests), "batch create")
        self.stats["batches_submitted"] += 1
        if not _BATCH_ID.match(str(batch.id)):
            raise AnthropicBackendError(f"unexpected batch id format {str(batch.id)[:40]!r}")
        manifest = {
            "batch_id": batch.id, "model": self.model, "generator_version": self.version, "spec_version": specs.version,
            "created_at": now_iso(), "processing_status": batch.processing_status,
            "results_cached": False, "collected": False, "cells": cells_meta, "requests": mapping, "batch_failures": [],
        }
        atomic_write_json(self._manifest_path(batch.id), manifest)
        logger.info("anthropic batch %s submitted: %d request(s) for %d cell(s)", batch.id, len(requests), len(cells))
        return batch.id

    def collect_batch(self, specs: Specs, batch_id: str, *, poll_interval: float = 60.0, timeout: float = 24 * 3600.0, allow_calls: bool = True) -> dict[str, list[dict]]:
        """Poll until the batch has ended, move its replies into the response cache (cost at
        the batch discount), then build each cell's rows from the cache. Repairs and
        top-ups are synchronous calls unless ``allow_calls`` is False. Returns
        ``{"topic|track|zone|level": rows}``; failures of every cell are in :attr:`last_failures`."""
        manifest = self._load_manifest(batch_id)
        if manifest.get("model") != self.model:
            raise AnthropicBackendError(f"batch {batch_id} was submitted for model {manifest.get('model')!r}; this generator uses {self.model!r}")
        deadline = self.clock() + timeout
        while True:
            batch = self._with_retries(lambda: self.client.messages.batches.retrieve(batch_id), "batch retrieve")
            if batch.processing_status == "ended":
                break
            if self.clock() >= deadline:
                raise BatchTimeout(f"batch {batch_id} is still {batch.processing_status} after {timeout:g} s; call collect_batch again later (the id is persisted under {self.batches_dir})")
            logger.info("anthropic batch %s: %s, next poll in %g s", batch_id, batch.processing_status, poll_interval)
            self.sleep(poll_interval)
        if not manifest.get("results_cached"):
            manifest["batch_failures"] = self._cache_batch_results(batch_id, manifest)
            manifest["results_cached"] = True
            manifest["processing_status"] = "ended"
            atomic_write_json(self._manifest_path(batch_id), manifest)
        self.last_failures = [dict(f) for f in manifest.get("batch_failures", [])]
        self.failures.extend(self.last_failures)
        out: dict[str, list[dict]] = {}
        for key, meta in manifest["cells"].items():
            cell = _cell_from_json(meta["cell"])
            out[key] = self._generate(specs, cell, list(meta.get("exemplars", [])), [], allow_calls=allow_calls)
        manifest["collected"] = True
        manifest["collected_at"] = now_iso()
        atomic_write_json(self._manifest_path(batch_id), manifest)
        return out

    def resume_batches(self) -> list[str]:
        """Ids of persisted batches not collected yet, oldest first (resume without resubmitting)."""
        if not self.batches_dir.is_dir():
            return []
        pending = []
        for path in self.batches_dir.glob("*.json"):
            try:
                manifest = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                logger.warning("anthropic batch manifest %s is unreadable; skipped", path.name)
                continue
            if not manifest.get("collected"):
                pending.append((manifest.get("created_at", ""), manifest["batch_id"]))
        return [b for _, b in sorted(pending)]

    def run_summary(self) -> dict:
        """Numbers for Dagster metadata: spend, calls, cache hits, retries, tokens, failures."""
        return {
            "model": self.model,
            "spent_usd": round(self.spent_usd, 6),
            "budget_usd": self.budget_usd,
            **{k: int(self.stats.get(k, 0)) for k in (
                "api_calls", "cache_hits", "retries", "repairs", "batches_submitted", "input_tokens", "output_tokens",
                "cache_creation_input_tokens", "cache_read_input_tokens")},
            "failures": len(self.failures),
            "exemplars": [{"id": str(ex.get("id")), "reviewed_by": ex.get("reviewed_by") or "not reviewed"} for ex in self.exemplars],
        }

    # ------------------------------------------------------------------ planning and prompts

    @property
    def batches_dir(self) -> Path:
        return self.cache_dir / "batches"

    def _manifest_path(self, batch_id: str) -> Path:
        if not _BATCH_ID.match(batch_id):
            raise ValueError(f"not a batch id: {batch_id[:40]!r}")
        return self.batches_dir / f"{batch_id}.json"

    def _load_manifest(self, batch_id: str) -> dict:
        path = self._manifest_path(batch_id)
        if not path.is_file():
            raise AnthropicBackendError(f"no persisted batch {batch_id} under {self.batches_dir}; was it submitted with this cache_dir?")
        return json.loads(path.read_text())

    def _plan(self, target: int) -> list[int]:
        n = self.questions_per_call
        return [min(n, target - i) for i in range(0, max(0, target), n)]

    def _exemplars_for(self, cell: CellRequest, exemplars: list[dict] | None) -> list[dict]:
        return select_exemplars(self.exemplars if exemplars is None else exemplars, cell, self.max_exemplars)

    def _first_call(self, specs: Specs, cell: CellRequest, static: str, count: int, sample: int, avoid: list[str], exemplars: list[dict]) -> _Call:
        user = cell_block(specs, cell, count, sample, avoid, exemplars)
        phash = prompt_hash(self.model, static, user)
        label = f"{cell.seed}.{sample}"  # the seed picks a fresh set of samples for the same prompts
        return _Call(cell, label, count, static, user, phash, cache_key(self.model, phash, label))

    def _repair_call(self, call: _Call, note: str, label: str, count: int) -> _Call:
        user = f"{call.user}\n\n# Repair\n\n{note}"
        phash = prompt_hash(self.model, call.static, user)
        return _Call(call.cell, label, count, call.static, user, phash, cache_key(self.model, phash, label))

    def _params(self, call: _Call) -> dict:
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": min(MAX_NONSTREAMING_TOKENS, 1000 + self.max_tokens_per_question * call.count),
            "system": [{"type": "text", "text": call.static, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": call.user}]}],
            "tools": [TOOL],
            "tool_choice": {"type": "tool", "name": TOOL_NAME} if self.price.forced_tool_choice else {"type": "auto"},
        }
        if self.price.thinking == "disabled":
            params["thinking"] = {"type": "disabled"}
        return params

    # ------------------------------------------------------------------ one cell

    def _generate(self, specs: Specs, cell: CellRequest, exemplars: list[dict], avoid_titles: list[str], *, allow_calls: bool = True) -> list[dict]:
        for attr, ids in (("topic", specs.topic_by_id), ("zone", specs.zone_by_id), ("level", specs.level_by_id), ("track", specs.track_by_id)):
            if getattr(cell, attr) not in ids:
                raise KeyError(f"unknown {attr} {getattr(cell, attr)!r} in cell {cell_key(cell)}")
        static = static_block(specs, cell.track)
        avoid = list(dict.fromkeys([*avoid_titles, *titles_from_signatures(cell.accepted_signatures)]))
        seen = set(cell.accepted_signatures)
        rows: list[dict] = []
        plan = self._plan(cell.target)
        for sample in range(len(plan) + self.extra_rounds):
            if len(rows) >= cell.target:
                break
            if sample < len(plan):  # first round: same prompts as a batch submission would send
                call = self._first_call(specs, cell, static, plan[sample], sample, avoid, exemplars)
            else:  # top-up: ask for what is missing, avoiding what this run accepted too
                taken = avoid + [r["title"] for r in rows]
                call = self._first_call(specs, cell, static, min(self.questions_per_call, cell.target - len(rows)), sample, taken, exemplars)
            rows.extend(self._harvest(specs, cell, call, seen, allow_calls)[: cell.target - len(rows)])
        return rows

    def _harvest(self, specs: Specs, cell: CellRequest, call: _Call, seen: set[str], allow_calls: bool) -> list[dict]:
        """Parse one reply into accepted rows, repairing each failing question on its own."""
        reply = self._fetch(call, allow_calls)
        items, problem = (None, reply.problem) if reply.message is None else extract_questions(reply.message)
        attempt = 0
        while items is None and attempt < self.max_retries_per_row and reply.message is not None:
            attempt += 1
            note = (f"Your previous reply to this request could not be read: {problem}. Call `{TOOL_NAME}` once, "
                    f"with an object whose `questions` list holds exactly {call.count} question object(s).")
            repair = self._repair_call(call, note, f"{call.label}.whole.{attempt}", call.count)
            reply = self._fetch(repair, allow_calls, repair=True)
            items, problem = (None, reply.problem) if reply.message is None else extract_questions(reply.message)
        if items is None:
            self._fail(cell, call.label, None, [problem or "no reply"], reply.message)
            return []
        if len(items) < call.count:
            self._fail(cell, call.label, None, [f"the reply holds {len(items)} of the {call.count} requested question(s)"], None)
        elif len(items) > call.count:
            self._fail(cell, call.label, None, [f"the reply holds {len(items)} questions but {call.count} were requested; the extra ones are not used"], items[call.count:])
            items = items[: call.count]
        share = reply.cost / max(1, len(items))
        rows = []
        for index, raw in enumerate(items):
            row, reasons = self._accept(specs, cell, call, raw, seen, share)
            attempt = 0
            while reasons and attempt < self.max_retries_per_row:
                attempt += 1
                note = (
                    "One question of your previous reply failed the checks:\n"
                    + "\n".join(f"- {r}" for r in reasons)
                    + f"\n\nIts draft, as data:\n<draft>\n{_escape_data(_excerpt_full(raw))}\n</draft>\n\n"
                    f"This replaces the count above: call `{TOOL_NAME}` with exactly 1 question — the same idea, "
                    "corrected so that every check passes (or a new question for this cell if the idea cannot be fixed)."
                )
                repair = self._repair_call(call, note, f"{call.label}.q{index}.{attempt}", 1)
                fixed = self._fetch(repair, allow_calls, repair=True)
                share += fixed.cost
                if fixed.message is None:
                    reasons = [fixed.problem or "no reply"]
                    break
                new_items, problem = extract_questions(fixed.message)
                if new_items is None:
                    reasons, raw = [problem], fixed.message
                    continue
                raw = new_items[0]
                row, reasons = self._accept(specs, cell, call, raw, seen, share)
            if reasons:
                self._fail(cell, call.label, index, reasons, raw)
                continue
            seen.add(row["signature"])
            rows.append(row)
        return rows

    def _accept(self, specs: Specs, cell: CellRequest, call: _Call, raw: object, seen: set[str], cost: float) -> tuple[dict | None, list[str]]:
        try:
            draft = QuestionDraft.model_validate(raw)
        except ValidationError as exc:
            return None, _validation_reasons(exc)
        row = build_row(specs, cell, draft, model=self.model, phash=call.phash, cost=cost)
        reasons = check_row(specs, cell, draft, row)
        if row["signature"] in seen:
            reasons.append("it repeats an accepted question of this cell (same platforms, workload, scale point and title); write a different one")
        return row, reasons

    def _fail(self, cell: CellRequest, sample: str, index: int | None, reasons: list[str], raw: object) -> None:
        failure = {"cell": cell_key(cell), "sample": sample, "index": index, "reason": "; ".join(reasons), "raw": _excerpt(raw) if raw is not None else ""}
        logger.warning("anthropic: question rejected in %s (call %s%s): %s", failure["cell"], sample, "" if index is None else f", #{index}", failure["reason"][:300])
        self.last_failures.append(failure)
        self.failures.append(failure)

    # ------------------------------------------------------------------ calls, cache, cost, retries

    def _fetch(self, call: _Call, allow_calls: bool = True, repair: bool = False) -> _Reply:
        entry = self.cache.get(call.key)
        if entry is not None:
            self.stats["cache_hits"] += 1
            return _Reply(entry["message"], float(entry.get("cost_usd", 0.0)), True)
        if not allow_calls:
            return _Reply(None, 0.0, False, f"no cached reply for call {call.label} and API calls are disabled (the batch request did not succeed)")
        self._check_budget()
        params = self._params(call)
        response = self._with_retries(lambda: self.client.messages.create(**params), f"{cell_key(call.cell)} call {call.label}")
        message = response.model_dump(mode="json") if hasattr(response, "model_dump") else dict(response)
        cost = self._account(message.get("usage"), batch=False)
        self.stats["repairs" if repair else "first_calls"] += 1
        self.cache.put(call.key, self._entry(call, message, cost, batch_id=None))
        logger.info("anthropic %s call %s: $%.4f (run total $%.4f of $%.2f)", cell_key(call.cell), call.label, cost, self.spent_usd, self.budget_usd)
        return _Reply(message, cost, False)

    def cached_call(self, key: str, params: dict, meta: Mapping, what: str, stat: str = "other_calls") -> tuple[dict, float, bool]:
        """One Messages call through this backend's response cache, budget and retries, for
        callers other than the generator (the judge): the cached reply when ``key`` is cached;
        otherwise :class:`BudgetExceeded` once the budget is spent, or a call that is accounted
        and cached. ``meta`` names it in the cache entry (cell, sample, prompt_hash, tool_hash).
        Returns (message, cost in USD, served from the cache)."""
        entry = self.cache.get(key)
        if entry is not None:
            self.stats["cache_hits"] += 1
            return entry["message"], float(entry.get("cost_usd", 0.0)), True
        self._check_budget()
        response = self._with_retries(lambda: self.client.messages.create(**params), what)
        message = response.model_dump(mode="json") if hasattr(response, "model_dump") else dict(response)
        cost = self._account(message.get("usage"), batch=False)
        self.stats[stat] += 1
        self.cache.put(key, self._entry(meta, message, cost, batch_id=None))
        return message, cost, False

    def _entry(self, call_or_meta: _Call | Mapping, message: dict, cost: float, batch_id: str | None) -> dict:
        tool_hash = TOOL_HASH
        if isinstance(call_or_meta, _Call):
            cell, sample, phash = cell_key(call_or_meta.cell), call_or_meta.label, call_or_meta.phash
        else:
            cell, sample, phash = call_or_meta["cell"], call_or_meta["sample"], call_or_meta["prompt_hash"]
            tool_hash = call_or_meta.get("tool_hash", TOOL_HASH)
        return {
            "model": self.model, "prompt_hash": phash, "sample": sample, "cell": cell, "tool_hash": tool_hash,
            "generator_version": self.version, "batch_id": batch_id, "cost_usd": cost,
            "usage": usage_dict(message.get("usage")), "created_at": now_iso(), "message": message,
        }

    def _account(self, usage: Any, *, batch: bool) -> float:
        cost = cost_usd(self.price, usage, self.prices.per_tokens, self.prices.batch_discount if batch else 1.0)
        self.spent_usd += cost
        self.stats["api_calls" if not batch else "batch_results"] += 1
        for k, v in usage_dict(usage).items():
            self.stats[k] += v
        return cost

    def _check_budget(self) -> None:
        if self.spent_usd >= self.budget_usd:
            raise BudgetExceeded(
                f"budget of ${self.budget_usd:.2f} reached after ${self.spent_usd:.4f}; raise the budget or resume later "
                f"(replies so far are cached under {self.cache_dir})"
            )

    def _backoff(self, attempt: int, exc: Exception) -> float:
        retry_after = None
        response = getattr(exc, "response", None)
        if response is not None:
            try:
                retry_after = float(response.headers.get("retry-after"))
            except (TypeError, ValueError):
                retry_after = None
        delay = min(self.backoff_max, self.backoff_base * 2 ** attempt)
        delay += self.rng.uniform(0, delay / 2)  # jitter
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _with_retries(self, fn: Callable[[], Any], what: str) -> Any:
        import anthropic

        for attempt in range(self.max_api_retries + 1):
            try:
                return fn()
            except anthropic.APIStatusError as exc:
                if not (exc.status_code in RETRY_STATUS or exc.status_code >= 500) or attempt >= self.max_api_retries:
                    raise
                reason, err = f"HTTP {exc.status_code} ({getattr(exc, 'type', None) or type(exc).__name__})", exc
            except anthropic.APIConnectionError as exc:
                if attempt >= self.max_api_retries:
                    raise
                reason, err = type(exc).__name__, exc
            delay = self._backoff(attempt, err)
            self.stats["retries"] += 1
            logger.warning("anthropic %s: %s; retry %d/%d in %.1f s", what, reason, attempt + 1, self.max_api_retries, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _cache_batch_results(self, batch_id: str, manifest: dict) -> list[dict]:
        failures = []
        results = self._with_retries(lambda: list(self.client.messages.batches.results(batch_id)), "batch results")
        for item in results:
            meta = manifest["requests"].get(item.custom_id)
            if meta is None:
                logger.warning("anthropic batch %s: result for unknown custom_id %s ignored", batch_id, item.custom_id)
                continue
            result = item.result
            if result.type == "succeeded":
                message = result.message.model_dump(mode="json")
                cost = self._account(message.get("usage"), batch=True)  # billed either way
                if self.cache.get(meta["cache_key"]) is None:
                    self.cache.put(meta["cache_key"], self._entry(meta, message, cost, batch_id))
                else:  # a synchronous run answered this call meanwhile: keep the rows it produced
                    logger.info("anthropic batch %s: %s already cached; batch reply not used", batch_id, item.custom_id)
                continue
            detail = ""
            if result.type == "errored":
                err = getattr(getattr(result, "error", None), "error", None)
                detail = f": {getattr(err, 'type', '')} {getattr(err, 'message', '')}".rstrip()
            failures.append({"cell": meta["cell"], "sample": meta["sample"], "index": None,
                             "reason": f"batch request {result.type}{detail}", "raw": ""})
        logger.info("anthropic batch %s: %d result(s) cached, %d failed; run total $%.4f", batch_id, len(results) - len(failures), len(failures), self.spent_usd)
        return failures


def _excerpt_full(raw: object) -> str:
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    return text[:6000]


def backend_from_env(**kw: Any) -> AnthropicGenerator:
    """The backend configured from the environment: ANTHROPIC_API_KEY (required),
    STAFFML_ANTHROPIC_MODEL, STAFFML_ANTHROPIC_BUDGET_USD, STAFFML_ANTHROPIC_CACHE_DIR.
    Keyword arguments win over the environment."""
    env = os.environ
    if "model" not in kw and env.get("STAFFML_ANTHROPIC_MODEL"):
        kw["model"] = env["STAFFML_ANTHROPIC_MODEL"]
    if "budget_usd" not in kw and env.get("STAFFML_ANTHROPIC_BUDGET_USD"):
        try:
            kw["budget_usd"] = float(env["STAFFML_ANTHROPIC_BUDGET_USD"])
        except ValueError:
            raise ValueError(f"STAFFML_ANTHROPIC_BUDGET_USD must be a number of USD, got {env['STAFFML_ANTHROPIC_BUDGET_USD']!r}") from None
    if "cache_dir" not in kw and env.get("STAFFML_ANTHROPIC_CACHE_DIR"):
        kw["cache_dir"] = env["STAFFML_ANTHROPIC_CACHE_DIR"]
    return AnthropicGenerator(**kw)
