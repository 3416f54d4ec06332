"""Join a labeller's verdicts (``labels.json``) with the pairs' key into ``pairs.jsonl``, the
labelled set ``tests/test_distinct_pairs.py`` checks, and report how each comparator separates
same from different: the reasoning key the offline generator uses (item model | design |
claim outcomes) and the cosine of the text embedding a sampled backend is grouped by.

    .venv/bin/python benchmarks/distinct_pairs/label.py /tmp/pairs --out benchmarks/distinct_pairs
    .venv/bin/python benchmarks/distinct_pairs/label.py --report benchmarks/distinct_pairs/pairs.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

TEXT = ("title", "scenario", "question")


def join(folder: Path) -> list[dict]:
    key = json.loads((folder / "key.json").read_text())
    labels = json.loads((folder / "labels.json").read_text())
    rows = []
    for n, k in sorted(key.items(), key=lambda kv: int(kv[0])):
        verdict = labels["labels"][n]
        rows.append(
            {
                "pair": int(n),
                "kind": k["kind"],
                "label": verdict["label"],
                "reason": verdict["reason"],
                "a": k["a"],
                "b": k["b"],
            }
        )
    for p in labels.get("paraphrases", []):
        a = key[str(p["pair"])]["a"]
        b = {**a, **{f: p[f] for f in TEXT}, "solution": a["solution"]}
        rows.append(
            {
                "pair": f"{p['pair']}-reworded",
                "kind": "wording-only variant",
                "label": "same",
                "reason": "the labeller rewrote A's title, scenario and question, keeping its figures and ask",
                "a": a,
                "b": b,
            }
        )
    return rows


def reasoning(q: dict, specs=None) -> str:
    """The reasoning key the offline generator gives the question under today's definition
    (``reasoning_key``), from the item model, design and claim outcomes recorded when it was
    labelled: labels outlive settings and wording."""
    from staffml_dagster.core.item_model import item_models, reasoning_key

    mid, did, outcomes = q["signature"].split("|")[:3]
    design = next(d for d in item_models()[mid].spec.questions if d.id == did)
    claims = {k: bool(int(v)) for k, v in (o.split("=") for o in outcomes.split(",") if o)}
    return reasoning_key(mid, design, claims)


def text(q: dict) -> str:
    return " ".join(q[f] for f in ("scenario", "question", "solution"))


def report(rows: list[dict], embedder: str = "all-MiniLM-L6-v2") -> str:
    import numpy as np

    from staffml_dagster.embedding import get_embedder
    from staffml_dagster.specs import load_specs

    specs = load_specs()
    threshold = specs.quality.similarity_threshold
    same_key = [reasoning(r["a"], specs) == reasoning(r["b"], specs) for r in rows]
    vectors = get_embedder(embedder).encode([text(r[s]) for r in rows for s in ("a", "b")])
    cos = [float(np.dot(vectors[2 * i], vectors[2 * i + 1])) for i in range(len(rows))]
    lines = [
        f"{len(rows)} labelled pairs; text threshold {threshold} ({embedder})",
        "",
        "| kind | label | pairs | reasoning key agrees | text cosine (min-max) | text agrees |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["kind"], r["label"]), []).append(i)
    for (kind, label), idx in sorted(groups.items()):
        key_ok = sum(same_key[i] == (label == "same") for i in idx)
        text_ok = sum((cos[i] > threshold) == (label == "same") for i in idx)
        lo, hi = min(cos[i] for i in idx), max(cos[i] for i in idx)
        lines.append(f"| {kind} | {label} | {len(idx)} | {key_ok} | {lo:.2f}-{hi:.2f} | {text_ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, nargs="?")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--report", type=Path, help="report on a joined pairs.jsonl")
    a = ap.parse_args(argv)
    if a.report:
        rows = [json.loads(line) for line in a.report.read_text().splitlines() if line.strip()]
    else:
        rows = join(a.folder)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(report(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
