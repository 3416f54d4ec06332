"""The quality criteria and the review defects, as plain functions over a question row.

Each returns a :class:`Verdict` with a reason a person can act on. A row is a mapping
with the columns of ``generation.backend.QUESTION_COLUMNS`` (``calc``, ``claims`` and ``distractors`` may be absent for
free-text questions; the criteria that need them then pass as "unverifiable").

specificity, grounding, falsifiability, computability, distinctness and hygiene check the
form. coherence, answer_key, structure and topic_fit check what a Staff-level reviewer
checks (``../shared/docs/REVIEW_RUBRIC.md``): every figure belongs to the situation, the key's claims agree
with its numbers, zone and level are honest, and the text is about its own topic.
"""

from __future__ import annotations

import ast
import bisect
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
import pint

from staffml_dagster.core.calc import (
    CalcError,
    evaluate,
    evaluate_condition,
    fmt_number,
    fmt_quantity,
    recompute,
    stated_quantities,
)
from staffml_dagster.quality.tfidf import Tfidf
from staffml_dagster.specs import Figure, Platform, Specs
from staffml_dagster.units import Q_, parse_unit

CRITERIA = (
    "specificity",
    "grounding",
    "falsifiability",
    "computability",
    "distinctness",
    "hygiene",
    "coherence",
    "answer_key",
    "structure",
    "topic_fit",
)
# the criteria a row earns on its own (distinctness needs the rest of its cell, topic_fit the other
# topics): those of its form, and those a Staff-level reviewer checks
FORM_CRITERIA = ("specificity", "grounding", "falsifiability", "computability", "hygiene")
REVIEW_CRITERIA = ("coherence", "answer_key", "structure")
ROW_CRITERIA = FORM_CRITERIA + REVIEW_CRITERIA
# what validate_questions adds to a question row: a verdict and its reason per criterion, the overall outcome
VERDICT_COLUMNS = (*(f"{c}_{part}" for c in CRITERIA for part in ("ok", "reason")), "passed", "failures")


@dataclass(frozen=True)
class Verdict:
    criterion: str
    passed: bool
    reason: str = ""
    duplicate_of: str | None = None  # distinctness: the id of the earlier question this one repeats


def _ok(criterion: str) -> Verdict:
    return Verdict(criterion, True, "")


def _fail(criterion: str, reasons: list[str]) -> Verdict:
    return Verdict(criterion, not reasons, "; ".join(reasons))


def _text(row: Mapping, key: str) -> str:
    value = row.get(key)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _calc(row: Mapping) -> list[dict]:
    calc = row.get("calc")
    if calc is None or (isinstance(calc, float) and math.isnan(calc)):
        return []
    return [dict(step) for step in calc]


def _number(row: Mapping, key: str) -> float | None:
    value = row.get(key)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


# --------------------------------------------------------------------------- specificity

_SECOND_ASK = re.compile(r"\b(and|or)\s+(why|what|how|which|when|where|should)\b", re.IGNORECASE)


def specificity(row: Mapping, specs: Specs) -> Verdict:
    """One topic, one zone, one level; the question asks one thing; the zone fits the level."""
    problems = []
    topic, zone, level = _text(row, "topic"), _text(row, "zone"), _text(row, "level")
    if topic not in specs.topic_by_id:
        problems.append(f"unknown topic {topic!r}")
    if zone not in specs.zone_by_id:
        problems.append(f"unknown zone {zone!r}")
    elif level not in specs.zone_by_id[zone].levels:
        problems.append(f"zone {zone} fits levels {'/'.join(specs.zone_by_id[zone].levels)}, not {level}")
    if level not in specs.level_by_id:
        problems.append(f"unknown level {level!r}")
    question = _text(row, "question").strip()
    marks = question.count("?")
    if marks != 1 or not question.endswith("?"):
        problems.append(f"the question should be one sentence ending in a single '?', found {marks}")
    if _SECOND_ASK.search(question):
        problems.append(f"the question asks more than one thing ({_SECOND_ASK.search(question).group(0)!r})")
    return _fail("specificity", problems)


# --------------------------------------------------------------------------- grounding

_FIGURE_SOURCE = re.compile(r"specs/hardware\.yaml: ([a-z0-9_-]+)\.([a-z0-9_-]+)(?:\.([a-z0-9_]+))?\s*$")
# a hardware figure in text: not the digits of a precision label or a name (FP16 TFLOPS, A100), and
# a precision label may sit between number and unit (989 FP16 TFLOPS)
_QUANTITY = re.compile(
    r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)\s?(?:(?:FP|BF|TF|INT)\d+\s)?"
    r"(TB/s|GB/s|MB/s|TFLOPS|GFLOPS|MFLOPS|TOPS|GOPS|MOPS|GB|GiB|MB|MiB|kB|KiB|KB|TB|W|mW|uW|µW|MHz|GHz)\b"
)
MAX_FIGURE_TEXT = 50_000  # characters of one text searched for hardware figures
FAMILY_RANGE = 1.25  # a figure beside a family name must lie within its members' figures, widened by this factor
FAMILY_MEMORY_RANGE = (
    4.0  # memory and flash vary most across the parts of a family or a core (a Cortex-M7 MCU: 512 KB-2 MB)
)


def _platform_figures(p: Platform) -> list[pint.Quantity]:
    figs = [
        p.memory,
        p.memory_bandwidth,
        p.power,
        p.idle_power,
        p.clock,
        p.flash,
        *p.compute.values(),
        *p.on_chip.values(),
    ]
    return [f.q for f in figs if f is not None]


_FIGURES: dict[tuple[str, str], list[pint.Quantity]] = {}


def _figures_of_platform(specs: Specs, pid: str) -> list[pint.Quantity]:
    """:func:`_platform_figures` of a platform, built once per specs version (pint is slow to parse)."""
    key = (specs.version, pid)
    if key not in _FIGURES:
        _FIGURES[key] = _platform_figures(specs.platform_by_id[pid])
    return _FIGURES[key]


@lru_cache(maxsize=4096)
def _written_quantity(number: str, unit: str) -> pint.Quantity | None:
    try:
        return Q_(float(number.replace(",", "")), {"KB": "kB", "µW": "uW"}.get(unit, unit))
    except (ValueError, pint.PintError):
        return None


_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {}

# names of a family or a short form that the platform names do not spell out: (name, what the
# member platforms' names contain). "Jetson Orin" is any of the three Orin modules, "Cortex-M4"
# any Cortex-M4F part; a figure beside a family name is checked against all of its members.
FAMILY_NAMES = (
    ("Jetson Orin", "Jetson"),
    ("Cortex-M4", "Cortex-M4F"),
    ("Cortex M4", "Cortex-M4F"),
    ("Cortex-M7", "Cortex-M7"),
    ("Cortex M7", "Cortex-M7"),
    ("ESP32", "ESP32-S3"),
    ("Snapdragon", "Snapdragon"),
    ("Coral", "Coral"),
    ("Edge TPU", "Coral Edge TPU"),
    ("TPU v5p", "TPU v5p"),
    ("MI300", "MI300X"),
    ("nRF52", "nRF52840"),
)


def platform_aliases(specs: Specs) -> dict[str, tuple[str, ...]]:
    """Names by which a platform shows up in text: its full name, the name before any
    parenthesis, the names inside it (iPhone 15 Pro, STM32F407), the model-number tokens
    (H100, MI300X, ESP32-S3, nRF52840, ...) with and without a suffix letter (Cortex-M4F and
    Cortex-M4), and its families (:data:`FAMILY_NAMES`: Jetson Orin, Snapdragon, ...)."""
    if specs.version in _ALIASES:
        return _ALIASES[specs.version]
    out = {}
    for p in specs.hardware.platforms:
        base = p.name.split(" (")[0]
        names = {p.name, base, re.sub(r"\s+\d+GB$", "", base)}
        if base.startswith(p.vendor + " "):
            names.add(re.sub(r"\s+\d+GB$", "", base[len(p.vendor) + 1 :]))
        inside = re.search(r"\(([^)]*)\)", p.name)
        for part in inside.group(1).split(",") if inside else []:
            part = part.strip()
            if re.fullmatch(r"(?:iPhone \d+(?: Pro)?|STM32[A-Z]\d+)", part):
                names.add(part)
        for token in re.split(r"[\s/(),]+", p.name):
            if (
                re.search(r"[A-Za-z]", token)
                and re.search(r"\d", token)
                and len(token) >= 3
                and not re.fullmatch(r"\d+(GB|MB|KB|kB)|SXM\d|M\.2|Gen\d|LX\d|STM32\w+|PCIe\w*", token)
            ):
                names.add(token)
                if re.fullmatch(r"Cortex-M\d+F", token):
                    names.add(token[:-1])  # Cortex-M4F is written Cortex-M4 too
        for family, member in FAMILY_NAMES:
            if member in p.name:
                names.add(family)
        out[p.id] = tuple(sorted(names, key=len, reverse=True))
    _ALIASES[specs.version] = out
    return out


