"""The human-authored inputs of the backward design (``specs/*.yaml``), loaded and validated.

Every file is parsed with the safe YAML loader into a pydantic model. Any problem raises
:class:`SpecError` naming the file, the key path and what is wrong, so nothing is ever
materialized from a bad spec. Cross-file references (a topic requiring an unknown
substrate, a platform on an unknown track, ...) are checked in :func:`load_specs`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from functools import cached_property
from itertools import combinations
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from staffml_dagster.units import parse_unit, quantity

TRACK_IDS = ("cloud", "edge", "mobile", "tinyml")
LEVEL_IDS = ("L1", "L2", "L3", "L4", "L5", "L6+")
SLUG = r"^[a-z0-9][a-z0-9-]*$"
SLUG_KEY = re.compile(r"[a-z][a-z0-9_]*")


class SAFE_YAML(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # noqa: N801 - used like yaml's loader classes
    """The safe loader (in C where libyaml is there, ten times faster) that refuses a key
    written twice in one mapping, which YAML would otherwise resolve silently to the last."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r} (first written on line {first.start_mark.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)


class SpecError(ValueError):
    """A spec file is missing, malformed or inconsistent. The message names file and key."""

    def __init__(self, file: str, key: str, problem: str):
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- figures


class Figure(_Model):
    """A number with its unit and where it comes from."""

    value: float = Field(gt=0)
    unit: str
    source: str = Field(min_length=3)
    note: str | None = None

    @field_validator("unit")
    @classmethod
    def _unit_parses(cls, unit: str) -> str:
        parse_unit(unit)
        return unit

    @property
    def q(self):
        """The figure as a pint Quantity."""
        return quantity(self.value, self.unit)


def _measuring(what: str, *dimensions: str) -> AfterValidator:
    """A check that a figure's unit has one of ``dimensions`` (a bandwidth in bytes per time, ...)."""

    def check(figure: Figure) -> Figure:
        if not any(figure.q.check(d) for d in dimensions):
            raise ValueError(
                f"unit {figure.unit!r} measures {figure.q.dimensionality}, but {what} needs " + " or ".join(dimensions)
            )
        return figure

    return AfterValidator(check)


Size = Annotated[Figure, _measuring("a size", "[information]")]
Bandwidth = Annotated[Figure, _measuring("a bandwidth", "[information] / [time]")]
ComputeRate = Annotated[Figure, _measuring("a compute rate", "[operation] / [time]")]
Operations = Annotated[Figure, _measuring("an operation count", "[operation]")]
Power = Annotated[Figure, _measuring("a power", "[power]")]
Duration = Annotated[Figure, _measuring("a duration", "[time]")]
Frequency = Annotated[Figure, _measuring("a frequency", "1 / [time]")]
Money = Annotated[Figure, _measuring("a price", "[currency]")]
Count = Annotated[Figure, _measuring("a count", "[]")]
EnergyPerOp = Annotated[
    Figure, _measuring("an energy per operation or per byte", "[energy]", "[energy] / [information]")
]
EnergySource = Annotated[
    Figure, _measuring("a stored energy or a harvested power density", "[energy]", "[power] / [area]")
]


# --------------------------------------------------------------------------- skills, zones, levels


class Skill(_Model):
    id: str = Field(pattern=SLUG)
    description: str = Field(min_length=10)
    observable: str = Field(min_length=10, description="what a candidate does that shows the skill")


class SkillsSpec(_Model):
    skills: list[Skill] = Field(min_length=1)

    @field_validator("skills")
    @classmethod
    def _unique(cls, skills: list[Skill]) -> list[Skill]:
        _require_unique([s.id for s in skills], "id")
        return skills


class ZoneSpecEntry(_Model):
    description: str = Field(min_length=10)
    asks: str = Field(min_length=5, description="what a question in this zone asks the candidate to do")
    levels: list[str] = Field(min_length=1, description="level affinity")

    @field_validator("levels")
    @classmethod
    def _known_levels(cls, levels: list[str]) -> list[str]:
        for level in levels:
            if level not in LEVEL_IDS:
                raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVEL_IDS)}")
        return levels


