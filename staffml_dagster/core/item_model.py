"""Item models: whole question designs over one napkin-math mechanism.

An item model is one YAML file in ``assets/item_models/``. It declares

- ``topics``: the topics whose own mechanism it computes (it serves no others),
- ``tracks`` and ``vary``: the platforms, workloads and scenario parameters it ranges over
  (the capacity formula's platforms x architectures x scale points),
- ``calc``: the chain of steps as data. A step takes a figure from ``specs/`` (``from:``),
  states an assumption with its reason (``value:`` + ``why:``), a measured symptom
  (``observed:``, an expression over earlier steps that the scenario reports as measured),
  or derives a value (``expr:``). ``mistakes:`` beside a step give the expression a named
  misconception uses instead, so a wrong answer is the same chain with one step changed,
- ``claims``: the boolean statements the text's conclusions rest on ("memory-bound",
  "fits"); the text branches on them and the quality gate recomputes them,
- ``misconceptions``: pitfall, rationale and consequence of each named error,
- ``questions``: the designs. Each is written whole for one zone and one level: title,
  scenario, question, solution and conclusion are Jinja templates of one situation, with
  the zone's structure declared (``alternatives`` for a diagnosis, ``distractors`` at L5+).

Rendering context of every template: each step's formatted value by name (``{{ weights }}``
gives ``16.06 GB``), ``n.<step>`` its number, ``c.<claim>`` a claim's truth, ``platform``,
``platform_b``, ``workload`` (names), ``answer`` and ``wrong`` (the answer and the value the
design's misconception gives), ``w.<step>`` a step's value under that misconception.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import product
from pathlib import Path
from typing import Literal

import jinja2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from staffml_dagster.core.calc import (
    SIG_FIGS,
    Calc,
    CalcError,
    CalcStep,
    KnifeEdge,
    OutOfDomain,
    fmt_number,
    fmt_quantity,
)
from staffml_dagster.core.render import common_mistake, napkin_math
from staffml_dagster.paths import assets_dir
from staffml_dagster.specs import SAFE_YAML, Figure, Platform, Specs, Workload

RESERVED = {
    "platform",
    "platform_b",
    "platform_short",
    "platform_b_short",
    "workload",
    "track",
    "n",
    "c",
    "w",
    "answer",
    "wrong",
    "loop",
    "range",
}
ZONE_NEEDS = {
    # what a design must declare for its zone to be honest (the rubric's zone_fit, ../shared/docs/REVIEW_RUBRIC.md)
    "diagnosis": ("symptom", "alternatives"),
    "debug": ("symptom", "alternatives"),
    "evaluation": ("options",),
    "design": ("decision",),
    "specification": ("decision",),
    "realization": ("decision",),
    "optimization": ("lever",),
    "mastery": ("decision",),
    "analyze": ("claims",),
}


class ItemModelError(ValueError):
    """A malformed item model file: names the file, the design and the problem."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class StepSpec(_Spec):
    name: str
    label: str
    unit: str = ""
    source_: str | None = Field(default=None, alias="from")
    value: float | None = None
    why: str | None = None
    expr: str | None = None
    observed: str | None = None
    mistakes: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> "StepSpec":
        kinds = [k for k in ("source_", "expr", "observed") if getattr(self, k) is not None]
        if self.value is not None:
            kinds.append("value")
        if len(kinds) != 1:
            raise ValueError(f"step {self.name!r} needs exactly one of from/value/expr/observed, has {kinds or 'none'}")
        if self.value is not None and not self.why:
            raise ValueError(f"step {self.name!r}: an assumed value needs `why`")
        if self.name in RESERVED or not self.name.isidentifier():
            raise ValueError(f"step name {self.name!r} is reserved or not an identifier")
        return self


class Misconception(_Spec):
    pitfall: str
    rationale: str
    consequence: str


class PlatformChoice(_Spec):
    kinds: list[str] | None = None
    ids: dict[str, list[str]] | None = None  # per track; default every platform of the track
    needs: list[str] = Field(default_factory=list)  # figure paths the platform must have, e.g. compute.int8


