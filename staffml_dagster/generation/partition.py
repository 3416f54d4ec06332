"""Generate one (topic, track) partition: every cell up to its target, then top up to the
partition minimum from cells that still have room. Plain Python, no Dagster."""

from __future__ import annotations

import pandas as pd

from staffml_dagster.generation.backend import QUESTION_COLUMNS, CellRequest, GeneratorBackend
from staffml_dagster.specs import Specs


def empty_questions() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in QUESTION_COLUMNS})


def cell_targets(cells: pd.DataFrame, measured: pd.DataFrame | None, previous: pd.DataFrame | None, bound: int) -> pd.DataFrame:
    """How many questions each cell of a partition should hold.

    A measured cell takes its empirical capacity; an unmeasured one the interim
    ``bound``; neither exceeds the theoretical capacity. A cell never shrinks below what
    it already holds, so re-estimation grows the corpus or leaves it; it never churns.
    """
    out = cells.copy()
    keys = ["zone", "level"]
    capacity = {} if measured is None or measured.empty else {(r.zone, r.level): int(r.capacity) for r in measured.itertuples()}
    held = {} if previous is None or previous.empty else previous.groupby(keys).size().to_dict()
    targets = []
    for r in out.itertuples():
        theoretical = int(r.theoretical_capacity)
        target = min(capacity.get((r.zone, r.level), bound), theoretical)
        targets.append(max(target, int(held.get((r.zone, r.level), 0))))
    out["target"] = targets
    return out


def generate_partition(specs: Specs, backend: GeneratorBackend, cells: pd.DataFrame, seed: int | None = None) -> pd.DataFrame:
    """Questions for the cells of one partition (rows of the ``cells`` asset).

    Each cell gets up to its ``target``; if the partition ends below
    ``generation.min_per_partition``, cells with capacity left are asked for one more
    question each, round-robin, until the minimum is met or no cell can give more.
    """
    seed = specs.generation.seed if seed is None else seed
    accepted: dict[tuple[str, str], list[dict]] = {}
    order = [(r.zone, r.level, int(r.target), int(r.theoretical_capacity)) for r in cells.itertuples()]
    exhausted: set[tuple[str, str]] = set()
    if not order:
        return empty_questions()
    topic, track = cells.iloc[0]["topic"], cells.iloc[0]["track"]

    def ask(zone: str, level: str, target: int) -> None:
        have = accepted.setdefault((zone, level), [])
        request = CellRequest(topic, track, zone, level, target - len(have), seed, frozenset(r["signature"] for r in have))
        got = backend.generate(specs, request) if request.target > 0 else []
        have.extend(got)
        if len(got) < request.target:
            exhausted.add((zone, level))

    for zone, level, target, _ in order:
        ask(zone, level, target)
    total = sum(len(v) for v in accepted.values())
    minimum = specs.generation.min_per_partition
    while total < minimum:
        open_cells = [(z, lv, cap) for z, lv, _, cap in order if (z, lv) not in exhausted and len(accepted[(z, lv)]) < cap]
        if not open_cells:
            break
        for zone, level, _cap in open_cells:
            if total >= minimum:
                break
            before = len(accepted[(zone, level)])
            ask(zone, level, before + 1)
            total += len(accepted[(zone, level)]) - before
    rows = [row for (zone, level, *_rest) in order for row in accepted.get((zone, level), [])]
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS) if rows else empty_questions()
