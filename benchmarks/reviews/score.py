"""Unblind a review: the reviewer's scores against the key, per source and against the gate.

Implements step 4 of ../shared/docs/REVIEW_RUBRIC.md. Reads ``DIR/scores.json`` (the
reviewer's, one object per item) and ``DIR/key.json`` (sample.py's), validates the scores,
then prints and writes ``DIR/summary.md`` and ``DIR/summary.json``:

- per source (corpus, staffml): items, the share passing each criterion, mean template_smell;
- corpus items: agreement between the gate's verdict and the reviewer's for every criterion
  the gate has a counterpart for (GATE_TO_REVIEWER below, whichever columns key.json has);
- corpus items: the reviewer's reasons for every 0, per criterion.

    .venv/bin/python benchmarks/reviews/score.py benchmarks/reviews/2025-01-01-seed7

Only the standard library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Gate verdict column (key.json, from the corpus) -> reviewer criterion it claims to measure.
GATE_TO_REVIEWER = {
    "topic_fit_ok": "topic_fit",
    "coherence_ok": "coherent",
    "structure_ok": "zone_fit",
    "grounding_ok": "grounding",
    "computability_ok": "math_correct",
    "falsifiability_ok": "mistake_real",
    "passed": "staff_worthy",
}
CRITERIA = ("topic_fit", "zone_fit", "grounding", "math_correct", "mistake_real", "coherent", "staff_worthy")
SMELL = "template_smell"
SMELL_VALUES = (0, 1, 2)
SOURCES = ("corpus", "staffml")


class ScoreError(ValueError):
    """scores.json or key.json is malformed; the message names every item and field at fault."""


# --------------------------------------------------------------------------- loading


def load_json(path: Path):
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"{path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ScoreError(f"{path}: not valid JSON: {exc}") from exc


def load_key(raw) -> dict[int, dict]:
    if not isinstance(raw, dict) or not raw:
        raise ScoreError("key.json: expected a non-empty object {item number: {source, id, ...}}")
    key: dict[int, dict] = {}
    for k, entry in raw.items():
        try:
            number = int(k)
        except (TypeError, ValueError):
            raise ScoreError(f"key.json: item number {k!r} is not an integer") from None
        if not isinstance(entry, dict) or entry.get("source") not in SOURCES:
            raise ScoreError(f"key.json: item {number}: source must be one of {', '.join(SOURCES)}")
        key[number] = entry
    return key


def _is_int(value, allowed) -> bool:
    # JSON true/false are accepted as 1/0; 0.5, "1" and null are not.
    if isinstance(value, bool):
        value = int(value)
    elif not isinstance(value, int):
        return False
    return value in allowed


def validate_scores(raw, key: dict[int, dict]) -> dict[int, dict]:
    """Scores by item number, each criterion an int. Raises ScoreError listing every problem:
    an item scored twice, missing or not in the key, a missing or out-of-range value, a 0
    without a reason, a reason for an unknown criterion."""
    if not isinstance(raw, list):
        raise ScoreError("scores.json: expected a JSON list of objects, one per item")
    errors: list[str] = []
    scores: dict[int, dict] = {}
    for pos, entry in enumerate(raw):
        where = f"scores.json entry {pos}"
        if not isinstance(entry, dict):
            errors.append(f"{where}: not an object")
            continue
        item = entry.get("item")
        if isinstance(item, bool) or not isinstance(item, int):
            errors.append(f"{where}: field 'item' must be an integer item number, got {item!r}")
            continue
        where = f"item {item}"
        if item in scores:
            errors.append(f"{where}: scored more than once")
            continue
        if item not in key:
            errors.append(f"{where}: not in key.json (items are {min(key)}-{max(key)})")
            continue
        clean: dict = {"item": item}
        for c in CRITERIA:
            if c not in entry:
                errors.append(f"{where}: field '{c}' missing")
            elif not _is_int(entry[c], (0, 1)):
                errors.append(f"{where}: field '{c}' must be 0 or 1, got {entry[c]!r}")
            else:
                clean[c] = int(entry[c])
        if SMELL not in entry:
            errors.append(f"{where}: field '{SMELL}' missing")
        elif not _is_int(entry[SMELL], SMELL_VALUES):
            errors.append(f"{where}: field '{SMELL}' must be 0, 1 or 2, got {entry[SMELL]!r}")
        else:
            clean[SMELL] = int(entry[SMELL])
        reasons = entry.get("reasons", {}) or {}
        if not isinstance(reasons, dict):
            errors.append(f"{where}: field 'reasons' must be an object {{criterion: reason}}")
            reasons = {}
        for name, text in reasons.items():
            if name not in CRITERIA and name != SMELL:
                errors.append(f"{where}: reasons has unknown criterion '{name}'")
            elif not isinstance(text, str):
                errors.append(f"{where}: reasons.{name} must be a string")
        for c in CRITERIA:
            if clean.get(c) == 0 and not (isinstance(reasons.get(c), str) and reasons[c].strip()):
                errors.append(f"{where}: field '{c}' is 0 but reasons.{c} is missing (a one-line reason is required for every 0)")
        clean["reasons"] = {k: " ".join(v.split()) for k, v in reasons.items() if isinstance(v, str) and v.strip()}
        scores[item] = clean
    missing = sorted(set(key) - set(scores))
    if missing:
        errors.append(f"item(s) {', '.join(map(str, missing))}: not scored")
    if errors:
        raise ScoreError("scores.json is invalid:\n  " + "\n  ".join(errors))
    return scores


# --------------------------------------------------------------------------- summarising


def _share(values: list[int]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(scores: dict[int, dict], key: dict[int, dict]) -> dict:
    per_source: dict[str, dict] = {}
    for source in SOURCES:
        items = [i for i in sorted(scores) if key[i]["source"] == source]
        smells = [scores[i][SMELL] for i in items]
        per_source[source] = {
            "items": len(items),
            "pass_share": {c: _share([scores[i][c] for i in items]) for c in CRITERIA},
            "passes": {c: sum(scores[i][c] for i in items) for c in CRITERIA},
            "template_smell_mean": sum(smells) / len(smells) if smells else None,
            "template_smell_counts": {str(v): smells.count(v) for v in SMELL_VALUES},
        }

    corpus_items = [i for i in sorted(scores) if key[i]["source"] == "corpus"]
    agreement: dict[str, dict] = {}
    for gate, criterion in GATE_TO_REVIEWER.items():
        judged = [i for i in corpus_items if isinstance(key[i].get(gate), bool)]
        if not judged:
            continue
        both_pass = [i for i in judged if key[i][gate] and scores[i][criterion] == 1]
        gate_only = [i for i in judged if key[i][gate] and scores[i][criterion] == 0]
        reviewer_only = [i for i in judged if not key[i][gate] and scores[i][criterion] == 1]
        both_fail = [i for i in judged if not key[i][gate] and scores[i][criterion] == 0]
        agreement[criterion] = {
            "gate": gate,
            "items": len(judged),
            "agreement": (len(both_pass) + len(both_fail)) / len(judged),
            "both_pass": len(both_pass),
            "both_fail": len(both_fail),
            "gate_pass_reviewer_fail": gate_only,
            "gate_fail_reviewer_pass": reviewer_only,
        }

    reasons: dict[str, list[dict]] = {}
    for c in (*CRITERIA, SMELL):
        rows = [
            {"item": i, "id": key[i].get("id"), "reason": scores[i]["reasons"].get(c, "")}
            for i in corpus_items
            if (scores[i][c] == 0 if c != SMELL else c in scores[i]["reasons"])
        ]
        if rows:
            reasons[c] = rows

    return {
        "items": len(scores),
        "criteria": list(CRITERIA),
        "per_source": per_source,
        "corpus_vs_calibration": {
            c: (None if per_source["corpus"]["pass_share"][c] is None or per_source["staffml"]["pass_share"][c] is None
                else per_source["corpus"]["pass_share"][c] - per_source["staffml"]["pass_share"][c])
            for c in CRITERIA
        },
        "gate_agreement": agreement,
        "gate_columns_missing": [g for g in GATE_TO_REVIEWER if not any(isinstance(key[i].get(g), bool) for i in corpus_items)],
        "corpus_reasons": reasons,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _listed(items: list[int]) -> str:
    return f"{len(items)} (items {', '.join(map(str, items))})" if items else "0"


def render_markdown(summary: dict, title: str = "Review summary") -> str:
    ps = summary["per_source"]
    out = [f"# {title}", "", f"{summary['items']} items: {ps['corpus']['items']} corpus, {ps['staffml']['items']} published StaffML (calibration).", ""]
    out += ["## Share passing each criterion", "", "| criterion | corpus | staffml | corpus - staffml |", "|---|---|---|---|"]
    for c in CRITERIA:
        d = summary["corpus_vs_calibration"][c]
        diff = "-" if d is None else f"{100 * d:+.0f} pts"
        out.append(f"| {c} | {_pct(ps['corpus']['pass_share'][c])} ({ps['corpus']['passes'][c]}/{ps['corpus']['items']}) "
                   f"| {_pct(ps['staffml']['pass_share'][c])} ({ps['staffml']['passes'][c]}/{ps['staffml']['items']}) | {diff} |")
    smell = {s: ("-" if ps[s]["template_smell_mean"] is None else f"{ps[s]['template_smell_mean']:.2f}") for s in SOURCES}
    counts = {s: " / ".join(str(ps[s]["template_smell_counts"][str(v)]) for v in SMELL_VALUES) for s in SOURCES}
    out.append(f"| template_smell (mean; 0/1/2 counts) | {smell['corpus']} ({counts['corpus']}) | {smell['staffml']} ({counts['staffml']}) | |")
    out.append("")

    out += ["## Gate vs reviewer (corpus items)", ""]
    if summary["gate_agreement"]:
        out += ["| criterion | gate column | agreement | both pass | both fail | gate pass, reviewer fail | gate fail, reviewer pass |", "|---|---|---|---|---|---|---|"]
        for c, a in summary["gate_agreement"].items():
            out.append(f"| {c} | `{a['gate']}` | {_pct(a['agreement'])} ({a['items']} items) | {a['both_pass']} | {a['both_fail']} "
                       f"| {_listed(a['gate_pass_reviewer_fail'])} | {_listed(a['gate_fail_reviewer_pass'])} |")
    else:
        out.append("key.json has no gate verdicts for the corpus items: no agreement to compute.")
    if summary["gate_columns_missing"]:
        out += ["", "Gate columns absent from key.json: " + ", ".join(f"`{g}`" for g in summary["gate_columns_missing"]) + "."]
    out.append("")

    out += ["## Reviewer's reasons on corpus items", ""]
    if not summary["corpus_reasons"]:
        out.append("No corpus item failed a criterion.")
    for c, rows in summary["corpus_reasons"].items():
        label = f"{c} (reasons given)" if c == SMELL else f"{c}: {len(rows)} failed"
        out += [f"### {label}", ""]
        out += [f"- item {r['item']} (`{r['id']}`): {r['reason'] or '(no reason)'}" for r in rows]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def score(directory: Path) -> dict:
    """Validate, summarise and write DIR/summary.md + DIR/summary.json; returns the summary."""
    directory = Path(directory)
    key = load_key(load_json(directory / "key.json"))
    scores = validate_scores(load_json(directory / "scores.json"), key)
    summary = summarise(scores, key)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "summary.md").write_text(render_markdown(summary, f"Review summary: {directory.name}"), encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", type=Path, help="review folder holding key.json and scores.json")
    args = ap.parse_args(argv)
    try:
        score(args.directory)
    except ScoreError as exc:
        print(f"score.py: error: {exc}", file=sys.stderr)
        return 2
    print((args.directory / "summary.md").read_text(encoding="utf-8"), end="")
    print(f"\nwrote {args.directory / 'summary.md'} and {args.directory / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