class IntegrationZone(ZoneSpecEntry):
    skills: list[str] = Field(min_length=3)


class PairZone(ZoneSpecEntry):
    skills: list[str] = Field(min_length=2, max_length=2)


class ZonesSpec(_Model):
    """Single-skill zones take the skill's id; pairs are named here; integration zones are declared."""

    singles: dict[str, ZoneSpecEntry]
    pairs: dict[str, PairZone]
    integration: dict[str, IntegrationZone]


class Level(_Model):
    id: str
    name: str
    scope: str = Field(min_length=10)
    steps: tuple[int, int] = Field(description="min and max reasoning steps")
    specs: Literal["given", "partial", "withheld"]
    order: int

    @field_validator("id")
    @classmethod
    def _known(cls, level_id: str) -> str:
        if level_id not in LEVEL_IDS:
            raise ValueError(f"unknown level {level_id!r}; expected one of {', '.join(LEVEL_IDS)}")
        return level_id

    @model_validator(mode="after")
    def _steps_ordered(self) -> "Level":
        if not 1 <= self.steps[0] <= self.steps[1]:
            raise ValueError(f"steps must satisfy 1 <= min <= max, got {list(self.steps)}")
        return self


class LevelsSpec(_Model):
    levels: list[Level]

    @field_validator("levels")
    @classmethod
    def _all_levels(cls, levels: list[Level]) -> list[Level]:
        ids = [lv.id for lv in levels]
        _require_unique(ids, "id")
        if sorted(ids, key=LEVEL_IDS.index) != list(LEVEL_IDS) or len(ids) != len(LEVEL_IDS):
            raise ValueError(f"levels must be exactly {', '.join(LEVEL_IDS)}, got {', '.join(ids)}")
        return levels


# --------------------------------------------------------------------------- tracks


class Substrate(_Model):
    name: str
    physics: str = Field(min_length=10, description="what physical capability this is, as a noun phrase")


class TrackScale(_Model):
    memory: Size
    compute: ComputeRate
    power: Power
    latency_budget: Duration


class Track(_Model):
    id: str
    name: str
    description: str = Field(min_length=10)
    provides: list[str] = Field(min_length=1)
    scale: TrackScale
    scale_points: dict[str, Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)]] = Field(
        description="named scale axes with the values this track actually runs at (e.g. devices: [1, 8, 64])"
    )

    @field_validator("id")
    @classmethod
    def _known(cls, track_id: str) -> str:
        if track_id not in TRACK_IDS:
            raise ValueError(f"unknown track {track_id!r}; expected one of {', '.join(TRACK_IDS)}")
        return track_id


class TracksSpec(_Model):
    substrates: dict[str, Substrate]
    tracks: list[Track] = Field(min_length=1)

    @field_validator("tracks")
    @classmethod
    def _unique(cls, tracks: list[Track]) -> list[Track]:
        _require_unique([t.id for t in tracks], "id")
        return tracks


# --------------------------------------------------------------------------- topics


class Topic(_Model):
    id: str = Field(pattern=SLUG)
    name: str
    area: str
    tier: Literal["v0", "tier-a"]
    description: str = Field(min_length=40)
    mechanism: str = Field(
        min_length=40, max_length=400, description="the quantitative mechanism a question on this topic turns on"
    )
    requires: list[str] = Field(default_factory=list, description="substrates that must be present")
    prerequisites: list[str] = Field(default_factory=list)
    related: list[str] = Field(default_factory=list)
    narrower: list[str] = Field(default_factory=list)
    architectures: list[str] = Field(min_length=1, description="workload families that apply")
    failure_modes: list[str] = Field(min_length=2)
    scale_axes: list[str] = Field(min_length=1, description="track scale axes whose points vary the topic")
    critical: bool = Field(
        default=False,
        description="a foundation other topics build on: its open gaps are filled before those of other topics",
    )