_PATTERNS: dict[str, tuple[re.Pattern, dict[str, set[str]]]] = {}


def _platform_pattern(specs: Specs) -> tuple[re.Pattern, dict[str, set[str]]]:
    """One regex over every alias of every platform, and which platforms an alias names."""
    if specs.version not in _PATTERNS:
        owners: dict[str, set[str]] = {}
        for pid, names in platform_aliases(specs).items():
            for name in names:
                owners.setdefault(name, set()).add(pid)
        alternatives = "|".join(re.escape(n) for n in sorted(owners, key=len, reverse=True))
        _PATTERNS[specs.version] = (
            re.compile(rf"(?<![\w-])({alternatives})(?:s\b)?(?![\w-])"),
            owners,
        )  # "8 A100s" too
    return _PATTERNS[specs.version]


def _mentioned_platforms(text: str, specs: Specs) -> set[str]:
    pattern, owners = _platform_pattern(specs)
    found: set[str] = set()
    for m in pattern.finditer(text):
        found |= owners[m.group(1)]
    return found


# parts that carry figures of their own and are not a platform: links, buses, networks, storage,
# external memory. A figure written beside one ("NVLink (900 GB/s)", "50 GB/s inter-node") is theirs.
_OTHER_PARTS = re.compile(
    r"(?<![\w-])(?:NVLink(?:\s?\d(?:\.0)?)?|NVSwitch|InfiniBand|IB|PCIe(?:\s?(?:Gen\s?)?\d(?:\.0)?)?(?:\s?x\d+)?|Ethernet|RoCE(?:\s?v2)?|CXL|ICI|"
    r"Infinity Fabric|UFS(?:\s?\d(?:\.\d)?)?|eMMC|NVMe|SSD|USB\s?\d?(?:\.\d)?|SPI|QSPI|I2C|"
    r"Wi-?Fi(?:\s?\d)?|Bluetooth|BLE|LTE(?:-M)?|MIPI|CSI-?2?|"
    r"PSRAM|interconnect|network|fabric|link|bus|inter-node|intra-node|cross-node|S3)(?![\w-])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Attribution:
    """A hardware figure written in a text and the part it is written beside."""

    text: str  # "275 TOPS"
    quantity: pint.Quantity
    start: int
    platforms: frozenset[str]  # the platform(s) the name beside it stands for; empty when none
    name: str  # that name as written ("Jetson Orin"), or the link, or ""
    other_part: bool  # written beside a link, bus, network or storage, not a platform
    usage: bool = False  # what something uses or is budgeted ("uses 6 GB", "~3 GB for the context"), not a spec


_FAMILY_ALIASES = {name for name, _ in FAMILY_NAMES} | {"Cortex-M4F", "Arm Cortex-M4F"}


def is_family_name(name: str, specs: Specs) -> bool:
    """Whether a platform name stands for a family or a core (Jetson Orin, Cortex-M7, Snapdragon)
    rather than one part: its figures are then checked against every member, loosely."""
    _, owners = _platform_pattern(specs)
    return name in _FAMILY_ALIASES or len(owners.get(name, ())) > 1


_USAGE_BEFORE = re.compile(
    r"(?:\b(?:uses?|using|used|consum\w*|takes?|taking|occup\w*|needs?|requires?|leav\w*|budget\w*|overhead|context|workspace|"
    r"footprint|activations?|weights?|draws?|allocat\w*|reserv\w*|free|only|about|approx\w*|roughly)\b[^,;()]{0,12}|~|≈)\s*$",
    re.IGNORECASE,
)
_USAGE_AFTER = re.compile(
    r"^\s*(?:of\s+)?(?:weights|activations|KV|cache|workspace|overhead|budget|free|used|remaining|headroom|footprint|usage|peak|total|for)\b",
    re.IGNORECASE,
)


def _clause_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in re.finditer(r"[;\n]|\.\s", text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return spans


def _owner_of(
    clause: str, at: int, end: int, mentions: list[tuple[int, int, str, frozenset[str] | None]], starts: list[int]
):
    """The mention a figure at [at, end) of the clause belongs to: a part named right after it
    ("50 GB/s inter-node"), the name just before the parenthesis it sits in ("Jetson Orin (275
    TOPS, 60W)"), the nearest name before it, else a name right after it ("a 32 GB Jetson").
    ``mentions`` are sorted and do not overlap; ``starts`` are their start offsets."""
    first_after = bisect.bisect_left(starts, end)
    after = [
        m
        for m in mentions[first_after : first_after + 3]
        if m[0] - end <= 40 and re.fullmatch(r"\s*(?:[\w-]+\s+)?", clause[end : m[0]])
    ]
    if after and after[0][3] is None:
        return after[0]
    opened, closed = clause.rfind("(", 0, at), clause.rfind(")", 0, at)
    if opened > closed:  # inside a parenthesis: the name written just before it
        i = bisect.bisect_right(starts, opened) - 1
        if i >= 0 and mentions[i][1] <= opened and not clause[mentions[i][1] : opened].strip():
            return mentions[i]
    i = bisect.bisect_right(starts, at) - 1
    while i >= 0 and mentions[i][1] > at:
        i -= 1
    if i >= 0:
        return mentions[i]
    near_after = [m for m in after if m[0] - end <= 25]
    return near_after[0] if near_after else None


def figure_attributions(text: str, specs: Specs) -> list[Attribution]:
    """Every hardware figure in a text (memory, bandwidth, compute, power, clock) with the part
    it is written beside. Precision labels are not figures (FP16 TFLOPS), a figure beside a
    link, bus or storage is theirs (NVLink (900 GB/s)), and a figure in parentheses after a
    name is that name's even when another name follows (Jetson Orin (275 TOPS, 60W) vs Hailo-8)."""
    pattern, owners = _platform_pattern(specs)
    text = text[:MAX_FIGURE_TEXT]  # a question's text is far shorter; a hostile one stays bounded
    out = []
    for c0, c1 in _clause_spans(text):
        clause = text[c0:c1]
        mentions = [(m.start(), m.end(), m.group(1), frozenset(owners[m.group(1)])) for m in pattern.finditer(clause)]
        taken = [(a, b) for a, b, _, _ in mentions]
        mentions += [
            (m.start(), m.end(), m.group(0), None)
            for m in _OTHER_PARTS.finditer(clause)
            if not any(a <= m.start() < b for a, b in taken)
        ]
        mentions.sort()
        starts = [m[0] for m in mentions]
        for m in _QUANTITY.finditer(clause):
            q = _written_quantity(m.group(1), m.group(2))
            if q is None:
                continue
            owner = _owner_of(clause, m.start(), m.end(), mentions, starts)
            usage = bool(
                _USAGE_BEFORE.search(clause[max(0, m.start() - 30) : m.start()])
                or _USAGE_AFTER.match(clause[m.end() : m.end() + 25])
            )
            if owner is None:
                out.append(Attribution(m.group(0), q, c0 + m.start(), frozenset(), "", False, usage))
            else:
                out.append(
                    Attribution(
                        m.group(0), q, c0 + m.start(), owner[3] or frozenset(), owner[2], owner[3] is None, usage
                    )
                )
    return out


def figure_problem(attribution: Attribution, specs: Specs, tol: float) -> str | None:
    """Why a figure disagrees with specs/hardware.yaml for the part it is written beside, or None.
    A name of one platform: the figure must be one of its figures (within ``tol``). A family
    or core name (Jetson Orin, Cortex-M7): one of any member's figures, or within a factor
    :data:`FAMILY_RANGE` (:data:`FAMILY_MEMORY_RANGE` for memory) of one, a variant not in
    the specs. A figure the text says is used, not had ("~3 GB on Orin" for the CUDA
    context, "uses 6 GB") is no spec to check."""
    if not attribution.platforms or attribution.other_part or attribution.usage:
        return None
    q = attribution.quantity
    members = [specs.platform_by_id[pid] for pid in sorted(attribution.platforms)]
    same_dim = [f for p in members for f in _figures_of_platform(specs, p.id) if f.dimensionality == q.dimensionality]
    if not same_dim:
        return None
    values = [float(q.to(f.units).magnitude) for f in same_dim]
    if any(math.isclose(v, f.magnitude, rel_tol=tol) for v, f in zip(values, same_dim)):
        return None
    if is_family_name(attribution.name, specs):
        x = float(q.to_base_units().magnitude)
        widen = FAMILY_MEMORY_RANGE if q.check("[information]") else FAMILY_RANGE
        if any(b / widen <= x <= b * widen for b in (float(f.to_base_units().magnitude) for f in same_dim)):
            return None
        return (
            f"'{attribution.text}' next to {attribution.name} is far from the figures of every {attribution.name} "
            f"in specs/hardware.yaml ({', '.join(p.id for p in members)})"
        )
    platform = members[0]
    name = attribution.name if attribution.name in platform.name else platform_aliases(specs)[platform.id][0]
    return f"'{attribution.text}' next to {name} matches none of its figures in specs/hardware.yaml"


def _cited_mismatches(text: str, specs: Specs, tol: float) -> list[str]:
    """Figures written beside a platform's name that match none of its specs."""
    return [problem for a in figure_attributions(text, specs) if (problem := figure_problem(a, specs, tol))]


def hardware_figure(specs: Specs, source: str) -> Figure | None:
    """The figure a calc source such as ``specs/hardware.yaml: h100-sxm.compute.fp16``,
    ``...: interconnects.nvlink4.bandwidth`` or ``...: economics.pue`` points at, or None."""
    m = _FIGURE_SOURCE.match(source)
    if not m:
        return None
    owner, key, sub = m.groups()
    hw = specs.hardware
    if owner in ("economics", "energy_per_op", "energy_sources"):
        return None if sub else getattr(hw, owner).get(key)
    if owner == "interconnects":
        ic = specs.interconnect_by_id.get(key)
        return getattr(ic, sub, None) if ic is not None and sub in ("bandwidth", "latency") else None
    p = specs.platform_by_id.get(owner)
    if p is None:
        return None
    if key == "compute":
        return p.compute.get(sub or p.default_precision)
    if key in ("on_chip", "geometry"):
        return getattr(p, key).get(sub or "")
    if sub:
        return None
    fig = getattr(p, key, None)
    return fig if isinstance(fig, Figure) else None


def grounding(row: Mapping, specs: Specs, tol: float | None = None) -> Verdict:
    """Hardware figures match specs/hardware.yaml; every platform belongs to the track."""
    tol = specs.quality.grounding_tolerance if tol is None else tol
    problems = []
    track = _text(row, "track")
    own = {p.id for p in specs.platforms_for(track)}
    for pid in list(row.get("platforms") if row.get("platforms") is not None else []):
        if pid not in specs.platform_by_id:
            problems.append(f"unknown platform {pid!r}")
        elif pid not in own:
            problems.append(f"platform {pid} belongs to {specs.platform_by_id[pid].track}, not {track}")
    for step in _calc(row):
        source = str(step.get("source", ""))
        if not source.startswith("specs/hardware.yaml"):
            continue
        where = source.removeprefix("specs/hardware.yaml: ")
        fig = hardware_figure(specs, source)
        if fig is None:
            problems.append(f"step {step.get('name')} cites {where}, which specs/hardware.yaml does not have")
            continue
        try:
            expected = float(fig.q.to(Q_(1, str(step.get("unit", ""))).units).magnitude)
        except (pint.PintError, ValueError):
            problems.append(
                f"step {step.get('name')} states {where} in {step.get('unit')!r}, incompatible with {fig.unit}"
            )
            continue
        if not math.isclose(float(step.get("value", 0)), expected, rel_tol=tol):
            problems.append(
                f"step {step.get('name')} states {step.get('value')} {step.get('unit')} for {where}; specs say "
                f"{fmt_quantity(expected, str(step.get('unit')))}"
            )
    if not _calc(row):
        # free text (e.g. imported questions): figures stated next to a platform's name must be
        # one of its figures. Structured rows are grounded through their calc sources above,
        # where derived figures (usable memory, sustained rates) are legitimately different.
        text = " ".join(_text(row, k) for k in ("scenario", "realistic_solution", "napkin_math"))
        problems.extend(_cited_mismatches(text, specs, tol))
    return _fail("grounding", problems)


# --------------------------------------------------------------------------- falsifiability


def falsifiability(row: Mapping, tol: float = 0.01) -> Verdict:
    """A common mistake is present, names the misconception, and leads to a different value."""
    problems = []
    mistake = _text(row, "common_mistake").strip()
    if len(mistake.split()) < 12:
        problems.append("no common mistake, or too short to name a misconception")
    elif "Pitfall" not in mistake and not _text(row, "mistake_id"):
        problems.append("the common mistake does not name its pitfall")
    answer, wrong = _number(row, "answer_value"), _number(row, "mistake_value")
    if _calc(row):  # structured questions must carry the wrong number
        if wrong is None:
            problems.append("no computed wrong value (mistake_value)")
        elif answer is not None and math.isclose(wrong, answer, rel_tol=tol):
            problems.append(f"the mistake's value {wrong:g} equals the answer {answer:g}")
    return _fail("falsifiability", problems)


# --------------------------------------------------------------------------- computability


def computability(row: Mapping, tol: float = 0.01) -> Verdict:
    """Every calc step re-evaluates to its stated value with consistent units; the final
    value is the stated answer; the napkin-math text carries those numbers."""
    calc = _calc(row)
    if not calc:
        return Verdict("computability", False, "no structured calc steps to recompute")
    problems = recompute(calc, rel_tol=tol)
    final = calc[-1]
    answer, unit = _number(row, "answer_value"), _text(row, "answer_unit")
    if answer is None:
        problems.append("no answer_value")
    elif str(final.get("unit", "")) != unit or not math.isclose(float(final.get("value", 0)), answer, rel_tol=tol):
        problems.append(
            f"the last step gives {final.get('value')} {final.get('unit')}, but the stated answer is {answer:g} {unit}"
        )
    text = _text(row, "napkin_math")
    missing = [
        s["name"]
        for s in calc
        if s.get("kind") != "given" and fmt_quantity(float(s["value"]), str(s.get("unit", ""))) not in text
    ]
    if missing:
        problems.append(f"napkin math text does not show the values of {', '.join(missing[:5])}")
    return _fail("computability", problems)


# --------------------------------------------------------------------------- hygiene (review defects)

# a level or a serial number closing the title ("... L4", "Question 12", "#3", "- 0042"); a quantity
# that ends a sentence ("stops paying at batch 128") is not one
_TEMPLATE_TITLE = re.compile(
    r"(\bL[1-6]\+?|\b(?:new|question|q|item)\s*#?\d+|#\d+|(?:\s-|[_:])\s*\d{3,}|(?<![\d,.])0\d{2,})\s*$", re.IGNORECASE
)


def _truncated(text: str) -> str | None:
    t = text.rstrip()
    if not t:
        return "empty"
    if t[-1] not in ".?!)`*\"'|”’]":  # a closing % is a number cut off: "...the allocator reports 30%"
        return f"ends mid-sentence ('…{t[-25:]}')"
    if t[-1] != "|" and t.rstrip(")`*\"'”’]")[-1:] not in (
        ".",
        "?",
        "!",
        ":",
        "",
    ):  # "...(OOM)", "BatchSize *": closers after no full stop
        return f"ends mid-sentence ('…{t[-25:]}')"
    if t.count("**") % 2:
        return "unbalanced ** markup"
    if t.count("`") % 2:
        return "unbalanced ` markup"
    if t.count("$") % 2:
        return "unbalanced $ (LaTeX)"
    if t.count("(") != t.count(")"):
        return "unbalanced parentheses"
    return None


def hygiene(row: Mapping, specs: Specs) -> Verdict:
    """Defects StaffML's reviews kept finding: truncated text, template-looking titles,
    wrong-track hardware, a competency area that does not match the topic."""
    problems = []
    for key in ("scenario", "question", "realistic_solution", "common_mistake"):
        issue = _truncated(_text(row, key))
        if issue:
            problems.append(f"{key} {issue}")
    title = _text(row, "title")
    if _TEMPLATE_TITLE.search(title):
        problems.append(f"title looks generated from a template: {title!r}")
    track = _text(row, "track")
    text = " ".join(_text(row, k) for k in ("title", "scenario", "question", "realistic_solution", "napkin_math"))
    # a row without a track (an imported cross-cutting question) has no other track to stray into
    foreign = (
        sorted(pid for pid in _mentioned_platforms(text, specs) if specs.platform_by_id[pid].track != track)
        if track
        else []
    )
    if foreign:
        problems.append(f"mentions hardware of another track: {', '.join(foreign)}")
    topic = specs.topic_by_id.get(_text(row, "topic"))
    area = _text(row, "competency_area")
    if topic is not None and area != topic.area:
        problems.append(f"competency area {area!r} does not match topic {topic.id} ({topic.area})")
    return _fail("hygiene", problems)


# ------------------------------------------------------------- structure of a row (calc, claims, distractors)

UNVERIFIABLE = "unverifiable: no structured calc"
_LATE_LEVELS = ("L5", "L6+")  # the levels where the candidate recalls specs and distractors are allowed


def _items(row: Mapping, key: str) -> list | None:
    """A list column (claims, distractors, platforms) as a list; None when the row lacks it."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)) or isinstance(value, str):
        return None
    try:
        return list(value)  # a list, or a numpy array after a parquet round trip
    except TypeError:
        return None


@lru_cache(maxsize=8192)
def _names_in(expression: str) -> frozenset[str]:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return frozenset()
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


def closure(steps: list[dict], targets: list[str] | None = None) -> set[str]:
    """Names of the steps ``targets`` (default: the last step, the answer) depend on,
    transitively through the names in derived expressions, themselves included."""
    by_name = {str(s.get("name")): s for s in steps}
    stack = list(targets) if targets is not None else ([str(steps[-1].get("name"))] if steps else [])
    needed: set[str] = set()
    while stack:
        name = stack.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        step = by_name[name]
        if step.get("kind") != "given":
            stack.extend(_names_in(str(step.get("expression", ""))) & by_name.keys())
    return needed


def _claims(row: Mapping) -> list[dict]:
    return [dict(c) for c in _items(row, "claims") or [] if isinstance(c, Mapping)]


def _claim_names(row: Mapping) -> list[str]:
    return sorted({n for c in _claims(row) for n in _names_in(str(c.get("expression", "")))})


def _solution_text(row: Mapping) -> str:
    """The realistic solution and the napkin math's conclusion (not its list of steps)."""
    conclusion = _text(row, "napkin_math").partition("**Conclusion:**")[2]
    return _text(row, "realistic_solution") + "\n" + conclusion


def _used(steps: list[dict], row: Mapping) -> set[str]:
    """What the solution uses: the closures of the answer, of every claim's inputs and of
    every derived figure the solution's text states (a diagnosis compares with the plan)."""
    text = _solution_text(row)
    shown = [str(s.get("name")) for s in steps if s.get("kind") != "given" and _states(text, [], s)]
    return closure(steps) | closure(steps, _claim_names(row) + shown)


# --------------------------------------------------------------------------- figures stated in text

_MULTIPLIERS = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12}
_GLUED = {"k": (1e3, 1024.0), "K": (1e3, 1024.0), "M": (1e6,), "B": (1e9,)}
_UNIT_FIXES = {
    "KB": "kB",
    "Gbps": "Gbit/s",
    "Gb/s": "Gbit/s",
    "Mbps": "Mbit/s",
    "Mb/s": "Mbit/s",
    "µW": "uW",
    "µs": "us",
    "fps": "1/s",
    "FPS": "1/s",
    "sec": "s",
    "secs": "s",
    "hrs": "h",
    "mins": "min",
}
_NUMBER = re.compile(
    r"(?<![\w.,])(?<![A-Za-z]-)"  # not glued to a name (H100, FP16, p99, GPT-2, v5e, 1.2.3)
    r"(?P<num>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<frac>\.\d+)?"
    r"(?:[eE](?P<exp>[+-]?\d+)|\s?[x×]\s?10\^(?P<exp10>[+-]?\d+))?"
    r"(?!\.\d)(?!(?:st|nd|rd|th)\b)"
    r"(?:\s?(?P<word>thousand|million|billion|trillion)\b|(?P<glued>[kKMB])\b(?!/)|(?P<pct>%))?"
    r"(?:-?\s?(?P<unit>[A-Za-zµ°][A-Za-zµ°]*(?:/[A-Za-zµ]+)?))?"
)
_MASKS = (
    r"\b\d+:\d+\b",  # 2:4 sparsity, ratios, clock times
    r"\b\d+(?:\.\d+)?x\d+\b",  # 224x224, 8x7B
    r"(?i)\b(?:PCIe|NVLink|UFS|eMMC|USB|Gen|RoCE|CUDA|version|Llama|GPT|Gemma|Qwen|Phi|Whisper|Python)"
    r"[ -]?\d+(?:\.\d+)*\b",
    r"(?m)^\s*\d+[.)]\s",  # list markers
    r"\b\d+\s?nm\b",  # a process node (45 nm) names a technology, not a figure to compute with
    r"\b(?:IEC|ISO|IEEE|RFC|MISRA|DO|UL)[ -]?\d+(?:[-./:]\d+)*\b",  # a standard's number (IEC 61508, ISO 26262)
    r"\b\d+-(?:axis|bit|way|tap|class|shot)\b",  # names a kind: 3-axis, 8-bit exponent, 4-way
    r"\bA?SIL[ -]?[0-4A-D]\b",  # a safety integrity level (SIL 2, ASIL D)
    r"\b[123]D\b",  # 1D, 2D, 3D
)


@dataclass(frozen=True)
class Stated:
    """A figure as written in the text: its plain readings and, with a unit, its base quantity."""

    text: str
    values: tuple[float, ...]
    base: tuple[float, str] | None = None  # magnitude in base units, dimensionality


_NAME_PATTERNS: dict[str, re.Pattern] = {}


def _names_pattern(specs: Specs) -> re.Pattern:
    """Every platform alias, workload name and link name: numbers inside them are not figures."""
    if specs.version not in _NAME_PATTERNS:
        names = {n for aliases in platform_aliases(specs).values() for n in aliases}
        for thing in [*specs.workloads.workloads, *specs.hardware.interconnects]:
            names |= {thing.name, thing.name.split(" (")[0]}
        alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        _NAME_PATTERNS[specs.version] = re.compile(
            rf"(?<![\w-])(?:{alternatives})(?!\w)(?!-\d)"
        )  # "Snapdragon 8 Gen 3-class" too
    return _NAME_PATTERNS[specs.version]


def _mask(text: str, specs: Specs) -> str:
    blank = lambda m: " " * len(m.group(0))  # noqa: E731 - keeps positions
    text = _names_pattern(specs).sub(blank, text)
    for pattern in _MASKS:
        text = re.sub(pattern, blank, text)
    return text


@lru_cache(maxsize=4096)
def _base(value: float, unit: str) -> tuple[float, str] | None:
    try:
        q = Q_(value, parse_unit(_UNIT_FIXES.get(unit, unit))).to_base_units()
    except (ValueError, pint.PintError, TypeError, AttributeError):
        return None
    return float(q.magnitude), str(q.dimensionality)


def stated_figures(text: str, specs: Specs, mask: bool = True) -> list[Stated]:
    """The figures a text states: integers, decimals, 8,192, 8.03e9, 8 billion, 8k, 40%, with
    the unit that follows where pint knows it. Numbers in platform, workload and link names,
    precision and percentile labels (FP16, p99), ordinals, 2:4 and years are not figures."""
    out = []
    for m in _NUMBER.finditer(_mask(text, specs) if mask else text):
        g = m.groupdict()
        if g["unit"] in ("in", "at", "a"):  # "1 in 25", "8 at once": a preposition, not inches or atmospheres
            g["unit"] = None
        value = float(g["num"].replace(",", "") + (g["frac"] or "")) * 10 ** int(g["exp"] or g["exp10"] or 0)
        plain = not (
            g["frac"] or g["exp"] or g["exp10"] or g["word"] or g["glued"] or g["pct"] or g["unit"] or "," in g["num"]
        )
        if plain and (1950 <= value <= 2039 or value in (0, 1)):
            continue  # a year, or "one GPU", "batch 1": not a figure to compute with
        values = [value]
        if g["word"]:
            values = [value * _MULTIPLIERS[g["word"]]]
        elif g["glued"]:
            values += [value * f for f in _GLUED[g["glued"]]]
        elif g["pct"]:
            values.append(value / 100)
        base = _base(values[0], g["unit"]) if g["unit"] else None
        written = (
            m.group(0) if base or not m.group("unit") else m.group(0)[: m.start("unit") - m.start()]
        )  # drop "8 with"
        out.append(Stated(written.strip(" -"), tuple(values), base))
    return out


def _close(a: float, b: float, tol: float = 0.005) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=1e-12)