class WorkloadChoice(_Spec):
    families: list[str] = Field(default_factory=list)
    ids: list[str] | dict[str, list[str]] | None = None  # every track, or per track like platforms

    def allows(self, track: str, workload_id: str) -> bool:
        if self.ids is None:
            return True
        ids = self.ids.get(track, []) if isinstance(self.ids, dict) else self.ids
        return workload_id in ids


class Vary(_Spec):
    platform: PlatformChoice | None = None
    platform_b: PlatformChoice | None = None
    workload: WorkloadChoice | None = None
    params: dict[str, dict[str, list[float]]] = Field(default_factory=dict)  # name -> track -> values


class Design(_Spec):
    id: str
    zone: str
    level: str
    answer: str
    mistake: str
    title: str
    scenario: str
    question: str
    solution: str
    conclusion: str
    topics: list[str] | None = None
    tracks: list[str] | None = None
    when: list[str] = Field(default_factory=list)
    claims: dict[str, str] = Field(default_factory=dict)
    remarks: list[str] = Field(default_factory=list)  # claims that only choose wording, not the candidate's conclusion
    distractors: list[str] = Field(default_factory=list)
    symptom: str | None = None  # the observed step a diagnosis starts from
    alternatives: list[str] = Field(default_factory=list)  # competing explanations the solution rules out
    options: list[str] = Field(default_factory=list)  # evaluation: the steps holding each option's figure
    decision: str | None = None  # design/specification: the step holding the chosen value
    lever: str | None = None  # optimization: the step holding the figure after the lever
    shows: list[str] = Field(default_factory=list)  # further steps the text states and the napkin math shows
    hands_over: list[str] = Field(default_factory=list)  # derived steps the scenario states as given (fewer steps)

    @field_validator("when", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, str) else v


class ItemModelSpec(_Spec):
    id: str
    topics: list[str] = Field(min_length=1)
    tracks: list[Literal["cloud", "edge", "mobile", "tinyml"]] = Field(min_length=1)
    summary: str = Field(min_length=20)
    vary: Vary = Field(default_factory=Vary)
    when: list[str] = Field(default_factory=list)
    calc: list[StepSpec] = Field(min_length=1)
    claims: dict[str, str] = Field(default_factory=dict)
    misconceptions: dict[str, Misconception] = Field(min_length=1)
    questions: list[Design] = Field(min_length=1)

    @field_validator("when", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, str) else v


@dataclass(frozen=True)
class Setting:
    """One point of an item model's space inside a track."""

    track: str
    platform: Platform | None
    platform_b: Platform | None
    workload: Workload | None
    params: tuple[tuple[str, float], ...]

    @property
    def key(self) -> str:
        parts = [
            self.platform.id if self.platform else "-",
            self.platform_b.id if self.platform_b else "-",
            self.workload.id if self.workload else "-",
        ]
        return "|".join(parts + [",".join(f"{k}={v:g}" for k, v in self.params) or "-"])

    @property
    def scale_point(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.params)


@dataclass
class Draft:
    """One rendered question of a design at a setting."""

    item_model: str
    design: str
    topic: str
    title: str
    scenario: str
    question: str
    realistic_solution: str
    common_mistake: str
    napkin_math: str
    calc: list[CalcStep]
    answer: CalcStep
    mistake_id: str
    mistake_value: float
    claims: list[dict]
    distractors: list[str]
    setting: Setting
    signature: str
    reasoning: str  # item model, design and the outcome of its claims: same reasoning, same key


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
PROSE_SIG = 3  # prose quotes three significant figures; the napkin math shows four
_JINJA.filters["billions"] = lambda x: fmt_number(
    float(x) / 1e9, PROSE_SIG
)  # 8.03e9 -> "8.03" (write "billion" after it)
_JINJA.filters["num"] = lambda x: fmt_number(float(x), PROSE_SIG)  # three significant figures, thousands separators


@lru_cache(maxsize=8192)
def _template(text: str) -> jinja2.Template:
    return _JINJA.from_string(text)


_AN = re.compile(r"\b([Aa]) (?=[AEIOaei]\S|o(?!ne\b)\S|8|1[18]\b|1[18][,.]\d)")
_WHOLE_MILLIONS = re.compile(r"(?<![\d.])(\d+)\.0 (thousand|million|billion|trillion)\b")
_ONE_PLURAL = re.compile(
    r"(?<![\d.,])1 "
    r"(day|hour|minute|second|week|month|year|GPU|node|device|byte|token|frame|step|request|sample|cycle|image|epoch|user)s\b"
)