class TopicsSpec(_Model):
    areas: list[str] = Field(min_length=1)
    topics: list[Topic] = Field(min_length=1)

    @field_validator("topics")
    @classmethod
    def _unique(cls, topics: list[Topic]) -> list[Topic]:
        _require_unique([t.id for t in topics], "id")
        return topics


# --------------------------------------------------------------------------- hardware and workloads


class Platform(_Model):
    id: str = Field(pattern=SLUG)
    name: str
    vendor: str
    track: str
    kind: Literal["gpu", "tpu", "npu", "soc", "accelerator", "mcu"]
    memory: Size
    memory_kind: str
    memory_bandwidth: Bandwidth | None = Field(
        default=None, description="None for host-attached accelerators whose on-chip memory bandwidth is unpublished"
    )
    compute: dict[str, ComputeRate] = Field(min_length=1, description="peak throughput per precision (fp16, int8, ...)")
    default_precision: str
    power: Power | None = Field(
        default=None,
        description="None where the vendor publishes no power for the part (an NPU subsystem inside a larger SoC)",
    )
    idle_power: Power | None = None
    clock: Frequency | None = None
    flash: Size | None = None
    interconnect: str | None = None
    unit_cost: Money | None = None
    kernel_library: str | None = Field(
        default=None,
        description=(
            "the vendor's optimized INT8 kernels a question names (CMSIS-NN on a Cortex-M, ESP-NN on the ESP32-S3)"
        ),
    )
    on_chip: dict[str, Size] = Field(
        default_factory=dict,
        description=(
            "named on-chip memories (l2_cache, shared_memory_per_sm, dtcm, threadgroup_memory, ...), each a "
            "size in bytes"
        ),
    )
    geometry: dict[str, Count] = Field(
        default_factory=dict,
        description=(
            "counts that shape how work maps onto the part (gpu_cores, simd_width, "
            "max_threads_per_threadgroup, ...), unit `count`"
        ),
    )

    @field_validator("on_chip", "geometry")
    @classmethod
    def _snake_case_names(cls, figures: dict[str, Figure], info) -> dict[str, Figure]:
        """Names a template reads as platform.<field>.<name>; sizes and counts are checked by their types."""
        for name, fig in figures.items():
            if not SLUG_KEY.fullmatch(name):
                raise ValueError(f"{info.field_name} name {name!r} must be lower_snake_case")
            if info.field_name == "geometry" and fig.value != int(fig.value):
                raise ValueError(f"geometry {name!r} is {fig.value} {fig.unit}, not a whole count")
        return figures

    @model_validator(mode="after")
    def _default_precision_known(self) -> "Platform":
        if self.default_precision not in self.compute:
            raise ValueError(
                f"default_precision {self.default_precision!r} is not a key of compute ({', '.join(self.compute)})"
            )
        if self.power is None and self.kind != "npu":
            raise ValueError(
                f"power is missing; only an npu subsystem of a larger part may leave it out (kind is {self.kind!r})"
            )
        return self


class Interconnect(_Model):
    id: str = Field(pattern=SLUG)
    name: str
    scope: Literal["intra-node", "inter-node", "host-bus", "storage", "peripheral", "wireless"]
    tracks: list[str] = Field(min_length=1)
    bandwidth: Bandwidth
    latency: Duration | None = None


class HardwareSpec(_Model):
    conventions: list[str] = Field(min_length=1, description="where sources disagree, the convention pinned here")
    platforms: list[Platform] = Field(min_length=1)
    interconnects: list[Interconnect]
    energy_per_op: dict[str, EnergyPerOp]
    economics: dict[str, Figure]
    energy_sources: dict[str, EnergySource] = Field(default_factory=dict)

    @field_validator("platforms")
    @classmethod
    def _unique_platforms(cls, platforms: list[Platform]) -> list[Platform]:
        _require_unique([p.id for p in platforms], "id")
        return platforms

    @field_validator("interconnects")
    @classmethod
    def _unique_interconnects(cls, interconnects: list[Interconnect]) -> list[Interconnect]:
        _require_unique([i.id for i in interconnects], "id")
        return interconnects


