"""Render an item model's designs for reading: `python benchmarks/render_item_model.py <id> [--show]`.

Prints, per design and track, how many settings render and how many distinct reasonings they
give; with --show, one rendered question per design and track (a seeded random setting)."""

import argparse
import random
import sys
from pathlib import Path

# the checkout this script belongs to, ahead of an installed copy of the package: run from a git
# worktree it renders that worktree's item models and specs, not those of the checkout .venv points at
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from staffml_dagster.core.item_model import assigned_topic, draft, item_models  # noqa: E402
from staffml_dagster.specs import load_specs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", help="item model id (default: all)")
    ap.add_argument("--show", action="store_true", help="print one rendered question per design and track")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    specs = load_specs()
    models = item_models()
    if args.model and args.model not in models:
        sys.exit(f"no item model {args.model!r} in {next(iter(models.values())).path.parent}")
    for m in models.values():
        if args.model and m.id != args.model:
            continue
        m.check_against(specs)
        for d in m.spec.questions:
            for track in d.tracks or m.spec.tracks:
                settings = m.settings(specs, track)
                drafts = [x for x in (draft(m, specs, d, s, assigned_topic(m, d, s)) for s in settings) if x]
                print(
                    f"== {m.id}/{d.id} {d.zone} {d.level} {track}: {len(drafts)}/{len(settings)} settings, "
                    f"{len({x.reasoning for x in drafts})} reasonings"
                )
                if drafts and args.show:
                    x = random.Random(args.seed).choice(drafts)
                    print(
                        f"TITLE: {x.title}\nSCENARIO: {x.scenario}\nQUESTION: {x.question}\n"
                        f"SOLUTION: {x.realistic_solution}\n{x.common_mistake}\n{x.napkin_math}\n"
                    )


if __name__ == "__main__":
    main()