def _sentence_start(text: str, i: int) -> bool:
    """Whether position i starts a sentence: a capital 'A' elsewhere is a name (matrices A and B)."""
    before = text[:i].rstrip()
    return not before or before[-1] in ".!?:\n"


def polish(text: str) -> str:
    """What a template cannot see once its values are filled in: "an 86%", "an Arm" (not "a"),
    "12 million" (not "12.0 million"), "1 day" (not "1 days")."""
    text = _AN.sub(
        lambda m: m.group(1) + "n " if m.group(1) == "a" or _sentence_start(text, m.start()) else m.group(0), text
    )
    text = _WHOLE_MILLIONS.sub(r"\1 \2", text)
    return _ONE_PLURAL.sub(r"1 \1", text)


def render(text: str, context: dict) -> str:
    return polish(" ".join(_template(text).render(context).split()))


class _Ns:
    """Attribute access for the template namespaces n, c and w, with a clear error. Not a dict,
    so a step named ``keys`` or ``items`` is the step, not a method."""

    __slots__ = ("_values",)

    def __init__(self, values: dict):
        self._values = values

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise jinja2.UndefinedError(f"no step or claim named {key!r}") from None


class MissingFigure(CalcError):
    """A figure the setting does not have (a platform without a flash size, a track without a
    parameter): the steps that need it are left out, and designs that need those give no question."""


def _differs(a: float, b: float) -> bool:
    """A misconception is worth naming only if its number is visibly wrong (10% or more)."""
    return not math.isclose(a, b, rel_tol=0.1)


_BUILDS: dict[tuple, list[CalcStep] | CalcError] = {}


