"""The StaffML text shapes every backend renders: the three-part common mistake and the
three-part napkin math (assumptions with sources, one re-computable step per line, conclusion)."""

from __future__ import annotations

import re

from staffml_dagster.core.calc import CalcStep, fmt_quantity


def _provenance(source: str) -> str:
    """Where a given figure comes from, as the reader needs it: the spec it is grounded in, the
    reason for an assumption. A figure from the scenario or a measurement stated there needs no
    note: the reader has just read it."""
    if source.startswith(("scenario:", "observed:")):
        return ""
    return source


def _with_values(expression: str, shown: dict[str, str]) -> str:
    """An expression with each step's name replaced by its value: '28.6 GFLOP / (30 TOPS × 40%)';
    a literal quantity written in quotes in the calc ('1 byte') reads without them."""
    text = re.sub(
        r"'([^'\n]*)'|\b[A-Za-z_]\w*\b",
        lambda m: m.group(1) if m.group(1) is not None else shown.get(m.group(0), m.group(0)),
        expression,
    )
    return text.replace("**", "^").replace("*", "×")


def napkin_math(steps: list[CalcStep], conclusion: str) -> str:
    lines = ["**Assumptions & Constraints:**"]
    for s in steps:
        if s.kind == "given":
            note = _provenance(s.source)
            lines.append(f"- {s.label}: {fmt_quantity(s.value, s.unit)}" + (f" ({note})" if note else ""))
    lines += ["", "**Calculations:**"]
    shown = {s.name: fmt_quantity(s.value, s.unit) for s in steps}
    for s in steps:
        if s.kind == "derived":
            worked, value = _with_values(s.expression, shown), fmt_quantity(s.value, s.unit)
            lines.append(
                f"- {s.label}: {value}" if worked == value else f"- {s.label}: {worked} = {value}"
            )  # no '141.1 GB = 141.1 GB'

    lines += ["", "**Conclusion:**", conclusion]
    return "\n".join(lines)


def common_mistake(parts: dict) -> str:
    return (
        f"**The Pitfall:** {parts['pitfall']}\n"
        f"**The Rationale:** {parts['rationale']}\n"
        f"**The Consequence:** {parts['consequence']}"
    )