def _step_base(step: Mapping) -> tuple[float, str] | None:
    try:
        return _base(float(step.get("value")), str(step.get("unit", "") or ""))
    except (TypeError, ValueError):
        return None


def _same_quantity(fig: Stated, step: Mapping) -> bool:
    """Same figure with a unit: 0.5 ms and 500 us, 3.35 TB/s and 3,350 GB/s."""
    sb = _step_base(step)
    return fig.base is not None and sb is not None and fig.base[1] == sb[1] and _close(fig.base[0], sb[0])


def _matches(fig: Stated, step: Mapping) -> bool:
    try:
        value = float(step.get("value"))
    except (TypeError, ValueError):
        return False
    return any(_close(v, value) for v in fig.values) or _same_quantity(fig, step)


def _states(text: str, figures: list[Stated], step: Mapping) -> bool:
    """Whether a text states a step's value: its formatted number, or a figure equal to it."""
    try:
        shown = {fmt_number(float(step.get("value")), sig) for sig in (4, 3)}  # napkin math and prose
    except (TypeError, ValueError):
        return False
    return any(re.search(rf"(?<![\w.,]){re.escape(x)}(?![\d])", text) for x in shown) or any(
        _matches(f, step) for f in figures
    )


def _shown(step: Mapping) -> str:
    try:
        return fmt_quantity(float(step.get("value")), str(step.get("unit", "") or ""))
    except (TypeError, ValueError):
        return str(step.get("value"))