class ItemModel:
    """An item model loaded from its YAML file, with the calc and rendering logic."""

    def __init__(self, spec: ItemModelSpec, path: Path):
        self.spec = spec
        self.path = path
        self.id = spec.id
        self.tracks = frozenset(spec.tracks)
        self.version = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self._check_references()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: Path) -> "ItemModel":
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_YAML)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise ItemModelError(
                f"{path.name}: {where}not valid YAML: {getattr(exc, 'problem', None) or exc}"
            ) from None
        try:
            spec = ItemModelSpec.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise ItemModelError(f"{path.name}: {where}: {first['msg']}") from None
        if spec.id != path.stem:
            raise ItemModelError(f"{path.name}: id {spec.id!r} must equal the file name")
        return cls(spec, path)

    def _fail(self, where: str, problem: str) -> None:
        raise ItemModelError(f"{self.path.name}: {where}: {problem}")

    def _check_references(self) -> None:
        names: list[str] = []
        for step in self.spec.calc:
            if step.name in names:
                self._fail(f"calc.{step.name}", "defined twice")
            names.append(step.name)
            for mid in step.mistakes:
                if mid not in self.spec.misconceptions:
                    self._fail(f"calc.{step.name}.mistakes", f"unknown misconception {mid!r}")
        for d in self.spec.questions:
            where = f"questions.{d.id}"
            if d.answer not in names:
                self._fail(where, f"answer {d.answer!r} is not a calc step")
            if d.mistake not in self.spec.misconceptions:
                self._fail(where, f"mistake {d.mistake!r} is not a misconception")
            if not any(d.mistake in s.mistakes for s in self.spec.calc):
                self._fail(where, f"no step declares how misconception {d.mistake!r} changes the calc")
            for key in ("symptom", "decision", "lever"):
                ref = getattr(d, key)
                if ref is not None and ref not in names:
                    self._fail(where, f"{key} {ref!r} is not a calc step")
            for ref in d.options + d.distractors + d.shows + d.hands_over:
                if ref not in names:
                    self._fail(where, f"{ref!r} is not a calc step")
            for need in ZONE_NEEDS.get(d.zone, ()):
                have = {
                    "symptom": d.symptom,
                    "alternatives": d.alternatives,
                    "options": len(d.options) >= 2,
                    "decision": d.decision,
                    "lever": d.lever,
                    "claims": {**self.spec.claims, **d.claims},
                }[need]
                if not have:
                    self._fail(where, f"zone {d.zone} needs `{need}` (see ZONE_NEEDS)")
            for r in d.remarks:
                if r not in {**self.spec.claims, **d.claims}:
                    self._fail(where, f"remark {r!r} is not a claim of the model or the design")
            if d.distractors and d.level not in ("L5", "L6+"):
                self._fail(where, "distractors are for L5 and L6+ only")
            if d.question.count("?") != 1 or not d.question.strip().endswith("?"):
                self._fail(where, "the question must be one sentence ending in its only '?'")
        if len({d.id for d in self.spec.questions}) != len(self.spec.questions):
            self._fail("questions", "design ids must be unique")

    def check_against(self, specs: Specs) -> None:
        """Cross-file references: topics, zones, levels and families exist in specs/."""
        for t in self.spec.topics + [t for d in self.spec.questions for t in (d.topics or [])]:
            if t not in specs.topic_by_id:
                self._fail("topics", f"unknown topic {t!r}")
        for d in self.spec.questions:
            if d.zone not in specs.zone_by_id:
                self._fail(f"questions.{d.id}", f"unknown zone {d.zone!r}")
            if d.level not in specs.zone_by_id[d.zone].levels:
                self._fail(
                    f"questions.{d.id}",
                    f"level {d.level} is outside zone {d.zone}'s levels {specs.zone_by_id[d.zone].levels}",
                )
            for t in d.topics or []:
                if t not in self.spec.topics:
                    self._fail(f"questions.{d.id}", f"topic {t!r} is not one of the model's topics")
        families = set(specs.workloads.families)
        if self.spec.vary.workload:
            for f in self.spec.vary.workload.families:
                if f not in families:
                    self._fail("vary.workload.families", f"unknown family {f!r}")
            ids = self.spec.vary.workload.ids
            per_track = ids if isinstance(ids, dict) else {"all": ids or []}
            known = {w.id for w in specs.workloads.workloads}
            for track, listed in per_track.items():
                if track != "all" and track not in self.spec.tracks:
                    self._fail("vary.workload.ids", f"track {track!r} is not one of the model's tracks")
                for w in listed:
                    if w not in known:
                        self._fail(
                            f"vary.workload.ids.{track}" if track != "all" else "vary.workload.ids",
                            f"unknown workload {w!r}",
                        )

    # ------------------------------------------------------------------ the space
    def settings(self, specs: Specs, track: str) -> list[Setting]:
        v = self.spec.vary
        platforms = self._platforms(specs, track, v.platform) if v.platform else [None]
        platforms_b = self._platforms(specs, track, v.platform_b) if v.platform_b else [None]
        if v.workload:
            workloads = [
                w
                for w in specs.workloads.workloads
                if track in w.tracks and w.family in v.workload.families and v.workload.allows(track, w.id)
            ]
        else:
            workloads = [None]
        # a parameter with no values on this track is absent there: the steps using it drop out
        names = sorted(n for n in v.params if v.params[n].get(track, v.params[n].get("all")))
        values = [v.params[n].get(track, v.params[n].get("all")) for n in names]
        out = []
        for p, pb, w, combo in product(platforms, platforms_b, workloads, product(*values)):
            if p is not None and pb is not None and p.id == pb.id:
                continue
            out.append(Setting(track, p, pb, w, tuple(zip(names, (float(x) for x in combo)))))
        return out

    @staticmethod
    def _platforms(specs: Specs, track: str, choice: PlatformChoice) -> list[Platform]:
        allowed = None if choice.ids is None else set(choice.ids.get(track, []))
        out = []
        for p in specs.platforms_for(track):
            if allowed is not None and p.id not in allowed:
                continue
            if choice.kinds and p.kind not in choice.kinds:
                continue
            if all(_has_figure(specs, p, need) for need in choice.needs):
                out.append(p)
        return out

    def designs_for(self, topic: str, track: str, zone: str, level: str) -> list[Design]:
        return [
            d
            for d in self.spec.questions
            if d.zone == zone
            and d.level == level
            and track in (d.tracks or self.spec.tracks)
            and topic in (d.topics or self.spec.topics)
        ]

    # ------------------------------------------------------------------ the calc
    def build(
        self, specs: Specs, s: Setting, mistake: str | None = None, handed: dict[str, CalcStep] | None = None
    ) -> Calc:
        """The chain at a setting; with ``mistake``, as that misconception computes it. Steps in
        ``handed`` are stated by the scenario: they become givens with the stated value.
        Memoized per process (the designs of a model share their chains); a fresh Calc each call."""
        key = (specs.version, self.id, self.version, s.key, mistake, tuple(sorted(handed)) if handed else ())
        steps = _BUILDS.get(key)
        if steps is None:
            if len(_BUILDS) > 100_000:
                _BUILDS.clear()
            try:
                steps = self._build(specs, s, mistake, handed).steps
            except CalcError as exc:
                steps = exc
            _BUILDS[key] = steps
        if isinstance(steps, CalcError):
            raise steps
        return Calc(steps=list(steps))

    def _build(self, specs: Specs, s: Setting, mistake: str | None, handed: dict[str, CalcStep] | None) -> Calc:
        calc = Calc()
        context = self._names(s)
        missing: set[str] = set()
        for step in self.spec.calc:
            uses = {n.id for n in _names_in(step.expr or step.observed or "0")} | {
                n.id for e in ([step.mistakes[mistake]] if mistake in step.mistakes else []) for n in _names_in(e)
            }
            if uses & missing:
                missing.add(step.name)
                continue
            try:
                self._add_step(specs, s, step, calc, context, mistake, handed)
            except (MissingFigure, KnifeEdge, OutOfDomain):
                missing.add(step.name)
        return calc

    def _add_step(
        self,
        specs: Specs,
        s: Setting,
        step: StepSpec,
        calc: Calc,
        context: dict,
        mistake: str | None,
        handed: dict[str, CalcStep] | None,
    ) -> None:
        label = render(step.label, context)
        if handed and step.name in handed:
            h = handed[step.name]
            calc.given(step.name, h.value, h.unit, label, f"scenario: {label}")
            return
        if step.observed is not None:
            # a measurement is what the system did, whatever misconception the solver holds
            if mistake is not None:
                value = self.build(specs, s, None, handed).get(step.name).value
            else:
                value = Calc(steps=list(calc.steps)).step("observed__", step.observed, step.unit, label)
            calc.given(step.name, value, step.unit, label, f"observed: {label}")
            return
        alt = step.mistakes.get(mistake) if mistake else None
        if alt is not None:
            if step.expr is None:  # a given replaced by another figure or expression
                given = self._given(specs, s, step, calc, label)
                env_name = f"{step.name}__nominal"
                calc.given(env_name, given[0], given[1], label, given[2])
                calc.step(step.name, re.sub(r"\bself\b", env_name, alt), step.unit or given[1], label)
            else:
                calc.step(step.name, alt, step.unit, label)
            return
        if step.expr is not None:
            calc.step(step.name, step.expr, step.unit, label)
        else:
            value, unit, source = self._given(specs, s, step, calc, label)
            calc.given(step.name, value, unit, label, source)

    def _given(self, specs: Specs, s: Setting, step: StepSpec, calc: Calc, label: str) -> tuple[float, str, str]:
        if step.value is not None:
            return step.value, step.unit, f"assumption: {step.why}"
        path = step.source_ or ""
        head, _, rest = path.partition(".")
        fig: Figure | float | None
        if head in ("platform", "platform_b"):
            p = s.platform if head == "platform" else s.platform_b
            if p is None:
                raise MissingFigure(f"step {step.name}: the item model varies no {head}")
            if rest.startswith("interconnect."):
                ic = specs.interconnect_by_id.get(p.interconnect or "")
                attr = rest.split(".", 1)[1]
                fig = getattr(ic, attr, None) if ic else None
                source = f"specs/hardware.yaml: interconnects.{p.interconnect}.{attr}"
            else:
                fig = _platform_figure(p, rest)
                source = f"specs/hardware.yaml: {p.id}.{_figure_path(p, rest)}"
        elif head == "workload":
            if s.workload is None:
                raise MissingFigure(f"step {step.name}: the item model varies no workload")
            fig = getattr(s.workload, rest, None)
            source = f"specs/workloads.yaml: {s.workload.id}.{rest}"
        elif head == "interconnect":
            ic_id, _, attr = rest.partition(".")
            ic = specs.interconnect_by_id.get(ic_id)
            fig = getattr(ic, attr, None) if ic else None
            source = f"specs/hardware.yaml: interconnects.{ic_id}.{attr}"
        elif head in ("economics", "energy_per_op", "energy_sources"):
            fig = getattr(specs.hardware, head).get(rest)
            source = f"specs/hardware.yaml: {head}.{rest}"
        elif head == "param":
            fig = dict(s.params).get(rest)
            source = f"scenario: {label}"
        else:
            raise CalcError(f"step {step.name}: unknown figure path {path!r}")
        if fig is None:
            raise MissingFigure(f"step {step.name}: {path} has no value for this setting")
        if isinstance(fig, Figure):
            value, unit = fig.value, fig.unit
            if not step.unit and fig.q.dimensionless:  # a count (`geometry:`) reads as a bare number
                value, unit = float(fig.q.to("").magnitude), ""
            elif step.unit and step.unit != fig.unit:
                value, unit = float(fig.q.to(step.unit).magnitude), step.unit
            return value, unit, source
        return float(fig), step.unit, source

    @staticmethod
    def _names(s: Setting) -> dict:
        def short(p: Platform | None) -> str:
            return p.name.split(" (")[0] if p else ""

        return {
            "platform": s.platform.name if s.platform else "",
            "platform_short": short(s.platform),
            "platform_id": s.platform.id if s.platform else "",
            "kernels": (s.platform.kernel_library or "") if s.platform else "",
            "platform_b": s.platform_b.name if s.platform_b else "",
            "platform_b_short": short(s.platform_b),
            "workload": s.workload.name if s.workload else "",
            "track": s.track,
        }

    def claims(self, d: Design | None, calc: Calc) -> dict[str, bool]:
        exprs = {**self.spec.claims, **(d.claims if d else {})}
        return {name: calc.holds(expr) for name, expr in exprs.items()}

    @cached_property
    def step_names(self) -> list[str]:
        return [s.name for s in self.spec.calc]


