"""One house style for review items from any source: the text normaliser of the blind-review
protocol (``../shared/docs/REVIEW_RUBRIC.md``), shared by ``benchmarks/reviews/sample.py`` and the
review sheets of ``quality/review_rounds.py``.

Generated and published questions label their napkin-math sections differently, and ours
carry provenance annotations ("(specs/hardware.yaml: ...)") that would tell a reviewer which
source an item came from; :func:`normalise_text` renders every field the same way and strips
them. Only the standard library and pandas.
"""

from __future__ import annotations

import re

import pandas as pd

META_FIELDS = (("topic", "Topic"), ("track", "Track"), ("zone", "Zone"), ("level", "Level"), ("title", "Title"))
SECTIONS = (
    ("scenario", "Scenario"),
    ("question", "Question"),
    ("realistic_solution", "Realistic solution"),
    ("common_mistake", "Common mistake"),
    ("napkin_math", "Napkin math"),
)

# Sub-labels both sources use inside a field, in either spelling -> the one label rendered.
# Published rows say "Conclusion & Interpretation", ours "Conclusion"; both become "Conclusion".
LABELS = {
    "assumptions & constraints": "Assumptions & Constraints",
    "assumptions and constraints": "Assumptions & Constraints",
    "assumptions": "Assumptions & Constraints",
    "calculations": "Calculations",
    "calculation": "Calculations",
    "conclusion & interpretation": "Conclusion",
    "conclusion and interpretation": "Conclusion",
    "conclusion": "Conclusion",
    "the pitfall": "The Pitfall",
    "pitfall": "The Pitfall",
    "the rationale": "The Rationale",
    "rationale": "The Rationale",
    "the consequence": "The Consequence",
    "consequence": "The Consequence",
}
# Provenance annotations our napkin math carries after each given, e.g.
# "(specs/hardware.yaml: h100.hbm_bandwidth)", "(scenario: batch size)", "(assumption: typical batch)": they name the
# tool's files and exist only in generated rows, so they are removed (balanced parentheses).
PROVENANCE_PREFIXES = ("specs/", "assumption:", "scenario:", "hardware.json", "taxonomy.json", "reference/")


def _strip_provenance(line: str) -> str:
    out, i = [], 0
    while i < len(line):
        if line[i] == "(" and line[i + 1 :].lstrip().lower().startswith(PROVENANCE_PREFIXES):
            depth, j = 0, i
            while j < len(line):
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                if depth == 0:
                    break
                j += 1
            while out and out[-1] == " ":
                out.pop()
            i = j + 1
            continue
        out.append(line[i])
        i += 1
    return "".join(out)


_LABEL_RE = re.compile(
    r"^\s*(?:#+\s*)?(?:(?:[-*]|\d+[.)])\s+)?(?:\*\*|__)?\s*(?P<label>[A-Za-z][A-Za-z "
    r"&]*?)\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*(?P<rest>.*)$"
)


def _label(line: str) -> tuple[str, str] | None:
    """(canonical label, rest of the line) when ``line`` opens with a known sub-label."""
    m = _LABEL_RE.match(line)
    if not m:
        return None
    canonical = LABELS.get(re.sub(r"\s+", " ", m.group("label").strip().lower()))
    return (canonical, m.group("rest").strip()) if canonical else None


def normalise_text(text: object, field: str = "") -> str:
    """One house style for every source: known sub-labels rendered as ``**Label:**`` (the
    conclusion always "Conclusion"), other bold/code/heading markup and provenance
    annotations removed, bullets as "- ", no trailing whitespace, single blank lines."""
    if text is None or (pd.api.types.is_scalar(text) and pd.isna(text)):
        return ""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    lines: list[str] = []
    in_conclusion = False
    for raw in text.split("\n"):
        line = raw.rstrip()
        if line.strip().startswith("```"):
            continue
        labelled = _label(line) if field in ("napkin_math", "common_mistake") else None
        if labelled:
            label, rest = labelled
            in_conclusion = label == "Conclusion"
            rest = _inline(rest)
            if field == "napkin_math":
                lines.append(f"**{label}:**")
                if rest:
                    lines.append(_conclusion_line(rest) if in_conclusion else rest)
            else:
                lines.append(f"**{label}:** {rest}".rstrip())
            continue
        line = re.sub(r"^(\s*)#+\s+", r"\1", line)
        line = re.sub(r"^(\s*)[*+]\s+", r"\1- ", line)
        line = re.sub(r"^(\s*)\d+[.)]\s+", r"\1- ", line)
        line = _inline(line)
        if in_conclusion and line.strip():
            line = _conclusion_line(line)
        lines.append(line)
    if field == "napkin_math":
        lines = _join_conclusion(_dedent_sections(lines))
    out = "\n".join(lines).strip("\n")
    out = re.sub(r"\n{3,}", "\n\n", out)
    # a label line is preceded by a blank line (except the first)
    out = re.sub(
        r"(?<=[^\n])\n(\*\*(?:Assumptions & Constraints|Calculations|Conclusion|"
        r"The Pitfall|The Rationale|The Consequence):\*\*)",
        r"\n\n\1",
        out,
    )
    return out.strip()


def _inline(line: str) -> str:
    # code spans keep their text (a `side ** 2` is an exponent, not bold markup)
    parts = re.split(r"(`[^`]*`)", line)
    for i, part in enumerate(parts):
        if not part.startswith("`"):
            part = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"\1", part)
            parts[i] = re.sub(r"__(.+?)__", r"\1", part)
    line = "".join(parts).replace("`", "")
    line = _strip_provenance(line)
    return line.rstrip()


def _conclusion_line(line: str) -> str:
    """Published conclusions are bullets like "- **Result: ...**"; ours a plain sentence."""
    line = re.sub(r"^\s*-\s+", "", line)
    line = re.sub(r"^\s*(?:Result|Answer|Bottom line)\s*:\s*", "", line, flags=re.I)
    return line.strip()


def _dedent_sections(lines: list[str]) -> list[str]:
    """Published napkin math sometimes nests each section's bullets under a numbered label
    ("1. **Calculations:**" then "   - ..."); ours does not. Dedent each section's lines by
    their common indentation (deeper nesting inside a section is kept)."""
    out: list[str] = []
    section: list[str] = []

    def flush():
        indents = [len(line) - len(line.lstrip(" ")) for line in section if line.strip()]
        cut = min(indents, default=0)
        out.extend(line[cut:] if line.strip() else "" for line in section)
        section.clear()

    for line in lines:
        if _label(line):
            flush()
            out.append(line)
        else:
            section.append(line)
    flush()
    return out


def _join_conclusion(lines: list[str]) -> list[str]:
    """The conclusion as one paragraph, whatever the source split it into."""
    try:
        start = lines.index("**Conclusion:**")
    except ValueError:
        return lines
    body = " ".join(line.strip() for line in lines[start + 1 :] if line.strip())
    return lines[: start + 1] + ([body] if body else [])