# --------------------------------------------------------------------------- coherence

_LEAKS = re.compile(r"mlsysim|generic smartphone|reference phone|item[ -]models?\b|\[insert", re.IGNORECASE)
_LEAKS_CASED = re.compile(r"\bTODO\b|\bXXX\b|(?<![\w-])(?:nan|NaN)(?![\w-])|\bNone\b(?!\s+of\b)")
_LATEX = re.compile(r"\\[A-Za-z]+\{[^{}]*\}|\$[^$\n]*\$")
_SNAKE = re.compile(r"(?<![\w./-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
_TEXT_FIELDS = ("title", "scenario", "question", "realistic_solution", "common_mistake", "napkin_math")
_PROSE_FIELDS = ("scenario", "question", "realistic_solution", "common_mistake")


# template residue a published question should not carry: an [INSERT ...] slot, <placeholder>, lorem
# ipsum, FIXME/TBD, the generator's own scaffolding ("Calculated Distractor", "An L5 engineer will")
_RESIDUE = re.compile(
    r"\[(?:insert|placeholder|todo|tbd|fill)[^\]\n]{0,40}\]|<(?:placeholder|insert|todo|tbd)[^>\n]{0,40}>|lorem ipsum"
    r"|\bcalculated distractor\b|\b(?:an?\s+)?L[1-6]\+?\s+(?:engineer|candidate)s?\s+(?:will|would|should)\b",
    re.IGNORECASE,
)
_RESIDUE_CASED = re.compile(r"\b(?:FIXME|TBD)\b|\{\{[^{}\n]{0,40}\}\}|\$\{[^{}\n]{0,40}\}")


def placeholder_residue(text: str) -> list[str]:
    """Placeholder or tool-internal residue in one text: [INSERT], TODO, XXX, {var}, {{ var }},
    None/NaN, mlsysim, generator scaffolding. Each found piece once, in order."""
    found = [m.group(0) for pattern in (_LEAKS, _LEAKS_CASED, _RESIDUE, _RESIDUE_CASED) for m in pattern.finditer(text)]
    braces = re.search(r"\{[^{}\n]{0,40}\}|[{}]", _LATEX.sub(" ", text))
    if braces:
        found.append(braces.group(0).strip())
    found = list(dict.fromkeys(found))
    return [f for f in found if not any(f != g and f in g for g in found)]  # "[INSERT" inside "[INSERT model]"


def leaks(row: Mapping) -> list[str]:
    """Tool-internal or placeholder residue in the text, and an empty Calculations section."""
    problems = []
    for key in _TEXT_FIELDS:
        text = _text(row, key)
        found = placeholder_residue(text)
        if key in _PROSE_FIELDS:
            prose = re.sub(r"`[^`]*`|\[[^\]\n]*\]", " ", _LATEX.sub(" ", text))  # code spans, tensor shapes
            found += [f"identifier {m.group(0)}" for m in _SNAKE.finditer(prose)]
        if found:
            problems.append(
                f"{key} contains tool-internal or placeholder text: {', '.join(repr(f) for f in dict.fromkeys(found))}"
            )
    calcs = re.search(r"\*\*Calculations:\*\*(.*?)(?=\n\s*\*\*[^*\n]+:\*\*|\Z)", _text(row, "napkin_math"), re.DOTALL)
    if calcs and not any(re.search(r"[\d=]", line) for line in calcs.group(1).splitlines()):
        problems.append("empty Calculations section in the napkin math")
    return problems


def _orphans(row: Mapping, steps: list[dict], specs: Specs) -> list[str]:
    """Figures in the scenario or question that no used step and no distractor carries, and
    that are not the trap the common mistake falls into (all 24 query heads, not 8 KV heads)."""
    names = _used(steps, row) | {str(d) for d in _items(row, "distractors") or []}
    used = [s for s in steps if str(s.get("name")) in names]
    traps = {v for f in stated_figures(_text(row, "common_mistake"), specs) for v in f.values}
    problems = []
    for key in ("scenario", "question"):
        for fig in stated_figures(_text(row, key), specs):
            if not any(_matches(fig, s) for s in used) and not any(_close(v, t) for v in fig.values for t in traps):
                problems.append(
                    f"{key} states {fig.text!r}, which the solution never uses (use it, cut it, or make it a named "
                    "distractor at L5+)"
                )
    return problems


def _unstated_givens(row: Mapping, steps: list[dict], specs: Specs) -> list[str]:
    """At levels whose specs are given, every given the answer rests on is in the scenario or question
    (except in the recall zone, whose task is to recall a figure the text does not hand over)."""
    level = specs.level_by_id.get(_text(row, "level"))
    if level is None or level.specs != "given" or _text(row, "zone") == "recall":
        return []
    text = _text(row, "scenario") + "\n" + _text(row, "question")
    figures = stated_figures(text, specs) + stated_figures(text, specs, mask=False)
    answer = str(steps[-1].get("name"))
    needed = closure(steps) - {answer}
    return [
        f"the solution uses {s.get('label') or s.get('name')} ({_shown(s)}), which the scenario never states"
        for s in steps
        if str(s.get("name")) in needed
        and s.get("kind") == "given"
        and s.get("value") != 1  # 1 day, 1 byte: a unit
        and not _states(text, figures, s)
    ]


def _distractor_problems(row: Mapping, steps: list[dict], specs: Specs) -> list[str]:
    names = [str(d) for d in _items(row, "distractors") or []]
    if not names:
        return []
    level = _text(row, "level")
    if level not in _LATE_LEVELS:
        return [f"distractor {', '.join(names)} at {level}: distractors are allowed only at L5 and L6+"]
    by_name = {str(s.get("name")): s for s in steps}
    solution = _text(row, "realistic_solution")
    figures = stated_figures(solution, specs)
    answer = closure(steps)
    problems = []
    for name in names:
        step = by_name.get(name)
        if step is None:
            problems.append(f"distractor {name} is not a calc step")
        elif name in answer:
            problems.append(f"distractor {name} is used by the answer, so it is no distractor")
        elif not (_states(solution, figures, step) or _label_in(step, solution)):
            problems.append(f"distractor {name} ({_shown(step)}) is not addressed by the solution")
    return problems


def _label_in(step: Mapping, text: str) -> bool:
    label = str(step.get("label", "") or "").lower().strip()
    return bool(label) and label in text.lower()


# Software that runs on one vendor's parts only, and the words that name such a part. A question
# that recommends nvJPEG on an AMD GPU or CMSIS-NN on an Xtensa core describes no real setup.
_VENDOR_SOFTWARE: tuple[tuple[re.Pattern, re.Pattern, str], ...] = (
    (
        re.compile(r"\b(?:CUDA|cuDNN|cuBLAS|TensorRT|NCCL|nvJPEG|DALI|Nsight|NVLink)\b"),
        re.compile(r"NVIDIA|Jetson|\bH100|\bA100|\bB200"),
        "NVIDIA",
    ),
    (re.compile(r"\b(?:ROCm|MIOpen|RCCL|rocJPEG|rocAL|hipBLAS)\b"), re.compile(r"\bAMD\b|Instinct|MI300"), "AMD"),
    (re.compile(r"\b(?:Core ML|Neural Engine)\b"), re.compile(r"\bApple\b|iPhone|\bA1\d"), "Apple"),
    (re.compile(r"\b(?:SNPE|QNN|Hexagon)\b"), re.compile(r"Qualcomm|Snapdragon"), "Qualcomm"),
    (re.compile(r"\bESP-NN\b", re.IGNORECASE), re.compile(r"Espressif|ESP32"), "Espressif"),
    (re.compile(r"\bCMSIS-NN\b"), re.compile(r"Cortex-M|nRF52|STM32"), "Arm Cortex-M"),
)


def vendor_software_problems(row: Mapping, specs: Specs) -> list[str]:
    """Vendor-only software named in a question whose parts (and whose text) involve no part of
    that vendor. Unjudged when the row names no platform."""
    text = "\n".join(_text(row, k) for k in _TEXT_FIELDS)
    ids = set(_items(row, "platforms") or []) | _mentioned_platforms(text, specs)
    parts = [f"{p.name} {p.vendor}" for p in specs.hardware.platforms if p.id in ids]
    if not parts:
        return []
    problems = []
    for software, owner, vendor in _VENDOR_SOFTWARE:
        named = sorted({m.group(0) for m in software.finditer(text)})
        if named and not owner.search(text) and not any(owner.search(part) for part in parts):
            problems.append(
                f"names {', '.join(named)} ({vendor} only) for {', '.join(sorted(ids))}, which run none of it"
            )
    return problems


def coherence(row: Mapping, specs: Specs) -> Verdict:
    """Every figure stated belongs to the situation: no orphan figures, every given the
    answer rests on is stated (L1-L4), distractors only at L5+ and named by the solution,
    no vendor software on another vendor's part, no tool-internal or placeholder residue."""
    problems = leaks(row) + vendor_software_problems(row, specs)
    steps = _calc(row)
    if not steps:
        return Verdict("coherence", not problems, "; ".join(problems) or UNVERIFIABLE)
    problems += (
        _orphans(row, steps, specs) + _unstated_givens(row, steps, specs) + _distractor_problems(row, steps, specs)
    )
    return _fail("coherence", problems)


# --------------------------------------------------------------------------- answer_key

_BOUND = re.compile(
    r"(?P<neg>\bnot\s+|\bno\s+longer\s+|n't\s+|\brather\s+than\s+|\binstead\s+of\s+)?"
    r"\b(?P<kind>memory|memory[- ]bandwidth|bandwidth|compute)[- ]bound\b",
    re.IGNORECASE,
)
_DOMINATES = re.compile(
    r"\bdominated\s+by\s+(?:the\s+)?(?P<after>[\w -]{3,60})|(?P<before>(?:\b[\w-]+\s+){1,8}?)dominates?\b",
    re.IGNORECASE,
)


def _time_steps(steps: list[dict], words: tuple[str, ...], others: tuple[str, ...]) -> list[dict]:
    out = []
    for s in steps:
        name, base = str(s.get("name", "")).lower(), _step_base(s)
        if base and base[1] == "[time]" and any(w in name for w in words) and not any(w in name for w in others):
            out.append(s)
    return out


def _the_one(candidates: list[dict], steps: list[dict]) -> dict | None:
    """The single candidate step, preferring those the answer uses; None when ambiguous."""
    if len(candidates) > 1:
        names = closure(steps)
        candidates = [s for s in candidates if str(s.get("name")) in names]
    return candidates[0] if len(candidates) == 1 else None


def _bound_problem(row: Mapping, steps: list[dict]) -> str | None:
    """'memory-bound' in the text needs the memory time above the compute time, and the reverse."""
    text = _text(row, "realistic_solution") + "\n" + _text(row, "napkin_math")
    kinds = {"compute" if m["kind"].lower() == "compute" else "memory" for m in _BOUND.finditer(text) if not m["neg"]}
    if len(kinds) != 1:
        return None  # not said, or both said (regimes compared): nothing unambiguous to check
    memory = _the_one(_time_steps(steps, ("memory", "weight", "stream"), ("compute", "flop")), steps)
    compute = _the_one(_time_steps(steps, ("compute", "flop"), ("memory", "weight", "stream")), steps)
    if memory is None or compute is None:
        return None
    said = kinds.pop()
    if (said == "memory") != (_step_base(memory)[0] > _step_base(compute)[0]):
        big, small = (compute, memory) if said == "memory" else (memory, compute)
        return (
            f"the text says {said}-bound, but {big['name']} ({_shown(big)}) exceeds {small['name']} ({_shown(small)})"
        )
    return None


def _names_step(phrase: str, step: Mapping) -> bool:
    """Whether a phrase of the text names a step: it contains the step's label, or is a
    phrase of two or more words inside it."""
    label = str(step.get("label", "") or "").lower()
    return bool(label) and (label in phrase or (len(phrase.split()) >= 2 and phrase in label))


def _sum_terms(expression: str) -> list[ast.expr]:
    """The top-level terms of a sum ('a + b * c + d' -> a, b * c, d); [] for anything else."""
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return []
    terms: list[ast.expr] = []

    def walk(n: ast.expr) -> bool:
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            return walk(n.left) and walk(n.right)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Sub):
            return False  # a difference is not a breakdown into parts
        terms.append(n)
        return True

    return terms if walk(node) and len(terms) > 1 else []


