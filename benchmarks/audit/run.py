"""Planted-defect benchmark for ``staffml audit``.

Reads the 40 published StaffML questions of ``../shared/reference/staffml_questions_sample.jsonl``
(their text stays there: only counts are written here), plants one defect at a time into copies
of them, audits every copy with :func:`staffml_dagster.interchange.audit.audit_rows`, and counts:

* **caught**: a copy is caught when the audit reports a finding of the defect's criterion that
  the clean original does not have;
* **false alarms** on the clean originals: questions with a finding of a criterion, minus the
  findings confirmed by hand as real defects (``confirmed.json``, each with why).

The defects are those of issue 16, planted ``--copies`` times per question with a seeded
random choice of where and how (``--seed``):

* ``arithmetic``: one result of a calculation in the napkin math (a number right after the
  ``=`` or ``≈`` that closes an arithmetic expression of its clause) multiplied by 10;
* ``hardware_figure``: a figure written beside a single platform's name that matches
  specs/hardware.yaml, changed by +30%; a question without one gets a sentence naming one of
  its track's platforms with one of its spec figures changed by +30% (counted apart);
* ``truncated``: the scenario cut at a word boundary that is not a sentence end (half of the
  copies right after a number when there is one);
* ``off_track``: a platform name of the question's track replaced by another track's, or a
  sentence naming another track's platform added (questions of the ``global`` track have no
  other track and are skipped);
* ``common_mistake``: the common mistake removed;
* ``placeholder``: an [INSERT ...], TODO, {var}, XXX or <placeholder> put into the scenario.

    .venv/bin/python benchmarks/audit/run.py            # writes benchmarks/audit/results.json
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from staffml_dagster.core.calc import fmt_quantity  # noqa: E402
from staffml_dagster.interchange.audit import AUDIT_CRITERIA, audit_rows  # noqa: E402
from staffml_dagster.interchange.importer import import_corpus  # noqa: E402
from staffml_dagster.quality.criteria import (  # noqa: E402
    _platform_figures,
    _platform_pattern,
    figure_attributions,
    figure_problem,
    is_family_name,
    platform_aliases,
)
from staffml_dagster.specs import cached_specs  # noqa: E402

SAMPLE = ROOT.parent / "shared" / "reference" / "staffml_questions_sample.jsonl"
HERE = Path(__file__).resolve().parent
KINDS = ("arithmetic", "hardware_figure", "truncated", "off_track", "common_mistake", "placeholder")
GOAL_CAUGHT, GOAL_FALSE_ALARMS = 0.90, 0.10

_RESULT = re.compile(r"(?P<sep>=|≈)\s*(?:~\s*)?\$?(?P<num>\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?)")
_COMPUTES = re.compile(r"(?:(?<![A-Za-z\d])\d[\d,.]*[A-Za-z/µ]*|\))\s*(?:[*/+×x]|\s-\s)\s*[~$]?[\d(]")  # not "Gen4x16"


def _times(number: str, factor: float) -> str:
    """A written number times ``factor``, written the same way (commas, decimals)."""
    value = float(number.replace(",", "")) * factor
    decimals = len(number.split(".")[1]) if "." in number else 0
    text = f"{value:,.{decimals}f}" if "," in number or value >= 10_000 and "," in number else f"{value:.{decimals}f}"
    return text


# ------------------------------------------------------------------------------------ planting


def plant_arithmetic(row: dict, rng: random.Random, specs) -> dict | None:
    text = row.get("napkin_math") or ""
    candidates = []
    for m in _RESULT.finditer(text):
        clause_start = (
            max(
                text.rfind("\n", 0, m.start()),
                text.rfind(":", 0, m.start()),
                text.rfind(";", 0, m.start()),
                text.rfind(". ", 0, m.start()),
                text.rfind("=", 0, m.start()),
            )
            + 1
        )
        if _COMPUTES.search(text[clause_start : m.start()]):
            candidates.append(m)
    if not candidates:
        return None
    m = rng.choice(candidates)
    num = m.group("num")
    planted = text[: m.start("num")] + _times(num, 10) + text[m.end("num") :]
    return {**row, "napkin_math": planted}


def _single_aliases(specs) -> dict[str, list[str]]:
    """Per platform, the names that name it alone (no family or core name), without parentheses."""
    return {
        pid: [n for n in names if not is_family_name(n, specs) and "(" not in n]
        for pid, names in platform_aliases(specs).items()
    }


def plant_hardware_figure(row: dict, rng: random.Random, specs) -> tuple[dict, str] | None:
    tol = specs.quality.grounding_tolerance
    existing = []
    for key in ("scenario", "napkin_math", "realistic_solution"):
        for a in figure_attributions(row.get(key) or "", specs):
            if (
                len(a.platforms) == 1
                and not is_family_name(a.name, specs)
                and not a.other_part
                and not a.usage
                and figure_problem(a, specs, tol) is None
            ):
                existing.append((key, a))
    if existing:
        key, a = rng.choice(existing)
        text = row[key]
        number = re.match(r"[\d,]*(?:\.\d+)?", a.text).group(0)
        changed = _times(number, 1.3) if "." in number else str(round(float(number.replace(",", "")) * 1.3))
        return {**row, key: text[: a.start] + changed + text[a.start + len(number) :]}, "existing figure"
    track = row.get("track")
    platforms = specs.platforms_for(track) if track else specs.hardware.platforms
    names = _single_aliases(specs)
    platform = rng.choice([p for p in platforms if names[p.id]])
    figure = rng.choice(_platform_figures(platform))
    written = fmt_quantity(float(figure.magnitude) * 1.3, f"{figure.units:~}".replace(" ", ""))
    sentence = f" The team benchmarks it on the {rng.choice(names[platform.id])} ({written})."
    return {**row, "scenario": row["scenario"].rstrip() + sentence}, "added sentence"


def plant_truncated(row: dict, rng: random.Random, specs) -> dict | None:
    text = row["scenario"]
    ends = [
        m.end()
        for m in re.finditer(r"\S+", text)
        if len(text) * 0.3 <= m.end() <= len(text) * 0.9 and text[m.end() - 1] not in ".?!"
    ]
    if not ends:
        return None
    numeric = [e for e in ends if re.search(r"\d%?$", text[:e])]
    cut = rng.choice(numeric) if numeric and rng.random() < 0.5 else rng.choice(ends)
    return {**row, "scenario": text[:cut]}


def plant_off_track(row: dict, rng: random.Random, specs) -> dict | None:
    track = row.get("track")
    if track not in {p.track for p in specs.hardware.platforms}:
        return None  # the global track has no other track
    names = _single_aliases(specs)
    foreign = rng.choice([p for p in specs.hardware.platforms if p.track != track and names[p.id]])
    name = rng.choice(names[foreign.id])
    pattern, owners = _platform_pattern(specs)
    own = [
        m
        for m in pattern.finditer(row["scenario"])
        if all(specs.platform_by_id[p].track == track for p in owners[m.group(1)])
    ]
    if own:
        m = rng.choice(own)
        return {**row, "scenario": row["scenario"][: m.start(1)] + name + row["scenario"][m.end(1) :]}
    return {**row, "scenario": row["scenario"].rstrip() + f" It was first prototyped on a {name}."}


def plant_common_mistake(row: dict, rng: random.Random, specs) -> dict:
    return {**row, "common_mistake": ""}


_PLACEHOLDERS = (
    "[INSERT batch size]",
    "TODO",
    "{num_gpus}",
    "XXX",
    "<placeholder>",
    "[INSERT model]",
    "{{ platform }}",
)


def plant_placeholder(row: dict, rng: random.Random, specs) -> dict:
    sentences = [m.end() for m in re.finditer(r"[.?!]\s", row["scenario"])] or [len(row["scenario"])]
    at = rng.choice(sentences)
    token = rng.choice(_PLACEHOLDERS)
    return {**row, "scenario": row["scenario"][:at] + f"The budget is {token} per request. " + row["scenario"][at:]}


PLANTERS = {
    "arithmetic": plant_arithmetic,
    "hardware_figure": plant_hardware_figure,
    "truncated": plant_truncated,
    "off_track": plant_off_track,
    "common_mistake": plant_common_mistake,
    "placeholder": plant_placeholder,
}


# ------------------------------------------------------------------------------------ measuring


def _keys(result, qid: str, criterion: str) -> set[tuple]:
    return {(f.field, f.evidence) for f in result.findings if f.question_id == qid and f.criterion == criterion}


def run(copies: int, seed: int) -> dict:
    specs = cached_specs()
    imported = import_corpus(SAMPLE, specs)
    rows = imported.rows
    started = time.perf_counter()
    clean = audit_rows(rows, specs, "sample")
    confirmed = {(c["id"], c["criterion"]) for c in json.loads((HERE / "confirmed.json").read_text())["confirmed"]}
    flagged = defaultdict(set)
    for f in clean.findings:
        flagged[f.criterion].add(f.question_id)
    false_alarms = {c: sorted(q for q in flagged[c] if (q, c) not in confirmed) for c in AUDIT_CRITERIA}

    rng = random.Random(seed)
    planted: dict[str, Counter] = {k: Counter() for k in KINDS}
    missed: dict[str, list[str]] = {k: [] for k in KINDS}
    for kind in KINDS:
        for row in rows:
            for copy_no in range(copies):
                out = PLANTERS[kind](copy.deepcopy(row), random.Random(rng.random()), specs)
                if out is None:
                    planted[kind]["not plantable"] += 1
                    break
                mode = ""
                if isinstance(out, tuple):
                    out, mode = out
                variant = audit_rows([out], specs, "planted")
                before = _keys(clean, row["id"], kind)
                new = _keys(variant, row["id"], kind) - before
                bucket = f"{mode}: " if mode else ""
                planted[kind][bucket + "planted"] += 1
                if new:
                    planted[kind][bucket + "caught"] += 1
                else:
                    missed[kind].append(f"{row['id']}#{copy_no}")
    elapsed = time.perf_counter() - started

    kinds = {}
    for kind, counts in planted.items():
        total = sum(n for k, n in counts.items() if k.endswith("planted"))
        caught = sum(n for k, n in counts.items() if k.endswith("caught"))
        kinds[kind] = {
            "planted": total,
            "caught": caught,
            "rate": round(caught / total, 3) if total else None,
            "questions_not_plantable": counts.get("not plantable", 0),
            "by_mode": {k: n for k, n in sorted(counts.items()) if ":" in k},
            "missed": missed[kind][:25],
            "goal_met": bool(total) and caught / total >= GOAL_CAUGHT,
        }
    clean_stats = {
        c: {
            "flagged": len(flagged[c]),
            "confirmed_real": len(flagged[c]) - len(false_alarms[c]),
            "false_alarms": len(false_alarms[c]),
            "false_alarm_rate": round(len(false_alarms[c]) / len(rows), 3),
            "false_alarm_ids": false_alarms[c],
            "goal_met": len(false_alarms[c]) / len(rows) <= GOAL_FALSE_ALARMS,
        }
        for c in AUDIT_CRITERIA
    }
    return {
        "corpus": (
            "../shared/reference/staffml_questions_sample.jsonl (40 published StaffML questions; text not copied)"
        ),
        "seed": seed,
        "copies_per_question": copies,
        "seconds": round(elapsed, 1),
        "goals": {"caught_per_kind": GOAL_CAUGHT, "false_alarms_per_criterion": GOAL_FALSE_ALARMS},
        "clean": {
            "questions": len(rows),
            "findings": len(clean.findings),
            "arithmetic_statements_recomputed": clean.statements_checked,
            "arithmetic_unverifiable_questions": len(clean.arithmetic_unverifiable),
            "hardware_figures_checked": clean.figures_checked,
            "per_criterion": clean_stats,
        },
        "planted": kinds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=5, help="planted copies per question and defect kind")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    if not SAMPLE.exists():
        print(f"{SAMPLE} is not present; nothing to measure", file=sys.stderr)
        return 2
    results = run(args.copies, args.seed)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"{'defect':18} {'caught':>14}   goal >= {GOAL_CAUGHT:.0%}")
    for kind, r in results["planted"].items():
        print(
            f"{kind:18} {r['caught']:>5}/{r['planted']:<5} {r['rate']:.1%}  {'met' if r['goal_met'] else 'MISSED'}  "
            f"{r['by_mode'] or ''}"
        )
    print(
        f"\nclean questions ({results['clean']['questions']}): false alarms per criterion (goal <= "
        f"{GOAL_FALSE_ALARMS:.0%})"
    )
    for c, r in results["clean"]["per_criterion"].items():
        print(
            f"  {c:16} flagged {r['flagged']}, confirmed real {r['confirmed_real']}, false alarms {r['false_alarms']} "
            f"({r['false_alarm_rate']:.1%})"
        )
    print(f"written: {args.out}")
    return (
        0
        if all(r["goal_met"] for r in results["planted"].values())
        and all(r["goal_met"] for r in results["clean"]["per_criterion"].values())
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
