"""Audit a corpus of free-text questions: what a corpus maintainer needs fixed, with evidence.

:func:`audit_rows` runs every check over question rows (as :func:`~staffml_dagster.interchange.
importer.import_corpus` gives them) and returns one :class:`Finding` per problem:

* ``arithmetic`` — a statement in the napkin math or the solution whose stated result
  disagrees with its operands (:mod:`staffml_dagster.quality.arithmetic`); the fix is the
  recomputed value. A question with no parseable statement is *unverifiable*, not a finding.
* ``hardware_figure`` — a figure written beside a platform that is none of its figures in
  ``specs/hardware.yaml`` (:func:`~staffml_dagster.quality.criteria.figure_attributions`).
* ``off_track`` — a platform of another track named in a question of a track.
* ``truncated`` — a text that stops mid-sentence or mid-number, or with unbalanced markup.
* ``placeholder`` — [INSERT], TODO, {var}, template titles, generator scaffolding.
* ``common_mistake`` — no common mistake, or one too short to name a misconception.
* ``duplicate`` — the same scenario, question and solution as an earlier question.
* ``unreadable`` — a file or bundle entry the importer refused (named, with the reason).

:func:`write_report` writes ``report.jsonl`` (one finding a line) and a self-contained
``report.html``; both are sorted, carry no timestamp, and are written through a temp file
and a rename, so an audit of the same corpus gives the same bytes and a failed write leaves
the previous report whole. Plain functions; the CLI command ``staffml audit`` is a thin wrapper.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from staffml_dagster.core.calc import fmt_quantity
from staffml_dagster.quality.arithmetic import check_arithmetic
from staffml_dagster.quality.criteria import (
    _TEMPLATE_TITLE,
    Attribution,
    _platform_figures,
    _platform_pattern,
    _text,
    _truncated,
    falsifiability,
    figure_attributions,
    figure_problem,
    placeholder_residue,
)
from staffml_dagster.specs import Specs
from staffml_dagster.storage.atomic import write_atomic

AUDIT_CRITERIA = (
    "arithmetic",
    "hardware_figure",
    "off_track",
    "truncated",
    "placeholder",
    "common_mistake",
    "duplicate",
    "unreadable",
)
TEXT_FIELDS = ("title", "scenario", "question", "realistic_solution", "common_mistake", "napkin_math")
FIGURE_FIELDS = (
    "scenario",
    "question",
    "realistic_solution",
    "napkin_math",
)  # the common mistake may state wrong figures on purpose
PROSE_FIELDS = ("scenario", "question", "realistic_solution", "common_mistake")
REPORT_JSONL = "report.jsonl"
REPORT_HTML = "report.html"
MAX_EVIDENCE = 400  # characters of evidence kept per finding


@dataclass(frozen=True, order=True)
class Finding:
    question_id: str
    criterion: str
    field: str  # where: the text field, or the file for an unreadable entry
    evidence: str
    suggested_fix: str | None = None
    source_path: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class AuditResult:
    source: str
    questions: int = 0
    findings: list[Finding] = field(default_factory=list)
    statements_checked: int = 0  # arithmetic statements recomputed
    arithmetic_unverifiable: list[str] = field(default_factory=list)  # ids with no parseable statement
    figures_checked: int = 0

    def per_criterion(self) -> dict[str, int]:
        counts = Counter(f.criterion for f in self.findings)
        return {c: counts.get(c, 0) for c in AUDIT_CRITERIA}

    def flagged_questions(self) -> list[str]:
        return sorted({f.question_id for f in self.findings if f.criterion != "unreadable"})

    def summary(self) -> str:
        flagged = self.flagged_questions()
        lines = [
            f"audited {self.questions} question(s) from {self.source}: {len(self.findings)} finding(s) in "
            f"{len(flagged)} question(s)"
        ]
        lines.append("per criterion: " + ", ".join(f"{c} {n}" for c, n in self.per_criterion().items()))
        lines.append(
            f"arithmetic: {self.statements_checked} statement(s) recomputed; {len(self.arithmetic_unverifiable)} "
            "question(s) with none parseable (unverifiable, not a finding)"
        )
        lines.append(
            f"hardware figures: {self.figures_checked} written beside a platform and checked against "
            "specs/hardware.yaml"
        )
        return "\n".join(lines)


def _clip(text: str, limit: int = MAX_EVIDENCE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def arithmetic_findings(row: Mapping) -> tuple[list[Finding], int]:
    """Wrong statements of the napkin math and the solution, and how many statements were checked."""
    qid, out, checked = _text(row, "id"), [], 0
    for key in ("napkin_math", "realistic_solution"):
        check = check_arithmetic(_text(row, key))
        checked += len(check.statements)
        for s in check.wrong:
            out.append(
                Finding(qid, "arithmetic", key, _clip(s.describe()), s.suggestion or None, _text(row, "source_path"))
            )
    return out, checked


def figure_findings(row: Mapping, specs: Specs, tol: float) -> tuple[list[Finding], int]:
    qid, out, checked = _text(row, "id"), [], 0
    for key in FIGURE_FIELDS:
        for attribution in figure_attributions(_text(row, key), specs):
            if not attribution.platforms or attribution.other_part or attribution.usage:
                continue
            checked += 1
            problem = figure_problem(attribution, specs, tol)
            if problem:
                out.append(
                    Finding(
                        qid,
                        "hardware_figure",
                        key,
                        _clip(problem),
                        _figures_of(attribution, specs),
                        _text(row, "source_path"),
                    )
                )
    return out, checked


def _figures_of(attribution: Attribution, specs: Specs) -> str | None:
    """What specs/hardware.yaml says for the figure's dimension, per platform it names."""
    parts = []
    for pid in sorted(attribution.platforms):
        same = [
            f
            for f in _platform_figures(specs.platform_by_id[pid])
            if f.dimensionality == attribution.quantity.dimensionality
        ]
        if same:
            parts.append(f"{pid}: " + ", ".join(fmt_quantity(float(f.magnitude), f"{f.units:~}") for f in same))
    return "specs say " + "; ".join(parts) if parts else None