def _minority_of_total(x: Mapping, used: list[dict], env: dict) -> str | None:
    """Where X is one term of a total step and the other terms together outweigh it: the
    problem with saying it dominates."""
    for total in used:
        terms = _sum_terms(str(total.get("expression") or ""))
        if not any(isinstance(term, ast.Name) and term.id == x["name"] for term in terms):
            continue
        try:
            whole = evaluate(str(total["expression"]), env)
            part = env[str(x["name"])]
            share = float((part / whole).to("dimensionless").magnitude)
        except (CalcError, KeyError, pint.PintError, ZeroDivisionError, TypeError, ValueError):
            continue
        if share < 0.5:
            return (
                f"the text says {x['label']} dominates, but it is {_shown(x)} of {total.get('label') or total['name']} "
                f"({_shown(total)}), {round(100 * share)}%"
            )
    return None


def _dominance_problems(row: Mapping, steps: list[dict]) -> list[str]:
    """'X dominates' / 'dominated by X' where X is a step's label: X is the largest of its kind
    and, where X is one term of a total, more than half of it."""
    text = _text(row, "realistic_solution") + "\n" + _text(row, "napkin_math")
    used = [s for s in steps if str(s.get("name")) in closure(steps) and _step_base(s)]
    problems = []
    for m in _DOMINATES.finditer(text):
        phrase = (m["after"] or m["before"] or "").lower().strip()
        named = [s for s in used if _names_step(phrase, s)]
        if len(named) != 1:
            continue  # no step, or several: the mapping is not unambiguous
        x = named[0]
        related = closure(steps, [str(x["name"])]) | {
            str(s["name"]) for s in used if str(x["name"]) in closure(steps, [str(s["name"])])
        }
        rivals = [s for s in used if str(s["name"]) not in related and _step_base(s)[1] == _step_base(x)[1]]
        bigger = max(rivals, key=lambda s: _step_base(s)[0], default=None)
        if bigger is not None and _step_base(bigger)[0] > _step_base(x)[0]:
            problems.append(
                f"the text says {x['label']} dominates, but {bigger.get('label') or bigger['name']} "
                f"({_shown(bigger)}) is larger than {_shown(x)}"
            )
        elif (minority := _minority_of_total(x, used, stated_quantities(steps))) is not None:
            problems.append(minority)
    return problems