class Workload(_Model):
    """A concrete model architecture that questions compute with."""

    id: str = Field(pattern=SLUG)
    name: str
    family: str = Field(pattern=SLUG)
    tracks: list[str] = Field(min_length=1)
    params: float = Field(gt=0, description="parameter count")
    flops_per_inference: Operations = Field(description="forward FLOPs per sample, or per token for decoders")
    layers: int | None = Field(default=None, gt=0)
    hidden: int | None = Field(default=None, gt=0)
    heads: int | None = Field(default=None, gt=0)
    kv_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    activation_bytes: Size | None = Field(default=None, description="peak activation memory per sample at INT8")
    max_context: Count | None = Field(
        default=None, description="the longest context (tokens) the released model supports"
    )
    input: str
    source: str = Field(min_length=3)


class WorkloadsSpec(_Model):
    families: dict[str, str] = Field(description="family id -> what it covers")
    workloads: list[Workload] = Field(min_length=1)

    @field_validator("workloads")
    @classmethod
    def _unique(cls, workloads: list[Workload]) -> list[Workload]:
        _require_unique([w.id for w in workloads], "id")
        return workloads


# --------------------------------------------------------------------------- generation settings


class CapacityMeasurement(_Model):
    """How a cell's empirical capacity is measured (stages/capacity.py)."""

    round_size: int = Field(gt=0, description="questions drawn from the backend per round")
    max_rounds: int = Field(gt=0)
    min_rounds: int = Field(gt=0, default=2)
    coverage_target: float = Field(gt=0, le=1, description="stop once estimated sample coverage reaches this")
    min_novelty: float = Field(
        ge=0, le=1, description="stop once a round's share of new distinct questions falls below this"
    )
    schedule: str = Field(description="cron schedule of the re-estimation job")


class GapPriority(_Model):
    """Which open gaps (cells below their measured capacity) are filled first (quality/gaps.py)."""

    zones: list[str] = Field(default_factory=list, description="zones whose gaps come first, in this order")


class GenerationSpec(_Model):
    seed: int = 20261128
    questions_per_cell: int = Field(gt=0, description="bound for cells whose capacity has not been measured yet")
    capacity: CapacityMeasurement
    gap_priority: GapPriority = Field(default_factory=GapPriority)


class Expectation(_Model):
    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict = Field(default_factory=dict)


class Suite(_Model):
    description: str
    blocking: bool = False
    expectations: list[Expectation] = Field(min_length=1)


class QualitySpec(_Model):
    numeric_tolerance: float = Field(gt=0, lt=1)
    grounding_tolerance: float = Field(gt=0, lt=1)
    similarity_threshold: float = Field(gt=0, le=1)
    balance_max_cv: float = Field(gt=0)
    max_topic_share: float = Field(gt=0, le=1)
    topic_fit_top_k: int = Field(
        default=3, ge=1, description="topic_fit: a question's topic must be among its k closest topics"
    )
    applicability_min_pass_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description=(
            "applicability evidence: an applicable pair whose generated questions pass below this share is flagged"
        ),
    )
    suites: dict[str, Suite]


# --------------------------------------------------------------------------- all specs


class Zone(_Model):
    """A derived or declared zone, as the ``zones`` asset produces it."""

    id: str
    kind: Literal["single", "pair", "integration"]
    skills: tuple[str, ...]
    description: str
    asks: str
    levels: tuple[str, ...]


