"""Stage 6: the cells (topic, track, zone, level) and their theoretical capacity.

theoretical capacity = platforms in the track x architectures that apply to the topic on
the track x failure modes x scale points. Only (zone, level) pairs within the zone's
level affinity become cells. The generation target of a cell is bounded by its
capacity and by ``questions_per_cell`` in specs/generation.yaml until the empirical
capacity is measured.
"""

import dagster as dg
import pandas as pd

from staffml_dagster.resources import SpecsResource
from staffml_dagster.specs import Specs
from staffml_dagster.stages.metadata import table_metadata

GROUP = "capacity"

def cell_rows(specs: Specs, applicable: set[tuple[str, str]]) -> pd.DataFrame:
    rows = []
    bound = specs.generation.questions_per_cell
    for topic in specs.topics.topics:
        for track in specs.tracks.tracks:
            if (topic.id, track.id) not in applicable:
                continue
            platforms = [p.id for p in specs.platforms_for(track.id)]
            architectures = [w.id for w in specs.workloads_for(topic.id, track.id)]
            scale_points = [f"{axis}={value:g}" for axis, value in specs.scale_points_for(topic.id, track.id)]
            capacity = len(platforms) * len(architectures) * len(topic.failure_modes) * len(scale_points)
            for zone in specs.zones:
                for level in zone.levels:
                    rows.append(
                        {
                            "topic": topic.id,
                            "track": track.id,
                            "zone": zone.id,
                            "level": level,
                            "competency_area": topic.area,
                            "platforms": platforms,
                            "architectures": architectures,
                            "failure_modes": list(topic.failure_modes),
                            "scale_points": scale_points,
                            "theoretical_capacity": capacity,
                            "target": min(capacity, bound),
                        }
                    )
    return pd.DataFrame(rows)

@dg.asset(group_name=GROUP, kinds={"pandas"}, code_version="1",
          description="Every applicable (topic, track, zone, level) cell within the zone's level affinity, with its theoretical capacity = platforms x architectures x failure modes x scale points, and the generation target.")
def cells(context: dg.AssetExecutionContext, specs: SpecsResource, applicability_matrix: pd.DataFrame, zones: pd.DataFrame, levels: pd.DataFrame) -> pd.DataFrame:
    applicable = {(r.topic, r.track) for r in applicability_matrix.itertuples() if r.applicable}
    df = cell_rows(specs.load(), applicable)
    meta = table_metadata(df, ["topic", "track", "zone", "level", "theoretical_capacity", "target"], rows=15)
    meta.update(
        {
            "theoretical_capacity_total": dg.MetadataValue.int(int(df["theoretical_capacity"].sum())),
            "target_total": dg.MetadataValue.int(int(df["target"].sum())),
            "zero_capacity_cells": dg.MetadataValue.int(int((df["theoretical_capacity"] == 0).sum())),
            "cells_per_track": dg.MetadataValue.md(df.groupby("track").agg(cells=("zone", "size"), capacity=("theoretical_capacity", "sum")).to_markdown()),
        }
    )
    context.add_output_metadata(meta)
    return df

@dg.asset_check(asset=cells, description="Every cell has a positive theoretical capacity (a topic whose architectures do not fit a track would have none).")
def cells_have_capacity(cells: pd.DataFrame) -> dg.AssetCheckResult:
    empty = cells[cells["theoretical_capacity"] == 0]
    pairs = sorted({f"{r.topic}|{r.track}" for r in empty.itertuples()})
    return dg.AssetCheckResult(passed=not pairs, metadata={"zero_capacity_partitions": ", ".join(pairs[:30]) or "none"})
