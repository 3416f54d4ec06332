"""Unblind a review: the reviewer's scores against the key, per source and against the gate.

Implements step 4 of ../shared/docs/REVIEW_RUBRIC.md. Reads ``DIR/scores.json`` (the
reviewer's, one object per item) and ``DIR/key.json`` (sample.py's), validates the scores,
then prints and writes ``DIR/summary.md`` and ``DIR/summary.json``:

- per source (corpus, staffml and, when the sample has them, rejected): items, the share
  passing each criterion, mean template_smell;
- every item with gate verdicts (corpus and rejected): agreement between the gate's verdict
  and the reviewer's for every criterion the gate has a counterpart for (GATE_TO_REVIEWER
  below, whichever columns key.json has), as a share and as a 2x2 count (gate pass/fail x
  reviewer 1/0), with the items where they disagree. Corpus items all passed the gate, so
  without rejected items the agreement is only the reviewer's pass share;
- corpus and rejected items: the reviewer's reasons for every 0, per criterion, and for
  rejected items the gate's failures next to the reviewer's zeros.

    .venv/bin/python benchmarks/reviews/score.py benchmarks/reviews/2025-01-01-seed7

Only the standard library.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script: this checkout's package, not another install
    sys.path.insert(0, str(REPO_ROOT))

# Gate verdict column (key.json, corpus and rejected items) -> reviewer criterion it claims to
# measure, and the criteria in the rubric's order: one definition, in the package.
from staffml_dagster.quality.agreement import GATE_TO_RUBRIC as GATE_TO_REVIEWER  # noqa: E402
from staffml_dagster.quality.agreement import RUBRIC_CRITERIA as CRITERIA  # noqa: E402

SMELL = "template_smell"
SMELL_VALUES = (0, 1, 2)
SOURCES = ("corpus", "staffml", "rejected")
GATED = ("corpus", "rejected")  # sources whose key entries carry the gate's verdicts


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
                errors.append(
                    f"{where}: field '{c}' is 0 but reasons.{c} is missing (a one-line reason is required for every 0)"
                )
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
        if source == "rejected" and not items:
            continue  # a third source only when the sample has rejected items
        smells = [scores[i][SMELL] for i in items]
        per_source[source] = {
            "items": len(items),
            "pass_share": {c: _share([scores[i][c] for i in items]) for c in CRITERIA},
            "passes": {c: sum(scores[i][c] for i in items) for c in CRITERIA},
            "template_smell_mean": sum(smells) / len(smells) if smells else None,
            "template_smell_counts": {str(v): smells.count(v) for v in SMELL_VALUES},
        }

    corpus_items = [i for i in sorted(scores) if key[i]["source"] == "corpus"]
    rejected_items = [i for i in sorted(scores) if key[i]["source"] == "rejected"]
    gated_items = [i for i in sorted(scores) if key[i]["source"] in GATED]
    agreement: dict[str, dict] = {}
    for gate, criterion in GATE_TO_REVIEWER.items():
        judged = [i for i in gated_items if isinstance(key[i].get(gate), bool)]
        if not judged:
            continue
        both_pass = [i for i in judged if key[i][gate] and scores[i][criterion] == 1]
        gate_only = [i for i in judged if key[i][gate] and scores[i][criterion] == 0]
        reviewer_only = [i for i in judged if not key[i][gate] and scores[i][criterion] == 1]
        both_fail = [i for i in judged if not key[i][gate] and scores[i][criterion] == 0]
        agreement[criterion] = {
            "gate": gate,
            "items": len(judged),
            "items_by_source": {s: sum(key[i]["source"] == s for i in judged) for s in GATED},
            "agreement": (len(both_pass) + len(both_fail)) / len(judged),
            "both_pass": len(both_pass),
            "both_fail": len(both_fail),
            # rows: the gate's verdict; columns: the reviewer's score
            "counts": {
                "gate_pass": {"reviewer_1": len(both_pass), "reviewer_0": len(gate_only)},
                "gate_fail": {"reviewer_1": len(reviewer_only), "reviewer_0": len(both_fail)},
            },
            "gate_pass_reviewer_fail": gate_only,
            "gate_fail_reviewer_pass": reviewer_only,
            # every disagreeing item, with its source, for the reader
            "disagreements": [
                {
                    "item": i,
                    "id": key[i].get("id"),
                    "source": key[i]["source"],
                    "gate": key[i][gate],
                    "reviewer": scores[i][criterion],
                }
                for i in sorted(gate_only + reviewer_only)
            ],
        }

    return {
        "items": len(scores),
        "criteria": list(CRITERIA),
        "per_source": per_source,
        "corpus_vs_calibration": {
            c: (
                None
                if per_source["corpus"]["pass_share"][c] is None or per_source["staffml"]["pass_share"][c] is None
                else per_source["corpus"]["pass_share"][c] - per_source["staffml"]["pass_share"][c]
            )
            for c in CRITERIA
        },
        "gate_agreement": agreement,
        "gate_columns_missing": [
            g for g in GATE_TO_REVIEWER if not any(isinstance(key[i].get(g), bool) for i in gated_items)
        ],
        "corpus_reasons": _reasons(scores, key, corpus_items),
        "rejected_reasons": _reasons(scores, key, rejected_items),
        "rejected_items": [
            {
                "item": i,
                "id": key[i].get("id"),
                "gate_failures": _failures(key[i].get("failures")),
                "reviewer_zeros": [c for c in CRITERIA if scores[i][c] == 0],
            }
            for i in rejected_items
        ],
    }


def _reasons(scores: dict[int, dict], key: dict[int, dict], items: list[int]) -> dict[str, list[dict]]:
    """Per criterion (and template_smell when a reason was given): the reviewer's reason for
    every 0 on ``items``."""
    reasons: dict[str, list[dict]] = {}
    for c in (*CRITERIA, SMELL):
        rows = [
            {"item": i, "id": key[i].get("id"), "reason": scores[i]["reasons"].get(c, "")}
            for i in items
            if (scores[i][c] == 0 if c != SMELL else c in scores[i]["reasons"])
        ]
        if rows:
            reasons[c] = rows
    return reasons


def _failures(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if isinstance(value, str) and value.strip() else []


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _disagreeing(items: list[int], sources: dict[int, str]) -> str:
    """A disagreement cell: the count, then the items, each with its source."""
    if not items:
        return "0"
    return f"{len(items)} (" + ", ".join(f"#{i} {sources.get(i, '?')}" for i in items) + ")"


def render_markdown(summary: dict, title: str = "Review summary") -> str:
    ps = summary["per_source"]
    shown = [s for s in SOURCES if s in ps]
    has_rejected = "rejected" in ps
    rejected_note = f", {ps['rejected']['items']} rejected by the gate" if has_rejected else ""
    out = [
        f"# {title}",
        "",
        f"{summary['items']} items: {ps['corpus']['items']} corpus, {ps['staffml']['items']} published StaffML "
        f"(calibration){rejected_note}.",
        "",
    ]
    header = "| criterion | corpus | staffml | corpus - staffml |" + (" rejected |" if has_rejected else "")
    out += ["## Share passing each criterion", "", header, "|---|---|---|---|" + ("---|" if has_rejected else "")]
    for c in CRITERIA:
        d = summary["corpus_vs_calibration"][c]
        diff = "-" if d is None else f"{100 * d:+.0f} pts"
        cells = {s: f"{_pct(ps[s]['pass_share'][c])} ({ps[s]['passes'][c]}/{ps[s]['items']})" for s in shown}
        row = f"| {c} | {cells['corpus']} | {cells['staffml']} | {diff} |"
        out.append(row + (f" {cells['rejected']} |" if has_rejected else ""))
    smell = {s: ("-" if ps[s]["template_smell_mean"] is None else f"{ps[s]['template_smell_mean']:.2f}") for s in shown}
    counts = {s: " / ".join(str(ps[s]["template_smell_counts"][str(v)]) for v in SMELL_VALUES) for s in shown}
    row = (
        f"| template_smell (mean; 0/1/2 counts) | {smell['corpus']} ({counts['corpus']}) "
        f"| {smell['staffml']} ({counts['staffml']}) | |"
    )
    out.append(row + (f" {smell['rejected']} ({counts['rejected']}) |" if has_rejected else ""))
    out.append("")

    n_gated = {s: ps[s]["items"] for s in GATED if s in ps}
    scope = " + ".join(f"{n} {s}" for s, n in n_gated.items())
    out += [f"## Gate vs reviewer (items with gate verdicts: {scope})", ""]
    if not has_rejected:
        out += [
            "The sample has no rejected items and every corpus item passed the gate, so the agreement mostly restates "
            "the reviewer's pass share: it cannot show whether the gate rejects what the reviewer rejects. Draw with "
            "`sample.py --rejected K` for that.",
            "",
        ]
    if summary["gate_agreement"]:
        out += [
            "Counts: gate verdict (pass/fail) x reviewer score (1/0); the two disagreement cells name the items "
            "(#number source).",
            "",
            "| criterion | gate column | agreement | gate pass, reviewer 1 | gate pass, reviewer 0 | gate fail, "
            "reviewer 1 | gate fail, reviewer 0 |",
            "|---|---|---|---|---|---|---|",
        ]
        for c, a in summary["gate_agreement"].items():
            n = a["counts"]
            sources = {d["item"]: d["source"] for d in a.get("disagreements", [])}
            out.append(
                f"| {c} | `{a['gate']}` | {_pct(a['agreement'])} ({a['items']} items) | {n['gate_pass']['reviewer_1']} "
                f"| {_disagreeing(a['gate_pass_reviewer_fail'], sources)} | "
                f"{_disagreeing(a['gate_fail_reviewer_pass'], sources)} | {n['gate_fail']['reviewer_0']} |"
            )
    else:
        out.append("key.json has no gate verdicts for the corpus or rejected items: no agreement to compute.")
    if summary["gate_columns_missing"]:
        out += [
            "",
            "Gate columns absent from key.json: " + ", ".join(f"`{g}`" for g in summary["gate_columns_missing"]) + ".",
        ]
    out.append("")

    out += [
        "## Reviewer's reasons on corpus and rejected items"
        if has_rejected
        else "## Reviewer's reasons on corpus items",
        "",
    ]
    merged: dict[str, list[tuple[str, dict]]] = {}
    for source, name in (("corpus", "corpus_reasons"), ("rejected", "rejected_reasons")):
        for c, rows in summary.get(name, {}).items():
            merged.setdefault(c, []).extend((source, r) for r in rows)
    if not merged:
        out.append(
            "No corpus or rejected item failed a criterion." if has_rejected else "No corpus item failed a criterion."
        )
    for c in (*CRITERIA, SMELL):
        if c not in merged:
            continue
        rows = merged[c]
        by = {s: sum(src == s for src, _ in rows) for s in GATED}
        split = f" ({by['corpus']} corpus, {by['rejected']} rejected)" if has_rejected else ""
        label = f"{c} (reasons given)" if c == SMELL else f"{c}: {len(rows)} failed{split}"
        out += [f"### {label}", ""]
        out += [f"- item {r['item']} ({src}, `{r['id']}`): {r['reason'] or '(no reason)'}" for src, r in rows]
        out.append("")

    if summary.get("rejected_items"):
        out += ["## Rejected items: the gate's failures vs the reviewer", ""]
        for r in summary["rejected_items"]:
            zeros = ", ".join(r["reviewer_zeros"]) or "none (reviewer passed every criterion)"
            out.append(f"- item {r['item']} (`{r['id']}`): reviewer 0 on {zeros}")
            out += [f"  - gate: {f}" for f in r["gate_failures"]] or ["  - gate: (no failures recorded)"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def score(directory: Path) -> dict:
    """Validate, summarise and write DIR/summary.md + DIR/summary.json; returns the summary."""
    directory = Path(directory)
    key = load_key(load_json(directory / "key.json"))
    scores = validate_scores(load_json(directory / "scores.json"), key)
    summary = summarise(scores, key)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / "summary.md").write_text(
        render_markdown(summary, f"Review summary: {directory.name}"), encoding="utf-8"
    )
    return summary


def redact_calibration(directory: Path) -> int:
    """Replace the published calibration items in items.md by a pointer once they are scored:
    their text is CC BY 4.0 material kept in ../shared/reference, not copied into this repository.
    Returns the number of items redacted."""
    items = directory / "items.md"
    key = json.loads((directory / "key.json").read_text(encoding="utf-8"))
    if not items.exists():
        return 0
    blocks = re.split(r"(?m)^(?=## Item \d+\s*$)", items.read_text(encoding="utf-8"))
    out, redacted = [], 0
    for block in blocks:
        m = re.match(r"## Item (\d+)", block)
        entry = key.get(m.group(1)) if m else None
        if entry and entry.get("source") == "staffml" and "not reproduced" not in block:
            block = (
                f"## Item {m.group(1)}\n\n(published StaffML question `{entry.get('id')}`, scored blind with the "
                "others; its text is not reproduced here: see ../shared/reference/staffml_questions_sample.jsonl)\n\n"
            )
            redacted += 1
        out.append(block)
    items.write_text("".join(out), encoding="utf-8")
    return redacted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", type=Path, help="review folder holding key.json and scores.json")
    args = ap.parse_args(argv)
    try:
        score(args.directory)
        redact_calibration(args.directory)
    except ScoreError as exc:
        print(f"score.py: error: {exc}", file=sys.stderr)
        return 2
    print((args.directory / "summary.md").read_text(encoding="utf-8"), end="")
    print(f"\nwrote {args.directory / 'summary.md'} and {args.directory / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
