"""Draw candidate question pairs for hand labelling: is B the same question as A?

Two questions are the same if a candidate would solve them the same way; the same chain of
formulas with other numbers or another platform is not a new question unless the numbers
change the conclusion. The labeller sees only the rendered pairs (``pairs.md``); the kinds and
signatures are in ``key.json``. ``label.py`` joins the labels with the key into the committed
``pairs.jsonl`` that ``tests/test_distinct_pairs.py`` checks.

Kinds drawn (``--per-kind`` each): the same design at another setting with the same claim
outcomes (numbers-only or platform-only variants), the same design whose claims come out
otherwise (the conclusion flips), two designs of one item model, and two item models of one
topic. Wording-only variants are written by the labeller (a paraphrase of A is the same
question by construction).

    .venv/bin/python benchmarks/distinct_pairs/make_pairs.py --seed 11 --out /tmp/pairs
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from staffml_dagster.core.item_model import assigned_topic, draft, item_models, plan  # noqa: E402
from staffml_dagster.specs import load_specs  # noqa: E402


def rendered(x) -> dict:
    return {
        "title": x.title,
        "scenario": x.scenario,
        "question": x.question,
        "solution": x.realistic_solution,
        "signature": x.reasoning,
        "setting": x.setting.key,
        "track": x.setting.track,
    }


def drafts_by_design(specs, rng: random.Random, per_design: int = 6) -> dict[tuple[str, str], list]:
    out = defaultdict(list)
    for mid, model in sorted(item_models().items()):
        for d in model.spec.questions:
            for track in d.tracks or model.spec.tracks:
                settings = model.settings(specs, track)
                rng.shuffle(settings)
                for s in settings[:40]:
                    p = plan(model, specs, d, s)
                    if p is not None:
                        out[(mid, d.id)].append(draft(model, specs, d, s, assigned_topic(model, d, s), p))
                    if len(out[(mid, d.id)]) >= per_design:
                        break
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--per-kind", type=int, default=10)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    specs = load_specs()
    by_design = drafts_by_design(specs, rng)
    kinds = defaultdict(list)
    designs = list(by_design)
    rng.shuffle(designs)
    for key in designs:
        xs = by_design[key]
        groups = defaultdict(list)
        for x in xs:
            groups[x.reasoning].append(x)
        same = [g for g in groups.values() if len(g) >= 2 and g[0].setting.key != g[1].setting.key]
        if same:
            kinds["same design, same outcomes, other setting"].append((same[0][0], same[0][1]))
        if len(groups) >= 2:
            g1, g2 = list(groups.values())[:2]
            kinds["same design, other claim outcome"].append((g1[0], g2[0]))
    by_model = defaultdict(list)
    for (mid, did), xs in by_design.items():
        by_model[mid].append(xs[0])
    for mid, xs in by_model.items():
        if len(xs) >= 2:
            kinds["two designs of one item model"].append(tuple(rng.sample(xs, 2)))
    by_topic = defaultdict(list)
    for mid, xs in by_model.items():
        by_topic[xs[0].topic].append(xs[0])
    for topic, xs in by_topic.items():
        if len(xs) >= 2:
            kinds["two item models of one topic"].append(tuple(rng.sample(xs, 2)))
    pairs = []
    for kind, items in kinds.items():
        rng.shuffle(items)
        for x, y in items[: a.per_kind]:
            pairs.append((kind, x, y))
    rng.shuffle(pairs)
    a.out.mkdir(parents=True, exist_ok=True)
    md, key = ["# Question pairs\n"], {}
    for i, (kind, x, y) in enumerate(pairs, 1):
        md.append(f"## Pair {i}\n")
        for name, q in (("A", x), ("B", y)):
            md.append(
                f"### {name}: {q.title}\n\n{q.scenario}\n\n**Question.** {q.question}\n\n**Solution.** "
                f"{q.realistic_solution}\n"
            )
        key[str(i)] = {"kind": kind, "a": rendered(x), "b": rendered(y)}
    (a.out / "pairs.md").write_text("\n".join(md))
    (a.out / "key.json").write_text(json.dumps(key, indent=1))
    print(f"{len(pairs)} pairs -> {a.out}: " + ", ".join(f"{k}: {min(len(v), a.per_kind)}" for k, v in kinds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
