"""Generate one (topic, track) partition: every cell up to its target. Plain Python, no Dagster."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from staffml_dagster.generation.backend import QUESTION_COLUMNS, CellRequest, GeneratorBackend
from staffml_dagster.specs import Specs


def empty_questions() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in QUESTION_COLUMNS})


def cell_targets(
    cells: pd.DataFrame, measured: pd.DataFrame | None, previous: pd.DataFrame | None, bound: int
) -> pd.DataFrame:
    """How many questions each cell of a partition should hold.

    A measured cell takes its empirical capacity; an unmeasured one the interim
    ``bound``; neither exceeds the theoretical capacity. A cell never shrinks below what
    it already holds, so re-estimation grows the corpus or leaves it; it never churns.
    """
    out = cells.copy()
    keys = ["zone", "level"]
    if measured is not None and not measured.empty and "topic" in measured and len(out):
        # a run over many partitions hands every partition's measurements: keep this partition's
        measured = measured[(measured["topic"] == out.iloc[0]["topic"]) & (measured["track"] == out.iloc[0]["track"])]
    capacity = (
        {}
        if measured is None or measured.empty
        else {(r.zone, r.level): int(r.capacity) for r in measured.itertuples()}
    )
    held = {} if previous is None or previous.empty else previous.groupby(keys).size().to_dict()
    targets = []
    for r in out.itertuples():
        theoretical = int(r.theoretical_capacity)
        target = min(capacity.get((r.zone, r.level), bound), theoretical)
        targets.append(max(target, int(held.get((r.zone, r.level), 0))))
    out["target"] = targets
    return out


def generate_partition(
    specs: Specs, backend: GeneratorBackend, cells: pd.DataFrame, seed: int | None = None
) -> pd.DataFrame:
    """Questions for the cells of one partition (rows of the ``cells`` asset), each cell up to
    its ``target``. A cell the backend cannot fill stays short: the corpus size is what the
    design yields, not a quota."""
    seed = specs.generation.seed if seed is None else seed
    if cells.empty:
        return empty_questions()
    topic, track = cells.iloc[0]["topic"], cells.iloc[0]["track"]
    rows: list[dict] = []
    for r in cells.itertuples():
        if int(r.target) > 0:
            rows += backend.generate(specs, CellRequest(topic, track, r.zone, r.level, int(r.target), seed))
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS) if rows else empty_questions()


@dataclass
class OrderedGeneration:
    """What :func:`generate_in_order` did: rows per cell in the order generated, the cells a stop
    left unreached, and why it stopped early (None when every cell was generated)."""

    rows: dict[tuple[str, str, str, str], list[dict]]
    not_reached: list[tuple[str, str, str, str]]
    stopped: str | None


def generate_in_order(
    specs: Specs,
    backend: GeneratorBackend,
    ordered_cells: pd.DataFrame,
    seed: int | None = None,
    stop_on: tuple[type[BaseException], ...] = (),
    on_cell: Callable[[], None] | None = None,
) -> OrderedGeneration:
    """Generate the cells of ``ordered_cells`` (topic, track, zone, level, target; any partitions)
    one after another in the given order. An exception of a type in ``stop_on`` (a spent budget)
    ends generation there: the cells generated so far keep their rows and the rest are listed as
    not reached, so the order decides which cells a stopped run has filled. Any other exception
    propagates. ``on_cell`` is called after each cell (progress)."""
    seed = specs.generation.seed if seed is None else seed
    rows: dict[tuple[str, str, str, str], list[dict]] = {}
    keys = [(r.topic, r.track, r.zone, r.level, int(r.target)) for r in ordered_cells.itertuples()]
    for i, (topic, track, zone, level, target) in enumerate(keys):
        if target <= 0:
            rows[(topic, track, zone, level)] = []
        else:
            try:
                rows[(topic, track, zone, level)] = backend.generate(
                    specs, CellRequest(topic, track, zone, level, target, seed)
                )
            except stop_on as exc:
                return OrderedGeneration(rows, [k[:4] for k in keys[i:]], str(exc))
        if on_cell is not None:
            on_cell()
    return OrderedGeneration(rows, [], None)
