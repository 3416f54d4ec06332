"""The StaffML text shapes every backend renders: the three-part common mistake and the
three-part napkin math (assumptions with sources, one re-computable step per line, conclusion)."""

from __future__ import annotations

from staffml_dagster.generation.calc import CalcStep, fmt_quantity


def napkin_math(steps: list[CalcStep], conclusion: str) -> str:
    lines = ["**Assumptions & Constraints:**"]
    for s in steps:
        if s.kind == "given":
            lines.append(f"- {s.label}: {fmt_quantity(s.value, s.unit)} ({s.source})")
    lines += ["", "**Calculations:**"]
    for s in steps:
        if s.kind == "derived":
            lines.append(f"- {s.label}: `{s.name} = {s.expression}` = {fmt_quantity(s.value, s.unit)}")
    lines += ["", "**Conclusion:**", conclusion]
    return "\n".join(lines)


def common_mistake(parts: dict) -> str:
    return (
        f"**The Pitfall:** {parts['pitfall']}\n"
        f"**The Rationale:** {parts['rationale']}\n"
        f"**The Consequence:** {parts['consequence']}"
    )