def _precision(p: Platform, wanted: str) -> str | None:
    """The compute key a path names: ``int8``, ``default`` (the part's default precision), or
    alternatives in order, ``int8_gpu|default`` (the GPU's own figure where the part lists one
    apart from its module total, as a Jetson does)."""
    for alt in wanted.split("|"):
        key = p.default_precision if alt == "default" else alt
        if key in p.compute:
            return key
    return None


def _named(table: dict[str, Figure], wanted: str) -> str | None:
    """The first of ``a|b|c`` that ``table`` holds (``on_chip.l2_cache|dtcm``), or None."""
    return next((alt for alt in wanted.split("|") if alt in table), None)


def _platform_figure(p: Platform, path: str) -> Figure | None:
    """A platform's own figure by path (``memory``, ``compute.int8``, ``compute.default``,
    ``compute.int8_gpu|default``, ``on_chip.threadgroup_memory``, ``geometry.gpu_cores``,
    alternatives separated by ``|``); ``interconnect.*`` paths go through the interconnect table
    (see ``_has_figure``)."""
    if path.startswith("compute."):
        key = _precision(p, path.split(".", 1)[1])
        return p.compute[key] if key else None
    head, _, rest = path.partition(".")
    if head in ("on_chip", "geometry"):
        table = getattr(p, head)
        key = _named(table, rest)
        return table[key] if key else None
    value = getattr(p, path, None)
    return value if isinstance(value, Figure) else None