def off_track_findings(row: Mapping, specs: Specs) -> list[Finding]:
    """Platforms of another track named in the text (or listed in ``platforms``); none for a row without a track."""
    qid, track = _text(row, "id"), _text(row, "track")
    if not track:
        return []
    own = [p.id for p in specs.platforms_for(track)]
    pattern, owners = _platform_pattern(specs)
    out, seen = [], set()
    for key in TEXT_FIELDS:
        for m in pattern.finditer(_text(row, key)):
            pids = owners[m.group(1)]
            foreign = sorted(p for p in pids if specs.platform_by_id[p].track != track)
            if not foreign or len(foreign) < len(pids) or (key, m.group(1)) in seen:
                continue  # a name some platform of the track also answers to is not off-track
            seen.add((key, m.group(1)))
            tracks = sorted({specs.platform_by_id[p].track for p in foreign})
            out.append(
                Finding(
                    qid,
                    "off_track",
                    key,
                    f"'{m.group(1)}' is {'/'.join(tracks)} hardware in a {track} question",
                    f"a {track} platform instead, e.g. {', '.join(own[:3])}",
                    _text(row, "source_path"),
                )
            )
    listed = row.get("platforms")
    for pid in list(listed) if listed is not None and not isinstance(listed, str) else []:
        platform = specs.platform_by_id.get(str(pid))
        if platform is not None and platform.track != track:
            out.append(
                Finding(
                    qid,
                    "off_track",
                    "platforms",
                    f"platform {pid} belongs to {platform.track}, not {track}",
                    None,
                    _text(row, "source_path"),
                )
            )
    return out


def text_findings(row: Mapping) -> list[Finding]:
    """Truncation, placeholders and template residue, a missing common mistake."""
    qid, src, out = _text(row, "id"), _text(row, "source_path"), []
    for key in PROSE_FIELDS:
        issue = _truncated(_text(row, key))
        if issue:
            out.append(Finding(qid, "truncated", key, f"{key} {issue}", None, src))
    for key in TEXT_FIELDS:
        found = placeholder_residue(_text(row, key))
        if found:
            out.append(
                Finding(
                    qid, "placeholder", key, _clip(f"{key} contains {', '.join(repr(f) for f in found)}"), None, src
                )
            )
    title = _text(row, "title")
    if _TEMPLATE_TITLE.search(title):
        out.append(
            Finding(qid, "placeholder", "title", _clip(f"title looks generated from a template: {title!r}"), None, src)
        )
    verdict = falsifiability({**row, "calc": None})
    if verdict.reason.startswith("no common mistake"):  # our "Pitfall" format is not asked of another corpus
        out.append(Finding(qid, "common_mistake", "common_mistake", _clip(verdict.reason), None, src))
    return out