def answer_key(row: Mapping) -> Verdict:
    """The key's claims agree with its numbers: every claim re-evaluated over the stated
    values; 'memory-bound' / 'compute-bound' / 'X dominates' in the text agree with the calc."""
    steps = _calc(row)
    if not steps:
        return Verdict("answer_key", True, UNVERIFIABLE)
    env = stated_quantities(steps)
    problems = []
    for claim in _claims(row):
        name, said = claim.get("name", "?"), claim.get("holds")
        if said is None:
            problems.append(f"claim {name} does not say whether it holds")
            continue
        try:
            actual = evaluate_condition(str(claim.get("expression", "")), env)
        except (CalcError, pint.PintError, TypeError, ValueError) as exc:
            problems.append(f"claim {name} cannot be re-evaluated: {exc}")
            continue
        if actual != bool(said):
            problems.append(
                f"claim {name} says {str(bool(said)).lower()}, the calc says {str(actual).lower()} "
                f"({claim.get('expression')})"
            )
    bound = _bound_problem(row, steps)
    problems += ([bound] if bound else []) + _dominance_problems(row, steps)
    return _fail("answer_key", problems)


# --------------------------------------------------------------------------- structure

_LEVER = re.compile(r"^after_|lever|optimi[sz]ed|improved")
_OPTION_CLAIM = re.compile(r"^(prefer|choose|option)|wins?$|_wins?_|better|beats")