def _has_figure(specs: Specs, p: Platform, path: str) -> bool:
    if path.startswith("interconnect."):
        ic = specs.interconnect_by_id.get(p.interconnect or "")
        return ic is not None and getattr(ic, path.split(".", 1)[1], None) is not None
    return _platform_figure(p, path) is not None


def _figure_path(p: Platform, path: str) -> str:
    if path.startswith("compute."):
        return f"compute.{_precision(p, path.split('.', 1)[1])}"
    head, _, rest = path.partition(".")
    if head in ("on_chip", "geometry"):
        return f"{head}.{_named(getattr(p, head), rest)}"
    return path


# ---------------------------------------------------------------------- rendering one draft


def _prose(step: CalcStep) -> str:
    """A step's value as the text quotes it: a given figure as its source states it (204.8 GB/s),
    a derived or measured one to three significant figures."""
    computed = step.kind == "derived" or str(step.source or "").startswith("observed")
    return fmt_quantity(step.value, step.unit, PROSE_SIG if computed else SIG_FIGS)


def _closure(calc: Calc, names: list[str]) -> list[CalcStep]:
    keep: set[str] = set()
    for n in names:
        keep.update(s.name for s in calc.closure(n))
    return [s for s in calc.steps if s.name in keep]


@dataclass(frozen=True)
class Plan:
    """A design at a setting, computed but not yet rendered: enough to know its reasoning."""

    calc: Calc
    wrong_calc: Calc
    claims: dict[str, bool]
    reasoning: str  # item model, design and the outcome of its claims: same reasoning, same question