class Specs(_Model):
    root: str
    skills: SkillsSpec
    zones_spec: ZonesSpec
    levels: LevelsSpec
    tracks: TracksSpec
    topics: TopicsSpec
    hardware: HardwareSpec
    workloads: WorkloadsSpec
    generation: GenerationSpec
    quality: QualitySpec
    version: str = Field(description="content hash of every spec file; part of question provenance")

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, ignored_types=(cached_property,))

    @cached_property
    def zones(self) -> list[Zone]:
        return derive_zones(self.skills, self.zones_spec)

    @cached_property
    def topic_by_id(self) -> dict[str, Topic]:
        return {t.id: t for t in self.topics.topics}

    @cached_property
    def track_by_id(self) -> dict[str, Track]:
        return {t.id: t for t in self.tracks.tracks}

    @cached_property
    def level_by_id(self) -> dict[str, Level]:
        return {lv.id: lv for lv in self.levels.levels}

    @cached_property
    def zone_by_id(self) -> dict[str, Zone]:
        return {z.id: z for z in self.zones}

    @cached_property
    def platform_by_id(self) -> dict[str, Platform]:
        return {p.id: p for p in self.hardware.platforms}

    @cached_property
    def interconnect_by_id(self) -> dict[str, Interconnect]:
        return {i.id: i for i in self.hardware.interconnects}

    def platforms_for(self, track: str) -> list[Platform]:
        return [p for p in self.hardware.platforms if p.track == track]

    def workloads_for(self, topic: str, track: str) -> list[Workload]:
        families = set(self.topic_by_id[topic].architectures)
        return [w for w in self.workloads.workloads if w.family in families and track in w.tracks]

    def scale_points_for(self, topic: str, track: str) -> list[tuple[str, float]]:
        axes = self.track_by_id[track].scale_points
        return [(axis, value) for axis in self.topic_by_id[topic].scale_axes for value in axes.get(axis, [])]


def derive_zones(skills: SkillsSpec, spec: ZonesSpec) -> list[Zone]:
    """Singles and pairs come from the skills; the integration zones are declared.

    Every skill must have a single-zone entry and every unordered pair of skills a named
    pair zone, with nothing extra; otherwise :class:`SpecError` names what is missing.
    """
    skill_ids = [s.id for s in skills.skills]
    zones: list[Zone] = []
    if set(spec.singles) != set(skill_ids):
        missing, extra = set(skill_ids) - set(spec.singles), set(spec.singles) - set(skill_ids)
        raise SpecError(
            "zones.yaml",
            "singles",
            f"must describe exactly the skills; missing {sorted(missing)}, extra {sorted(extra)}",
        )
    for skill in skill_ids:
        entry = spec.singles[skill]
        zones.append(
            Zone(
                id=skill,
                kind="single",
                skills=(skill,),
                description=entry.description,
                asks=entry.asks,
                levels=tuple(entry.levels),
            )
        )
    named = {frozenset(p.skills): (name, p) for name, p in spec.pairs.items()}
    for name, pair in spec.pairs.items():
        unknown = [s for s in pair.skills if s not in skill_ids]
        if unknown:
            raise SpecError("zones.yaml", f"pairs.{name}.skills", f"unknown skill(s) {unknown}")
    if len(named) != len(spec.pairs):
        raise SpecError("zones.yaml", "pairs", "two pair zones name the same pair of skills")
    for a, b in combinations(skill_ids, 2):
        if frozenset((a, b)) not in named:
            raise SpecError("zones.yaml", "pairs", f"no zone is named for the skill pair {a} + {b}")
        name, pair = named[frozenset((a, b))]
        zones.append(
            Zone(
                id=name,
                kind="pair",
                skills=(a, b),
                description=pair.description,
                asks=pair.asks,
                levels=tuple(pair.levels),
            )
        )
    for name, zone in spec.integration.items():
        unknown = [s for s in zone.skills if s not in skill_ids]
        if unknown:
            raise SpecError("zones.yaml", f"integration.{name}.skills", f"unknown skill(s) {unknown}")
        zones.append(
            Zone(
                id=name,
                kind="integration",
                skills=tuple(zone.skills),
                description=zone.description,
                asks=zone.asks,
                levels=tuple(zone.levels),
            )
        )
    ids = [z.id for z in zones]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SpecError("zones.yaml", "zones", f"zone name(s) used twice: {dupes}")
    return zones


