"""The five quality criteria and the review defects, as plain functions over a question row.

Each returns a :class:`Verdict` with a reason a person can act on. A row is a mapping
with the fields of DESIGN.md §3 (``calc`` may be absent for free-text questions, in
which case the criteria that need it say so).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pint

from staffml_dagster.generation.calc import fmt_quantity, recompute
from staffml_dagster.specs import Figure, Platform, Specs
from staffml_dagster.units import Q_

CRITERIA = ("specificity", "grounding", "falsifiability", "computability", "distinctness", "hygiene")


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
_QUANTITY = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?(TB/s|GB/s|MB/s|TFLOPS|GFLOPS|MFLOPS|TOPS|GOPS|GB|GiB|MB|MiB|kB|KiB|KB|TB|W|mW|uW|µW|MHz|GHz)\b")
_DIMENSIONS = ("[information]", "[information]/[time]", "[operation]/[time]", "[power]", "1/[time]")


def _platform_figures(p: Platform) -> list[pint.Quantity]:
    figs = [p.memory, p.memory_bandwidth, p.power, p.idle_power, p.clock, p.flash, *p.compute.values()]
    return [f.q for f in figs if f is not None]


_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {}


def platform_aliases(specs: Specs) -> dict[str, tuple[str, ...]]:
    """Names by which a platform shows up in text: its full name, the name before any
    parenthesis, and the model-number tokens (H100, MI300X, ESP32-S3, nRF52840, ...)."""
    if specs.version in _ALIASES:
        return _ALIASES[specs.version]
    out = {}
    for p in specs.hardware.platforms:
        base = p.name.split(" (")[0]
        names = {p.name, base, re.sub(r"\s+\d+GB$", "", base)}
        if base.startswith(p.vendor + " "):
            names.add(re.sub(r"\s+\d+GB$", "", base[len(p.vendor) + 1:]))
        for token in re.split(r"[\s/(),]+", p.name):
            if (re.search(r"[A-Za-z]", token) and re.search(r"\d", token) and len(token) >= 3
                    and not re.fullmatch(r"\d+(GB|MB|KB|kB)|SXM\d|M\.2|Gen\d|LX\d|STM32\w+|PCIe\w*", token)):
                names.add(token)
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
        _PATTERNS[specs.version] = (re.compile(rf"(?<![\w-])({alternatives})(?![\w-])"), owners)
    return _PATTERNS[specs.version]


def _mentioned_platforms(text: str, specs: Specs) -> set[str]:
    pattern, owners = _platform_pattern(specs)
    found: set[str] = set()
    for m in pattern.finditer(text):
        found |= owners[m.group(1)]
    return found


def _cited_mismatches(text: str, specs: Specs, tol: float) -> list[str]:
    """Figures stated in the same clause as a platform name that match none of its specs."""
    problems = []
    aliases = platform_aliases(specs)
    for clause in re.split(r"[;\n]|\.\s", text):
        named = [pid for pid in _mentioned_platforms(clause, specs)]
        if len(named) != 1:
            continue  # no platform, or several: a figure cannot be attributed
        platform = specs.platform_by_id[named[0]]
        figures = _platform_figures(platform)
        for number, unit in _QUANTITY.findall(clause):
            unit = {"KB": "kB", "µW": "uW"}.get(unit, unit)
            q = Q_(float(number.replace(",", "")), unit)
            same_dim = [f for f in figures if f.dimensionality == q.dimensionality]
            if not same_dim:
                continue
            if not any(math.isclose(float(q.to(f.units).magnitude), f.magnitude, rel_tol=tol) for f in same_dim):
                problems.append(f"'{number} {unit}' next to {aliases[platform.id][0]} matches none of its figures in specs/hardware.yaml")
    return problems


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
            problems.append(f"step {step.get('name')} states {where} in {step.get('unit')!r}, incompatible with {fig.unit}")
            continue
        if not math.isclose(float(step.get("value", 0)), expected, rel_tol=tol):
            problems.append(f"step {step.get('name')} states {step.get('value')} {step.get('unit')} for {where}; specs say {fmt_quantity(expected, str(step.get('unit')))}")
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
        problems.append(f"the last step gives {final.get('value')} {final.get('unit')}, but the stated answer is {answer:g} {unit}")
    text = _text(row, "napkin_math")
    missing = [s["name"] for s in calc if s.get("kind") != "given" and fmt_quantity(float(s["value"]), str(s.get("unit", ""))) not in text]
    if missing:
        problems.append(f"napkin math text does not show the values of {', '.join(missing[:5])}")
    return _fail("computability", problems)


# --------------------------------------------------------------------------- hygiene (review defects)

_TEMPLATE_TITLE = re.compile(r"(\bL[1-6]\+?|\b(?:new|question|q|item)\s*#?\d+|#\d+|\b\d{3,})\s*$", re.IGNORECASE)


def _truncated(text: str) -> str | None:
    t = text.rstrip()
    if not t:
        return "empty"
    if t[-1] not in ".?!)`*\"'|%":
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
    foreign = sorted(pid for pid in _mentioned_platforms(text, specs) if specs.platform_by_id[pid].track != track)
    if foreign:
        problems.append(f"mentions hardware of another track: {', '.join(foreign)}")
    topic = specs.topic_by_id.get(_text(row, "topic"))
    area = _text(row, "competency_area")
    if topic is not None and area != topic.area:
        problems.append(f"competency area {area!r} does not match topic {topic.id} ({topic.area})")
    return _fail("hygiene", problems)


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


def distinctness(cell: pd.DataFrame, threshold: float, embed: Embed = tfidf_embed, vectors: np.ndarray | None = None) -> list[Verdict]:
    """Within one cell, in order: a question fails if its solution-path signature repeats
    an earlier accepted one, or its text is more similar than ``threshold`` to one.
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
            verdicts.append(Verdict("distinctness", False, f"same solution path and parameters as {signatures[sig]}", signatures[sig]))
            continue
        sims = vectors[accepted] @ vectors[i] if accepted else np.array([])
        if sims.size and float(sims.max()) > threshold:
            j = accepted[int(sims.argmax())]
            verdicts.append(Verdict("distinctness", False, f"cosine similarity {float(sims.max()):.2f} > {threshold} with {rows[j].get('id')}", str(rows[j].get("id"))))
            continue
        accepted.append(i)
        if sig:
            signatures[sig] = str(row.get("id"))
        verdicts.append(_ok("distinctness"))
    return verdicts


# --------------------------------------------------------------------------- all together


def validate_questions(df: pd.DataFrame, specs: Specs, embed: Embed = tfidf_embed, vectors: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Every question with its verdicts: a boolean and a reason per criterion, ``passed``
    and the list of ``failures``. Nothing is dropped. ``vectors`` maps question id to its
    stored embedding (the question_embeddings asset); without it texts are embedded here."""
    q = specs.quality
    if df.empty:
        out = df.copy()
        for c in CRITERIA:
            out[f"{c}_ok"] = pd.Series(dtype=bool)
            out[f"{c}_reason"] = pd.Series(dtype=object)
        out["passed"] = pd.Series(dtype=bool)
        out["failures"] = pd.Series(dtype=object)
        return out
    records = df.to_dict("records")
    per_row: list[dict[str, Verdict]] = []
    for row in records:
        per_row.append({
            "specificity": specificity(row, specs),
            "grounding": grounding(row, specs, q.grounding_tolerance),
            "falsifiability": falsifiability(row, q.numeric_tolerance),
            "computability": computability(row, q.numeric_tolerance),
            "hygiene": hygiene(row, specs),
        })
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
