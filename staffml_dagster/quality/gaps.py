"""Open gaps: the cells below their measured capacity, ranked so the most important are filled first.

The method fills mastery and optimization zones and underfilled critical topics first. The
order is data (specs/generation.yaml ``gap_priority.zones``, topics.yaml ``critical``):

1. gaps in a priority zone of a critical topic, then in a priority zone of any other topic
   (priority zones in their listed order),
2. then the other gaps of critical topics,
3. then every other gap;

within each group the least filled topic comes first, then the cell missing the most
questions, then topic, track, zone and level for a stable order. The same order ranks the
coverage report's gap table and decides in which order a budgeted backend generates cells.
"""

from __future__ import annotations

import pandas as pd

from staffml_dagster.quality.coverage import LEVEL_ORDER

KEYS = ["topic", "track", "zone", "level"]
GAP_COLUMNS = ["rank", *KEYS, "target", "filled", "missing", "critical", "topic_fill", "priority", "why"]
PRIORITY_NAMES = {0: "priority zone, critical topic", 1: "priority zone", 2: "critical topic", 3: "other"}


def _ordered(table: pd.DataFrame, critical: set[str], priority_zones: list[str]) -> pd.DataFrame:
    """``table`` (KEYS, target, filled) with the ranking columns, sorted most important first."""
    df = table[KEYS + ["target", "filled"]].copy()
    df["target"] = df["target"].astype(int)
    df["filled"] = df["filled"].astype(int)
    df["missing"] = (df["target"] - df["filled"]).clip(lower=0)
    per_topic = df.groupby("topic")[["filled", "target"]].sum()
    fill = (
        per_topic["filled"].clip(upper=per_topic["target"]) / per_topic["target"].where(per_topic["target"] > 0)
    ).fillna(1.0)
    df["topic_fill"] = df["topic"].map(fill).astype(float)
    df["critical"] = df["topic"].isin(critical)
    zone_rank = {z: i for i, z in enumerate(priority_zones)}
    in_zone = df["zone"].isin(zone_rank)
    df["priority"] = [0 if z and c else 1 if z else 2 if c else 3 for z, c in zip(in_zone, df["critical"])]
    df["_zone_rank"] = df["zone"].map(zone_rank).fillna(len(zone_rank)).astype(int)
    df["_level"] = df["level"].map({lv: i for i, lv in enumerate(LEVEL_ORDER)}).fillna(len(LEVEL_ORDER)).astype(int)
    df = df.sort_values(
        ["priority", "_zone_rank", "topic_fill", "missing", "topic", "track", "zone", "_level"],
        ascending=[True, True, True, False, True, True, True, True],
        kind="mergesort",
    )
    df["why"] = [
        ", ".join(
            p
            for p in (
                f"{r.zone} zone" if r.priority in (0, 1) else "",
                f"critical topic {r.topic_fill:.0%} filled" if r.critical else "",
            )
            if p
        )
        or "open gap"
        for r in df.itertuples()
    ]
    return df.drop(columns=["_zone_rank", "_level"]).reset_index(drop=True)


def rank_gaps(cells: pd.DataFrame, critical: set[str], priority_zones: list[str]) -> pd.DataFrame:
    """The open gaps of ``cells`` (KEYS, ``target`` = the measured capacity, ``filled`` = the
    validated questions it holds), most important first, with their rank (1 = fill first)."""
    if cells.empty:
        return pd.DataFrame(columns=GAP_COLUMNS)
    ordered = _ordered(cells, critical, priority_zones)
    gaps = ordered[ordered["missing"] > 0].reset_index(drop=True)
    gaps.insert(0, "rank", range(1, len(gaps) + 1))
    return gaps[GAP_COLUMNS]


def generation_order(cells: pd.DataFrame, critical: set[str], priority_zones: list[str]) -> pd.DataFrame:
    """Every cell of ``cells`` (KEYS, ``target``, ``filled`` = what it already holds) in the order
    a budgeted backend should generate them: the open gaps ranked as in :func:`rank_gaps`, then
    the cells already at their target (served from the response cache, they cost nothing)."""
    if cells.empty:
        return cells.copy()
    ordered = _ordered(cells, critical, priority_zones)
    ordered = pd.concat([ordered[ordered["missing"] > 0], ordered[ordered["missing"] == 0]], ignore_index=True)
    extra = [c for c in cells.columns if c not in ordered.columns]
    return ordered.merge(cells[KEYS + extra], on=KEYS, how="left") if extra else ordered


def gap_priority(specs) -> tuple[set[str], list[str]]:
    """The critical topics and the priority zones the specs declare."""
    return {t.id for t in specs.topics.topics if t.critical}, list(specs.generation.gap_priority.zones)