# --------------------------------------------------------------------------- loading

SPEC_FILES = {
    "skills": ("skills.yaml", SkillsSpec),
    "zones_spec": ("zones.yaml", ZonesSpec),
    "levels": ("levels.yaml", LevelsSpec),
    "tracks": ("tracks.yaml", TracksSpec),
    "topics": ("topics.yaml", TopicsSpec),
    "hardware": ("hardware.yaml", HardwareSpec),
    "workloads": ("workloads.yaml", WorkloadsSpec),
    "generation": ("generation.yaml", GenerationSpec),
    "quality": ("quality.yaml", QualitySpec),
}


def default_specs_dir() -> Path:
    env = os.environ.get("STAFFML_SPECS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "specs"


def _require_unique(ids: list[str], key: str) -> None:
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate {key}(s): {', '.join(dupes)}")


def _location(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _named_location(data: object, loc: tuple) -> str:
    """Like _location, but shows a list item's id when it has one: topics[3](kv-cache-management).requires."""
    out, node = "", data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
            ident = node.get("id") if isinstance(node, dict) else None
            out += f"[{part}]" + (f"({ident})" if ident else "")
        elif isinstance(node, dict) and part in node:
            node = node[part]
            out += f".{part}" if out else str(part)
        else:
            node = None
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def find_non_finite(data: object, loc: tuple = ()) -> tuple | None:
    """The location of the first infinite or NaN number in parsed YAML, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return loc
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in children:
        found = find_non_finite(value, (*loc, key))
        if found is not None:
            return found
    return None


def load_file(path: Path, model: type[_Model]) -> _Model:
    name = path.name
    if not path.is_file():
        raise SpecError(name, "<file>", f"not found at {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            name,
            f"line {line}",
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
        ) from None
    try:
        data = yaml.load(text, Loader=SAFE_YAML)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "<file>"
        raise SpecError(name, where, f"is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(name, "<root>", f"must be a mapping, got {type(data).__name__}")
    bad = find_non_finite(data)
    if bad is not None:
        raise SpecError(
            name, _named_location(data, bad), "is not a finite number (.inf or .nan); every figure must be a real value"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise SpecError(name, _named_location(data, err["loc"]), msg + more) from None


def _spec_version(directory: Path) -> str:
    digest = hashlib.sha256()
    for key in sorted(SPEC_FILES):
        file = directory / SPEC_FILES[key][0]
        content = file.read_bytes() if file.is_file() else b"<missing>"
        digest.update(file.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:12]


def load_specs(directory: Path | str | None = None) -> Specs:
    """Load and cross-check every spec file. Raises :class:`SpecError` on the first problem."""
    directory = Path(directory) if directory else default_specs_dir()
    parts = {key: load_file(directory / filename, model) for key, (filename, model) in SPEC_FILES.items()}
    specs = Specs(root=str(directory), version=_spec_version(directory), **parts)
    check_references(specs)
    zone_ids = {z.id for z in specs.zones}  # derived now, so a bad zones.yaml fails at load time
    for i, zone in enumerate(specs.generation.gap_priority.zones):
        if zone not in zone_ids:
            raise SpecError(
                "generation.yaml",
                f"gap_priority.zones[{i}]",
                f"unknown zone {zone!r} (zones: {', '.join(sorted(zone_ids))})",
            )
    return specs


def check_references(specs: Specs) -> None:
    """Cross-file consistency: every id a spec mentions must exist where it is defined."""
    substrates = specs.tracks.substrates
    level_ids = set(LEVEL_IDS)
    for i, track in enumerate(specs.tracks.tracks):
        for s in track.provides:
            if s not in substrates:
                raise SpecError("tracks.yaml", f"tracks[{i}]({track.id}).provides", f"unknown substrate {s!r}")
    missing_tracks = set(TRACK_IDS) - set(specs.track_by_id)
    if missing_tracks:
        raise SpecError("tracks.yaml", "tracks", f"missing track(s) {sorted(missing_tracks)}")
    topic_ids = set(specs.topic_by_id)
    areas = set(specs.topics.areas)
    families = set(specs.workloads.families)
    for i, topic in enumerate(specs.topics.topics):
        where = f"topics[{i}]({topic.id})"
        if topic.area not in areas:
            raise SpecError("topics.yaml", f"{where}.area", f"unknown competency area {topic.area!r}")
        for s in topic.requires:
            if s not in substrates:
                raise SpecError(
                    "topics.yaml", f"{where}.requires", f"unknown substrate {s!r} (not in tracks.yaml substrates)"
                )
        for key in ("prerequisites", "related", "narrower"):
            for target in getattr(topic, key):
                if target not in topic_ids:
                    raise SpecError("topics.yaml", f"{where}.{key}", f"edge to unknown topic {target!r}")
        for fam in topic.architectures:
            if fam not in families:
                raise SpecError(
                    "topics.yaml",
                    f"{where}.architectures",
                    f"unknown workload family {fam!r} (not in workloads.yaml families)",
                )
        all_axes = {axis for t in specs.tracks.tracks for axis in t.scale_points}
        for axis in topic.scale_axes:
            if axis not in all_axes:
                raise SpecError(
                    "topics.yaml",
                    f"{where}.scale_axes",
                    f"unknown scale axis {axis!r} (no track in tracks.yaml has it)",
                )
    cycle = find_prerequisite_cycle(specs.topics.topics)
    if cycle:
        raise SpecError("topics.yaml", "prerequisites", "prerequisite cycle: " + " -> ".join(cycle))
    for i, p in enumerate(specs.hardware.platforms):
        if p.track not in specs.track_by_id:
            raise SpecError("hardware.yaml", f"platforms[{i}]({p.id}).track", f"unknown track {p.track!r}")
        if p.interconnect and p.interconnect not in specs.interconnect_by_id:
            raise SpecError(
                "hardware.yaml", f"platforms[{i}]({p.id}).interconnect", f"unknown interconnect {p.interconnect!r}"
            )
    for i, ic in enumerate(specs.hardware.interconnects):
        for t in ic.tracks:
            if t not in specs.track_by_id:
                raise SpecError("hardware.yaml", f"interconnects[{i}]({ic.id}).tracks", f"unknown track {t!r}")
    for i, w in enumerate(specs.workloads.workloads):
        if w.family not in families:
            raise SpecError("workloads.yaml", f"workloads[{i}]({w.id}).family", f"unknown family {w.family!r}")
        for t in w.tracks:
            if t not in specs.track_by_id:
                raise SpecError("workloads.yaml", f"workloads[{i}]({w.id}).tracks", f"unknown track {t!r}")
    for name, entry in {**specs.zones_spec.singles, **specs.zones_spec.pairs, **specs.zones_spec.integration}.items():
        bad = [lv for lv in entry.levels if lv not in level_ids]
        if bad:
            raise SpecError("zones.yaml", f"{name}.levels", f"unknown level(s) {bad}")


def find_prerequisite_cycle(topics: list[Topic]) -> list[str] | None:
    """Return one prerequisite cycle as a list of ids (first id repeated at the end), or None."""
    graph = {t.id: t.prerequisites for t in topics}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for topic_id in graph:
        if topic_id not in state:
            found = visit(topic_id)
            if found:
                return found
    return None


_SPECS_CACHE: dict[tuple[str, str], Specs] = {}


def cached_specs(directory: Path | str | None = None) -> Specs:
    """Load specs once per process per (directory, content version)."""
    directory = Path(directory) if directory else default_specs_dir()
    key = (str(directory.resolve()), _spec_version(directory) if directory.is_dir() else "")
    if key not in _SPECS_CACHE:
        _SPECS_CACHE[key] = load_specs(directory)
    return _SPECS_CACHE[key]