def plan(model: ItemModel, specs: Specs, d: Design, s: Setting) -> Plan | None:
    """Compute design ``d`` at setting ``s``, or None where the setting does not suit it (a
    figure is missing, a ``when`` condition fails, or the misconception changes nothing)."""
    try:
        calc = model.build(specs, s)
        if not all(calc.holds(w) for w in model.spec.when + d.when):
            return None
        handed = {n: calc.get(n) for n in d.hands_over} or None
        if handed:
            calc = model.build(specs, s, handed=handed)
        wrong_calc = model.build(specs, s, mistake=d.mistake, handed=handed)
        claims = model.claims(d, calc)
        answer, wrong = calc.get(d.answer).value, wrong_calc.get(d.answer).value
        for name in [d.symptom, d.decision, d.lever, *d.options, *d.shows, *d.distractors, *d.hands_over]:
            if name:
                calc.get(name)
    except (CalcError, KeyError):  # a figure this design needs is missing at this setting
        return None
    if not _differs(answer, wrong) or answer <= 0:
        return None
    return Plan(calc, wrong_calc, claims, reasoning_key(model.id, d, claims))


def reasoning_key(model_id: str, d: Design, claims: dict[str, bool]) -> str:
    """Two questions are the same if a candidate would solve them the same way: the same item
    model and design whose claims that decide the conclusion come out the same. A remark only
    chooses wording ("room to widen", "screening is cheap"), so it is not part of the key."""
    outcome = ",".join(f"{k}={int(v)}" for k, v in sorted(claims.items()) if k not in d.remarks)
    return f"{model_id}|{d.id}|{outcome}"


def draft(model: ItemModel, specs: Specs, d: Design, s: Setting, topic: str, p: Plan | None = None) -> Draft | None:
    """Render design ``d`` at setting ``s`` (see :func:`plan` for when it gives None)."""
    p = p or plan(model, specs, d, s)
    if p is None:
        return None
    calc, wrong_calc, claims = p.calc, p.wrong_calc, p.claims
    answer = calc.get(d.answer)
    wrong = wrong_calc.get(d.answer).value
    claim_exprs = {**model.spec.claims, **d.claims}
    used = [d.answer] + [n for n in (d.symptom, d.decision, d.lever) if n] + d.options + d.shows
    used += [n.id for e in claim_exprs.values() for n in _names_in(e) if n.id in model.step_names]
    steps = _closure(calc, used)
    names = {st.name for st in steps}
    steps += [st for st in calc.steps if st.name in d.distractors and st.name not in names]
    steps = _answer_last(model, d, steps)
    context = {
        **ItemModel._names(s),
        **{st.name: _prose(st) for st in calc.steps if "__" not in st.name},
        "n": _Ns({st.name: st.value for st in calc.steps}),
        "c": _Ns(claims),
        "w": _Ns({st.name: _prose(st) for st in wrong_calc.steps}),
        "answer": fmt_quantity(answer.value, answer.unit, PROSE_SIG),
        "wrong": fmt_quantity(wrong, answer.unit, PROSE_SIG),
    }
    mis = model.spec.misconceptions[d.mistake]
    try:
        texts = {k: render(getattr(d, k), context) for k in ("title", "scenario", "question", "solution", "conclusion")}
        mistake_text = common_mistake(
            {k: render(getattr(mis, k), context) for k in ("pitfall", "rationale", "consequence")}
        )
        if d.alternatives:
            texts["solution"] = " ".join([texts["solution"], *(render(a, context) for a in d.alternatives)])
    except jinja2.TemplateError as exc:
        raise ItemModelError(f"{model.path.name}: questions.{d.id}: {exc}") from None
    return Draft(
        item_model=model.id,
        design=d.id,
        topic=topic,
        title=texts["title"],
        scenario=texts["scenario"],
        question=texts["question"],
        realistic_solution=texts["solution"],
        common_mistake=mistake_text,
        napkin_math=napkin_math(steps, texts["conclusion"]),
        calc=steps,
        answer=answer,
        mistake_id=d.mistake,
        mistake_value=wrong,
        claims=[{"name": k, "expression": claim_exprs[k], "holds": v} for k, v in claims.items()],
        distractors=list(d.distractors),
        setting=s,
        signature=f"{model.id}|{d.id}|{s.key}",
        reasoning=p.reasoning,
    )