def duplicate_findings(rows: list[Mapping]) -> list[Finding]:
    """Questions whose scenario, question and solution repeat an earlier one's (case and spacing aside)."""
    from staffml_dagster.interchange.review import content_key

    first: dict[str, str] = {}
    out = []
    for row in rows:
        key = content_key(row)
        qid = _text(row, "id")
        if key in first:
            out.append(
                Finding(
                    qid,
                    "duplicate",
                    "scenario",
                    f"same scenario, question and solution as {first[key]}",
                    f"drop it or merge with {first[key]}",
                    _text(row, "source_path"),
                )
            )
        else:
            first[key] = qid
    return out


def audit_rows(
    rows: Iterable[Mapping], specs: Specs, source: str = "", unreadable: Iterable[tuple[str, str]] = ()
) -> AuditResult:
    """Every check over every row; ``unreadable`` are (file, reason) pairs the import refused."""
    rows = list(rows)
    tol = specs.quality.grounding_tolerance
    result = AuditResult(source=source, questions=len(rows))
    findings: list[Finding] = []
    for row in rows:
        found, checked = arithmetic_findings(row)
        result.statements_checked += checked
        if not checked:
            result.arithmetic_unverifiable.append(_text(row, "id"))
        figures, n = figure_findings(row, specs, tol)
        result.figures_checked += n
        findings += found + figures + off_track_findings(row, specs) + text_findings(row)
    findings += duplicate_findings(rows)
    findings += [Finding("", "unreadable", where, _clip(reason), None, where) for where, reason in unreadable]
    result.findings = sorted(set(findings))
    result.arithmetic_unverifiable.sort()
    return result


# ----------------------------------------------------------------------------------- report


def report_jsonl(result: AuditResult) -> str:
    return "".join(json.dumps(f.as_dict(), ensure_ascii=False, sort_keys=True) + "\n" for f in result.findings)


_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}th{background:#f2f2f2}
td.c{white-space:nowrap}code{font-size:12px}.n{text-align:right}h2{margin-top:1.5em}"""


def report_html(result: AuditResult) -> str:
    """A self-contained page (no scripts, no external resources); every corpus text is escaped."""
    e = html.escape
    counts = result.per_criterion()
    rows = "".join(f"<tr><td>{e(c)}</td><td class=n>{n}</td></tr>" for c, n in counts.items())
    findings = "".join(
        f"<tr><td class=c>{e(f.question_id)}</td><td class=c>{e(f.criterion)}</td>"
        f"<td>{e(f.field)}</td><td>{e(f.evidence)}</td>"
        f"<td>{e(f.suggested_fix or '')}</td><td><code>{e(f.source_path)}</code></td></tr>"
        for f in result.findings
    )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>StaffML audit</title><style>{_STYLE}</style></head><body>"
        f"<h1>Audit of {e(result.source)}</h1><p>{result.questions} question(s); {len(result.findings)} finding(s) in "
        f"{len(result.flagged_questions())} question(s). {result.statements_checked} arithmetic statement(s) "
        f"recomputed; {len(result.arithmetic_unverifiable)} question(s) without a parseable statement (unverifiable). "
        f"{result.figures_checked} hardware figure(s) checked against specs/hardware.yaml.</p>"
        f"<h2>Findings per criterion</h2><table><tr><th>criterion</th><th>findings</th></tr>{rows}</table>"
        "<h2>Findings</h2><table><tr><th>question</th><th>criterion</th><th>field</th><th>evidence</th>"
        "<th>suggested fix</th><th>source</th></tr>"
        f"{findings or '<tr><td colspan=6>nothing found</td></tr>'}</table></body></html>\n"
    )


def write_report(result: AuditResult, out_dir: Path) -> dict[str, Path]:
    """``report.jsonl`` and ``report.html`` in ``out_dir``, each through a temp file and a rename."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"jsonl": out_dir / REPORT_JSONL, "html": out_dir / REPORT_HTML}
    write_atomic(paths["jsonl"], report_jsonl(result))
    write_atomic(paths["html"], report_html(result))
    return paths


def audit_path(path: Path | str, specs: Specs) -> AuditResult:
    """Import a corpus (a published folder tree, a bundle, or one file) and audit it. Raises
    FileNotFoundError when the path does not exist and ValueError when nothing in it imports."""
    from staffml_dagster.interchange.importer import import_corpus

    imported = import_corpus(path, specs)
    if not imported.rows:
        reasons = "; ".join(str(e) for e in imported.errors[:3]) or "no .yaml, .yml, .json or .jsonl question files"
        raise ValueError(f"nothing to audit in {path}: {reasons}")
    return audit_rows(imported.rows, specs, str(path), [(e.where, e.message) for e in imported.errors])