def _zone_problems(row: Mapping, zone: str, steps: list[dict], derived: int) -> list[str]:
    """What the zone's task needs in the calc. A row without a claims field cannot show a
    decision or a comparison: those needs are then unverifiable, not failed."""
    declared = _items(row, "claims") is not None
    claims = _claims(row)
    problems = []
    if zone in ("diagnosis", "debug") and not any(
        s.get("kind") == "given" and str(s.get("source", "")).startswith("observed") for s in steps
    ):
        problems.append(f"{zone} reasons from a symptom, but no given step has an 'observed: ...' source")
    if (
        zone == "evaluation"
        and declared
        and len(set(_items(row, "platforms") or [])) < 2
        and not any(_OPTION_CLAIM.search(str(c.get("name", ""))) for c in claims)
    ):
        problems.append(
            "evaluation compares two options, but the row has one platform and no prefer_/choose_/option_ claim"
        )
    if zone in ("design", "specification", "realization") and declared and not claims:
        problems.append(f"{zone} makes a decision, but no claim justifies it")
    if zone == "optimization" and not any(_LEVER.search(n) for n in _used(steps, row)):
        problems.append("optimization applies a lever, but no after_/lever/optimized/improved step computes its effect")
    if zone in ("mastery", "debug") and derived < 3:
        problems.append(
            f"{zone} integrates several steps, but the answer takes {derived} derived step(s) (needs 3 or more)"
        )
    if zone == "recall" and derived > 1:
        problems.append(f"recall states one figure, but the answer takes {derived} derived steps")
    return problems


def _recalled_specs_stated(row: Mapping, steps: list[dict], specs: Specs) -> list[str]:
    """At L5 and L6+ the candidate recalls the hardware figures: the text must not hand them over."""
    if _text(row, "level") not in _LATE_LEVELS:
        return []
    text = _text(row, "scenario") + "\n" + _text(row, "question")
    figures = stated_figures(text, specs)
    problems = []
    # a number the scenario must state as a figure of its own (8 input channels) says nothing when a
    # hardware figure has the same value (8 lanes per dot product): it is read as the scenario's
    own = {
        s.get("value") for s in steps if s.get("kind") == "given" and str(s.get("source", "")).startswith("scenario:")
    }
    for s in steps:
        if (
            s.get("kind") == "given"
            and str(s.get("source", "")).startswith("specs/hardware.yaml")
            and s.get("value") not in own
        ):
            shown = re.escape(_shown(s))  # as a number of its own: a 4 inside "24" or "400 MHz" is not the figure 4
            if re.search(rf"(?<![\w.,]){shown}(?![\d])", text) or any(_same_quantity(f, s) for f in figures):
                problems.append(
                    f"the scenario states {s.get('label') or s.get('name')} ({_shown(s)}) from specs/hardware.yaml, "
                    f"which a {_text(row, 'level')} candidate should recall"
                )
    return problems


def structure(row: Mapping, specs: Specs) -> Verdict:
    """Zone and level are honest, from the calc: the number of derived steps fits the level,
    L5+ does not hand over hardware specs, and the zone's task is in the calc (a symptom for
    diagnosis, two options for evaluation, a claim for a decision, a lever's effect, ...)."""
    steps = _calc(row)
    if not steps:
        return Verdict("structure", True, UNVERIFIABLE)
    names = closure(steps)
    derived = sum(1 for s in steps if str(s.get("name")) in names and s.get("kind") != "given")
    problems = []
    level = specs.level_by_id.get(_text(row, "level"))
    if level is not None and not level.steps[0] - 1 <= derived <= level.steps[1] + 1:
        problems.append(
            f"{level.id} takes {level.steps[0]}-{level.steps[1]} steps, but the answer takes {derived} derived step(s)"
        )
    problems += _recalled_specs_stated(row, steps, specs) + _zone_problems(row, _text(row, "zone"), steps, derived)
    return _fail("structure", problems)


# --------------------------------------------------------------------------- distinctness

Embed = Callable[[list[str]], np.ndarray]


def tfidf_embed(texts: list[str]) -> np.ndarray:
    """Fallback embedder: L2-normalised TF-IDF vectors (word 1-2 grams)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not texts:
        return np.zeros((0, 1), dtype=np.float32)
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(texts).toarray().astype(np.float32)


def distinct_text(row: Mapping) -> str:
    return " ".join(_text(row, k) for k in ("scenario", "question", "realistic_solution"))


def _reasoning_keyed(row: Mapping) -> bool:
    """Offline rows carry their reasoning as signature (item model | design | claim outcomes)."""
    return _text(row, "backend") == "item-models" and _text(row, "signature").count("|") >= 2


def distinctness(
    cell: pd.DataFrame, threshold: float, embed: Embed = tfidf_embed, vectors: np.ndarray | None = None
) -> list[Verdict]:
    """Within one cell, in order: a question fails if its solution-path signature repeats
    an earlier accepted one, or its text is more similar than ``threshold`` to one.
    Two item-model questions whose signatures (their reasoning) differ are distinct whatever
    their wording: the same design reaching another conclusion is a different question.
    ``vectors`` (L2-normalised, one row per question) may be given precomputed."""
    rows = cell.to_dict("records")
    if vectors is None:
        vectors = embed([distinct_text(r) for r in rows]) if rows else None
    verdicts: list[Verdict] = []
    accepted: list[int] = []
    signatures: dict[str, str] = {}
    for i, row in enumerate(rows):
        sig = _text(row, "signature")
        if sig and sig in signatures:
            verdicts.append(
                Verdict(
                    "distinctness", False, f"same solution path and parameters as {signatures[sig]}", signatures[sig]
                )
            )
            continue
        compare = [j for j in accepted if not (_reasoning_keyed(row) and _reasoning_keyed(rows[j]))]
        sims = vectors[compare] @ vectors[i] if compare else np.array([])
        if sims.size and float(sims.max()) > threshold:
            j = compare[int(sims.argmax())]
            verdicts.append(
                Verdict(
                    "distinctness",
                    False,
                    f"cosine similarity {float(sims.max()):.2f} > {threshold} with {rows[j].get('id')}",
                    str(rows[j].get("id")),
                )
            )
            continue
        accepted.append(i)
        if sig:
            signatures[sig] = str(row.get("id"))
        verdicts.append(_ok("distinctness"))
    return verdicts


# --------------------------------------------------------------------------- topic_fit


def topic_fit_text(row: Mapping) -> str:
    return " ".join(_text(row, k) for k in ("question", "realistic_solution", "napkin_math"))


def topic_reference(topic) -> str:
    """What a topic is about: its name and mechanism (its description until topics carry one)."""
    return f"{topic.name}. {getattr(topic, 'mechanism', None) or topic.description}"


_TOPIC_VECTORS: dict[tuple, object] = {}  # (specs version, embedder) -> topic vectors (TF-IDF: with its vectorizer)


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def _topic_tfidf(specs: Specs):
    """TF-IDF fitted on the topic references alone: a partition's rows all share one topic's
    words, and fitting on them would down-weight exactly the words that name the topic.
    Computed without scikit-learn (``quality/tfidf.py``, equal to its TfidfVectorizer), whose
    import would cost a one-partition validation more than the validation itself."""
    key = (specs.version, "tfidf")
    if key not in _TOPIC_VECTORS:
        tfidf = Tfidf([topic_reference(t) for t in specs.topics.topics])
        _TOPIC_VECTORS[key] = (tfidf, _normalised(tfidf.fitted()))
    return _TOPIC_VECTORS[key]


def _topic_fit_vectors(texts: list[str], specs: Specs, embed: Embed) -> tuple[np.ndarray, np.ndarray]:
    """Row vectors and topic vectors in one space, the topic side computed once per process.
    TF-IDF (which fits a vocabulary per call) uses the topics' vocabulary for the rows too."""
    if embed is tfidf_embed:
        tfidf, topic_vectors = _topic_tfidf(specs)
        return _normalised(tfidf.transform(texts)), topic_vectors
    references = [topic_reference(t) for t in specs.topics.topics]
    try:
        key = (specs.version, embed)
        hash(key)
    except TypeError:
        key = (specs.version, id(embed))
    if key not in _TOPIC_VECTORS:
        _TOPIC_VECTORS[key] = _normalised(embed(references))
    return _normalised(embed(texts)), _TOPIC_VECTORS[key]


