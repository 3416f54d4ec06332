"""The cells (topic, track, zone, level) and their theoretical capacity.

theoretical capacity = platforms in the track x architectures that apply to the topic on
the track x failure modes x scale points. Only (zone, level) pairs within the zone's
level affinity become cells. The generation target of a cell is bounded by its
capacity and by ``questions_per_cell`` in specs/generation.yaml until the empirical
capacity is measured.
"""

from collections.abc import Iterable

import dagster as dg
import pandas as pd

from staffml_dagster.embedding import EmbedderResource
from staffml_dagster.partitions import applicable_pairs, topic_track
from staffml_dagster.progress import ProgressLog
from staffml_dagster.quality.coverage import data_uri
from staffml_dagster.resources import GeneratorResource, SpecsResource
from staffml_dagster.specs import Specs
from staffml_dagster.stages.metadata import add_partition_metadata, table_metadata
from staffml_dagster.storage import DuckDBWarehouse

GROUP = "capacity"


def cell_rows(specs: Specs, applicable: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """Every cell of the applicable (topic, track) pairs, with its theoretical capacity and target."""
    applicable = set(applicable)
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


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    code_version="1",
)
def cells(
    context: dg.AssetExecutionContext,
    specs: SpecsResource,
    applicability_matrix: pd.DataFrame,
    zones: pd.DataFrame,
    levels: pd.DataFrame,
) -> pd.DataFrame:
    """Every applicable (topic, track, zone, level) cell within the zone's level affinity, with its theoretical capacity
    = platforms x architectures x failure modes x scale points, and the generation target.
    """
    df = cell_rows(specs.load(), applicable_pairs(applicability_matrix))
    meta = table_metadata(df, ["topic", "track", "zone", "level", "theoretical_capacity", "target"], rows=15)
    meta.update(
        {
            "theoretical_capacity_total": dg.MetadataValue.int(int(df["theoretical_capacity"].sum())),
            "target_total": dg.MetadataValue.int(int(df["target"].sum())),
            "zero_capacity_cells": dg.MetadataValue.int(int((df["theoretical_capacity"] == 0).sum())),
            "cells_per_track": dg.MetadataValue.md(
                df.groupby("track").agg(cells=("zone", "size"), capacity=("theoretical_capacity", "sum")).to_markdown()
            ),
        }
    )
    context.add_output_metadata(meta)
    return df


@dg.asset_check(
    asset=cells,
)
def cells_have_capacity(cells: pd.DataFrame) -> dg.AssetCheckResult:
    """Every cell has a positive theoretical capacity (a topic whose architectures do not fit a track would have
    none).
    """
    empty = cells[cells["theoretical_capacity"] == 0]
    pairs = sorted({f"{r.topic}|{r.track}" for r in empty.itertuples()})
    return dg.AssetCheckResult(passed=not pairs, metadata={"zero_capacity_partitions": ", ".join(pairs[:30]) or "none"})


# --------------------------------------------------------------------------- empirical capacity

CAPACITY_COLUMNS = [
    "topic",
    "track",
    "zone",
    "level",
    "observed",
    "estimate",
    "chao1",
    "chao1_low",
    "chao1_high",
    "chao2",
    "coverage",
    "s_max",
    "k",
    "rounds",
    "drawn",
    "curve",
    "stop_reason",
    "theoretical_capacity",
    "capacity",
    "embedder",
    "backend",
]


def enumerated_row(cell, space, backend_name: str) -> dict:
    """A cell whose generator space was enumerated: its capacity is counted, not estimated, and
    sampling stopped because the space is exhausted."""
    n = space.distinct
    return {
        "topic": cell.topic,
        "track": cell.track,
        "zone": cell.zone,
        "level": cell.level,
        "observed": n,
        "estimate": n,
        "chao1": float(n),
        "chao1_low": float(n),
        "chao1_high": float(n),
        "chao2": float(n),
        "coverage": 1.0,
        "s_max": float(n),
        "k": 0.0,
        "rounds": 1,
        "drawn": space.settings,
        "curve": [[space.settings, n]],
        "stop_reason": "exhausted",
        "theoretical_capacity": int(cell.theoretical_capacity),
        "capacity": int(min(n, int(cell.theoretical_capacity))),
        "embedder": "none (distinct reasonings counted exactly)",
        "backend": backend_name,
    }