def _answer_last(model: ItemModel, d: Design, steps: list[CalcStep]) -> list[CalcStep]:
    """Chain order with the answer moved to the end (readers take the last step as the answer)."""
    steps = sorted(steps, key=lambda st: model.step_names.index(st.name) if st.name in model.step_names else -1)
    after = [st for st in steps if st.kind == "derived" and d.answer in {n.id for n in _names_in(st.expression)}]
    if after:
        raise ItemModelError(
            f"{model.path.name}: questions.{d.id}: step {after[0].name} uses the answer "
            f"{d.answer}; the answer must be the last step the question shows"
        )
    return [st for st in steps if st.name != d.answer] + [st for st in steps if st.name == d.answer]


def _names_in(expression: str):
    return [n for n in ast.walk(ast.parse(expression, mode="eval")) if isinstance(n, ast.Name)]


# ---------------------------------------------------------------------- the registry


@lru_cache(maxsize=None)
def _load_version(path: str, mtime_ns: int, size: int) -> ItemModel:
    return ItemModel.load(Path(path))


def _load_one(path: str) -> ItemModel:
    """One file's item model, parsed once per process and again when the file changes."""
    stat = Path(path).stat()
    return _load_version(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load_all(directory: str) -> dict[str, ItemModel]:
    models = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        m = _load_one(str(path))
        models[m.id] = m
    return models


def _directory(directory: Path | None = None) -> Path:
    return Path(directory or assets_dir() / "item_models")


def item_models(directory: Path | None = None) -> dict[str, ItemModel]:
    """Every item model in ``assets/item_models/``, loaded once per process."""
    return _load_all(str(_directory(directory)))


def item_model(model_id: str) -> ItemModel | None:
    """One item model by id (its file name), loading only that file; None when there is none."""
    path = _directory() / f"{model_id}.yaml"
    return _load_one(str(path)) if path.is_file() and "/" not in model_id else None


def check_item_models(specs: Specs, directory: Path | None = None) -> int:
    """Load every item model and check its references against specs; raise ItemModelError
    naming the file on the first problem. Returns how many were checked."""
    models = item_models(directory)
    for model in models.values():
        model.check_against(specs)
    return len(models)


def models_for_topic(topic: str, track: str) -> list[ItemModel]:
    """The item models whose mechanism is the topic's own, on this track. Only files that
    name the topic are parsed (a model lists its topics by id), so one partition's run reads
    a few of the ~200 files instead of all (parsing all takes 1-2 s)."""
    paths = sorted(_directory().glob("*.yaml"))
    models = [_load_one(str(p)) for p in paths if topic in p.read_text(encoding="utf-8")]
    return [
        m
        for m in models
        if track in m.tracks and (topic in m.spec.topics or any(topic in (d.topics or []) for d in m.spec.questions))
    ]


def assigned_topic(model: ItemModel, d: Design, s: Setting) -> str:
    """A design serving several topics gives each setting to one of them, so the same
    computation never appears under two topics of a track."""
    topics = d.topics or model.spec.topics
    if len(topics) == 1:
        return topics[0]
    digest = int(hashlib.sha256(f"{model.id}|{d.id}|{s.key}".encode()).hexdigest()[:8], 16)
    return topics[digest % len(topics)]


def native_item_model_counts(pairs: list[tuple[str, str]]) -> list[dict]:
    """How many item models compute each (topic, track)'s own mechanism."""
    return [{"topic": t, "track": k, "native_item_models": len(models_for_topic(t, k))} for t, k in pairs]