def _not_native(row: Mapping) -> str | None:
    """For an item-model row: why its item model does not compute the row's topic, or None."""
    if _text(row, "backend") != "item-models" or not _text(row, "item_model"):
        return None
    from staffml_dagster.core.item_model import item_model  # loaded once per process

    model = item_model(_text(row, "item_model"))
    if model is None:
        return f"item model {_text(row, 'item_model')!r} does not exist"
    topic = _text(row, "topic")
    native = set(model.spec.topics) | {t for d in model.spec.questions for t in (d.topics or [])}
    return (
        None
        if topic in native
        else f"item model {model.id} does not compute {topic}'s mechanism (it serves {', '.join(sorted(native))})"
    )


def topic_fit_verdicts(
    df: pd.DataFrame, specs: Specs, embed: Embed = tfidf_embed, top_k: int | None = None
) -> list[Verdict]:
    """A question fits its topic when an item-model question comes from an item model native
    to the topic; a question without that structure (Claude, imported) when its text (question,
    solution, napkin math) has its topic among the ``top_k`` of all topics whose name and
    mechanism it reads closest to. The text rank does not overrule a native item model: across
    four blind reviews the reviewer found 36 of the 39 item-model questions it rejected on topic
    (benchmarks/reviews/), since neighbouring topics share vocabulary; it is kept in the reason."""
    top_k = specs.quality.topic_fit_top_k if top_k is None else top_k
    rows = df.to_dict("records")
    if not rows:
        return []
    vectors, topic_vectors = _topic_fit_vectors([topic_fit_text(r) for r in rows], specs, embed)
    ids = [t.id for t in specs.topics.topics]
    verdicts = []
    for row, sims in zip(rows, vectors @ topic_vectors.T):
        own = _text(row, "topic")
        if own not in ids:
            verdicts.append(Verdict("topic_fit", True, f"unverifiable: unknown topic {own!r}"))
            continue
        foreign = _not_native(row)
        if foreign:
            verdicts.append(Verdict("topic_fit", False, foreign))
            continue
        order = [ids[i] for i in np.argsort(-sims, kind="stable")]
        if own in order[:top_k]:
            verdicts.append(_ok("topic_fit"))
        elif _text(row, "backend") == "item-models" and _text(row, "item_model"):  # native, checked above
            verdicts.append(
                Verdict(
                    "topic_fit", True, f"native item model; its text ranks {own} {order.index(own) + 1} of {len(ids)}"
                )
            )
        else:
            verdicts.append(
                Verdict(
                    "topic_fit",
                    False,
                    f"reads closer to {', '.join(order[:3])} and {top_k - 3} more topics than to its topic {own} "
                    f"(rank {order.index(own) + 1} of {len(ids)})",
                )
            )
    return verdicts


# --------------------------------------------------------------------------- the same computation under several topics

COMPUTATION_KEY = ["track", "item_model", "framing", "platforms", "workload", "scale_point"]


def _computation_key(row: Mapping) -> tuple:
    return (
        _text(row, "track"),
        _text(row, "item_model"),
        _text(row, "framing"),
        tuple(sorted(str(p) for p in _items(row, "platforms") or [])),
        _text(row, "workload"),
        _text(row, "scale_point"),
    )


def repeated_computations(df: pd.DataFrame) -> pd.DataFrame:
    """Questions whose computation (item model, framing, platforms, workload, scale point)
    already appears under another topic of the same track. The first by (topic, id) is kept;
    every later one in another topic is listed with the topic and question it repeats."""
    columns = ["id", "topic", *COMPUTATION_KEY, "repeats_topic", "repeats_id"]
    if df.empty or "item_model" not in df.columns:
        return pd.DataFrame(columns=columns)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in sorted(df.to_dict("records"), key=lambda r: (_text(r, "topic"), _text(r, "id"))):
        if _text(row, "item_model"):
            groups[_computation_key(row)].append(row)
    out = []
    for key, rows in groups.items():
        first = rows[0]
        for row in rows[1:]:
            if _text(row, "topic") != _text(first, "topic"):
                out.append(
                    [
                        _text(row, "id"),
                        _text(row, "topic"),
                        *key[:3],
                        list(key[3]),
                        *key[4:],
                        _text(first, "topic"),
                        _text(first, "id"),
                    ]
                )
    return pd.DataFrame(out, columns=columns)


# --------------------------------------------------------------------------- all together


def row_verdicts(row: Mapping, specs: Specs, criteria: tuple[str, ...] = ROW_CRITERIA) -> dict[str, Verdict]:
    """The verdicts of one question on ``criteria`` (of :data:`ROW_CRITERIA`), at the tolerances
    of ``specs/quality.yaml``, in the order asked. Validation, the anthropic backend's check of a
    draft and the tests all judge a row through this function."""
    q = specs.quality
    judges: dict[str, Callable[[], Verdict]] = {
        "specificity": lambda: specificity(row, specs),
        "grounding": lambda: grounding(row, specs, q.grounding_tolerance),
        "falsifiability": lambda: falsifiability(row, q.numeric_tolerance),
        "computability": lambda: computability(row, q.numeric_tolerance),
        "hygiene": lambda: hygiene(row, specs),
        "coherence": lambda: coherence(row, specs),
        "answer_key": lambda: answer_key(row),
        "structure": lambda: structure(row, specs),
    }
    unknown = [c for c in criteria if c not in judges]
    if unknown:
        raise ValueError(
            f"not a criterion of one row: {unknown}; choose among {', '.join(ROW_CRITERIA)} "
            "(distinctness and topic_fit need the whole frame: validate_questions)"
        )
    return {c: judges[c]() for c in criteria}


def validate_questions(
    df: pd.DataFrame,
    specs: Specs,
    embed: Embed = tfidf_embed,
    vectors: dict[str, np.ndarray] | None = None,
    on_row: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Every question with its verdicts: a boolean and a reason per criterion, ``passed``
    and the list of ``failures``. Nothing is dropped. ``vectors`` maps question id to its
    stored embedding (the question_embeddings asset); without it texts are embedded here.
    ``on_row`` is called after each question's own criteria (progress)."""
    q = specs.quality
    if df.empty:
        out = df.copy()
        for c in CRITERIA:
            out[f"{c}_ok"] = pd.Series(dtype=bool)
            out[f"{c}_reason"] = pd.Series(dtype=object)
        out["passed"] = pd.Series(dtype=bool)
        out["failures"] = pd.Series(dtype=object)
        return out
    per_row: list[dict[str, Verdict]] = []
    for row in df.to_dict("records"):
        per_row.append(row_verdicts(row, specs))
        if on_row is not None:
            on_row()
    # the rows' topic-fit texts are embedded here in one batch: stored vectors embed other text
    for verdicts, verdict in zip(per_row, topic_fit_verdicts(df, specs, embed, q.topic_fit_top_k)):
        verdicts["topic_fit"] = verdict
    cells = df.groupby(["topic", "track", "zone", "level"], sort=False).indices
    for positions in cells.values():
        cell = df.iloc[positions]
        stored = None
        if vectors is not None:
            missing = [i for i in cell["id"] if i not in vectors]
            if missing:
                raise KeyError(f"no stored embedding for question(s) {missing[:3]}; rematerialize question_embeddings")
            stored = np.stack([vectors[i] for i in cell["id"]])
        verdicts = distinctness(cell, q.similarity_threshold, embed, stored)
        for pos, verdict in zip(positions, verdicts):
            per_row[pos]["distinctness"] = verdict
    out = df.copy()
    for c in CRITERIA:
        out[f"{c}_ok"] = [v[c].passed for v in per_row]
        out[f"{c}_reason"] = [v[c].reason for v in per_row]
    out["failures"] = [[f"{c}: {v[c].reason}" for c in CRITERIA if not v[c].passed] for v in per_row]
    out["passed"] = [not f for f in out["failures"]]
    return out