def measure_partition(specs, backend, embedder, cells_part: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Measure the empirical capacity of every cell of one partition (plain function).

    A backend whose space is enumerable (the item models: finite designs over finite settings)
    is counted exactly, one question per distinct reasoning; any other (Claude) is sampled in
    rounds until novelty saturates. ``embedder`` is an embedder or a factory of one, so the
    exact count never loads a model."""
    from staffml_dagster.estimation import measure_cell_capacity
    from staffml_dagster.generation.backend import CellRequest
    from staffml_dagster.quality.criteria import distinct_text

    settings = specs.generation.capacity
    rows = []
    if hasattr(backend, "space"):
        for cell in cells_part.itertuples():
            space = backend.space(specs, CellRequest(cell.topic, cell.track, cell.zone, cell.level, 0, seed))
            rows.append(enumerated_row(cell, space, backend.name))
        return pd.DataFrame(rows, columns=CAPACITY_COLUMNS)
    if not hasattr(embedder, "encode"):  # a factory: the model loads only when sampling needs it
        embedder = embedder()
    for cell in cells_part.itertuples():

        def generate(r: int, cell=cell) -> list[dict]:
            # every round is a fresh sample: a different seed reorders the backend's stream
            return backend.generate(
                specs, CellRequest(cell.topic, cell.track, cell.zone, cell.level, settings.round_size, seed * 1000 + r)
            )

        est = measure_cell_capacity(
            generate,
            embedder.encode,
            distinct_text,
            threshold=specs.quality.similarity_threshold,
            max_rounds=settings.max_rounds,
            min_rounds=settings.min_rounds,
            coverage_target=settings.coverage_target,
            min_novelty=settings.min_novelty,
        )
        rows.append(
            {
                "topic": cell.topic,
                "track": cell.track,
                "zone": cell.zone,
                "level": cell.level,
                "observed": est.observed,
                "estimate": est.estimate,
                "chao1": est.chao1,
                "chao1_low": est.chao1_low,
                "chao1_high": est.chao1_high,
                "chao2": est.chao2,
                "coverage": est.coverage,
                "s_max": est.s_max,
                "k": est.k,
                "rounds": est.rounds,
                "drawn": est.drawn,
                "curve": [list(p) for p in est.curve],
                "stop_reason": est.stop_reason,
                "theoretical_capacity": int(cell.theoretical_capacity),
                "capacity": int(min(est.estimate, int(cell.theoretical_capacity))),
                "embedder": embedder.name,
                "backend": backend.name,
            }
        )
    return pd.DataFrame(rows, columns=CAPACITY_COLUMNS)


def capacity_plot(measured: pd.DataFrame, title: str) -> bytes:
    """Small multiples: distinct questions found vs drawn per cell, with the fitted S(n) = S_max n / (K + n)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = max(len(measured), 1)
    cols = 6
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.9 * rows), dpi=80, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, measured.itertuples()):
        ax.set_visible(True)
        curve = np.array([list(p) for p in row.curve], dtype=float)
        if len(curve):
            ax.plot(curve[:, 0], curve[:, 1], "o", ms=3)
            xs = np.linspace(0, curve[:, 0].max() * 1.5, 50)
            if row.k > 0:
                ax.plot(xs, row.s_max * xs / (row.k + xs), "-", lw=1)
        ax.axhline(row.estimate, ls="--", lw=0.8, color="grey")
        ax.set_title(f"{row.zone} {row.level}: {row.estimate}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version="1",
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def cell_capacity(
    context: dg.AssetExecutionContext,
    specs: SpecsResource,
    generator: GeneratorResource,
    embedder: EmbedderResource,
    warehouse: DuckDBWarehouse,
    cells: pd.DataFrame,
) -> pd.DataFrame:
    """Empirical capacity of every cell of the partition. The offline item models are enumerated: the capacity is the
    exact number of distinct reasonings their designs reach (stop reason `exhausted`). Another backend (Claude) is
    sampled in rounds, grouped at the similarity threshold, and the number of distinct questions estimated (Chao1 with
    its interval, Chao2, Good-Turing coverage, saturation fit). Records the curve and why sampling stopped.
    """
    from staffml_dagster.paths import reports_dir
    from staffml_dagster.storage.atomic import write_atomic

    loaded = specs.load()
    backend = generator.create_backend(warehouse)
    keys = [topic_track.get_partition_key_from_str(k).keys_by_dimension for k in context.partition_keys]
    frames, pictures = [], {}
    progress = ProgressLog(context.log.info, "cell_capacity", "partitions", len(keys))
    for key in keys:
        part = cells[(cells["topic"] == key["topic"]) & (cells["track"] == key["track"])]
        measured = measure_partition(loaded, backend, embedder.get, part, loaded.generation.seed)
        frames.append(measured)
        if len(measured) and not hasattr(backend, "space"):  # an enumerated space has no saturation curve to draw
            png = capacity_plot(measured, f"{key['topic']} | {key['track']}: distinct questions vs drawn")
            pictures[f"{key['topic']}__{key['track']}"] = png
            write_atomic(reports_dir() / "capacity" / f"{key['topic']}__{key['track']}.png", png)
        progress.advance()
    frames = [
        f for f in frames if len(f)
    ]  # inapplicable partitions measure nothing; concat of empty frames is deprecated
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CAPACITY_COLUMNS)

    def partition_meta(key: str, rows: pd.DataFrame) -> dict:
        meta = table_metadata(
            rows,
            ["topic", "track", "zone", "level", "observed", "estimate", "coverage", "stop_reason", "capacity"],
            rows=25,
        )
        meta["capacity_total"] = dg.MetadataValue.int(int(rows["capacity"].sum()) if len(rows) else 0)
        dims = topic_track.get_partition_key_from_str(key).keys_by_dimension
        png = pictures.get(f"{dims['topic']}__{dims['track']}")
        if png is not None:
            meta["capacity_plot"] = dg.MetadataValue.md(f"![capacity]({data_uri(png)})")
        return meta

    meta = {**add_partition_metadata(context, df, partition_meta), "partitions": dg.MetadataValue.int(len(keys))}
    if len(keys) > 1:
        meta["run_capacity_total"] = dg.MetadataValue.int(int(df["capacity"].sum()) if len(df) else 0)
    context.add_output_metadata(meta)
    return df
