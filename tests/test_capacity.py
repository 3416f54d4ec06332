"""Empirical capacity: measuring cells, filling to capacity without churn, the schedule."""

import dagster as dg
import pandas as pd
import pytest

from staffml_dagster.embedding import get_embedder
from staffml_dagster.generation.offline import ItemModelGenerator
from staffml_dagster.generation.partition import cell_targets, generate_partition
from staffml_dagster.partitions import applicable_pairs
from staffml_dagster.stages.applicability import applicability_rows
from staffml_dagster.stages.capacity import capacity_plot, cell_rows, measure_partition

TOPIC, TRACK = "kv-cache-management", "cloud"


@pytest.fixture(scope="module")
def part(specs):
    m = applicability_rows(specs)
    cells = cell_rows(specs, applicable_pairs(m))
    part = cells[(cells.topic == TOPIC) & (cells.track == TRACK)]
    # the cells the partition's item model writes questions for (the others stay empty by design)
    written = {("quantify", "L3"), ("design", "L4"), ("diagnosis", "L4"), ("evaluation", "L5")}
    return part[[(z, lv) in written for z, lv in zip(part.zone, part.level)]].reset_index(drop=True)


class SampledOnly:
    """A backend whose space cannot be enumerated (as Claude's cannot): capacity is sampled."""

    name, version = "sampled", "1"

    def generate(self, specs, cell):
        return ItemModelGenerator().generate(specs, cell)


def test_item_model_capacity_is_counted_exactly(specs, part):
    """The offline generator's space is finite: a cell's capacity is the number of distinct
    reasonings its designs reach, which is exactly how many questions it can fill."""
    from staffml_dagster.generation.backend import CellRequest

    measured = measure_partition(
        specs, ItemModelGenerator(), lambda: pytest.fail("enumeration loads no embedder"), part, specs.generation.seed
    )
    assert set(measured["stop_reason"]) == {"exhausted"} and (measured["coverage"] == 1.0).all()
    for r in measured.itertuples():
        rows = ItemModelGenerator().generate(
            specs, CellRequest(r.topic, r.track, r.zone, r.level, 10**6, specs.generation.seed)
        )
        assert r.capacity == r.observed == len(rows) == len({x["signature"] for x in rows}) >= 1
        assert r.drawn >= r.observed  # settings planned to find them
    assert measured["capacity"].sum() > len(measured)  # some cell holds more than one reasoning


def test_measuring_cells_gives_estimates_curves_and_reasons(specs, part):
    measured = measure_partition(specs, SampledOnly(), get_embedder("tfidf"), part.head(3), specs.generation.seed)
    assert len(measured) == 3
    for r in measured.itertuples():
        assert 1 <= r.observed <= r.drawn
        assert r.estimate >= r.observed and r.chao1_low <= r.chao1 <= r.chao1_high
        assert r.stop_reason in {"coverage", "novelty", "max_rounds", "exhausted"}
        distinct = [p[1] for p in r.curve]
        assert distinct == sorted(distinct) and distinct[-1] == r.observed
        assert r.capacity == min(r.estimate, r.theoretical_capacity)
    png = capacity_plot(measured, "test")
    assert png.startswith(b"\x89PNG")


def test_filling_to_capacity_never_churns(specs, part):
    backend = ItemModelGenerator()
    first = generate_partition(specs, backend, cell_targets(part, None, None, 1))
    measured = part[["zone", "level"]].assign(capacity=4)
    grown = generate_partition(specs, backend, cell_targets(part, measured, first, 1))
    assert set(first["id"]) <= set(grown["id"]) and len(grown) > len(first)
    shrunk_capacity = part[["zone", "level"]].assign(capacity=1)
    kept = generate_partition(specs, backend, cell_targets(part, shrunk_capacity, grown, 1))
    assert set(grown["id"]) <= set(kept["id"])  # a lower estimate never drops accepted questions


def test_targets_respect_theoretical_capacity(part):
    measured = part[["zone", "level"]].assign(capacity=10**9)
    targets = cell_targets(part, measured, None, 2)
    assert (targets["target"] == targets["theoretical_capacity"]).all()


def test_schedule_requests_every_partition_in_one_run():
    from staffml_dagster.definitions import capacity_schedule
    from staffml_dagster.partitions import topic_track

    request = capacity_schedule(dg.build_schedule_context())
    keys = topic_track.get_partition_keys()
    assert request.tags["dagster/asset_partition_range_start"] == keys[0]
    assert request.tags["dagster/asset_partition_range_end"] == keys[-1]


def test_single_run_over_two_partitions_writes_each(pipeline, specs):
    from staffml_dagster.storage import read_partition

    defs, warehouse = pipeline.defs, pipeline.warehouse
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("design_stages").execute_in_process(instance=instance).success
    tags = {
        "dagster/asset_partition_range_start": "kv-cache-management|cloud",
        "dagster/asset_partition_range_end": "kv-cache-management|edge",
    }
    result = defs.resolve_job_def("capacity_job").execute_in_process(instance=instance, tags=tags)
    assert result.success
    for track in ("cloud", "edge"):
        df = read_partition(warehouse, "cell_capacity", {"topic": "kv-cache-management", "track": track})
        assert df is not None and len(df) > 0 and set(df["track"]) == {track}


def test_questions_top_up_after_capacity_is_measured(pipeline):
    defs, warehouse = pipeline.defs, pipeline.warehouse
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_job_def("design_stages").execute_in_process(instance=instance).success
    key = f"{TOPIC}|{TRACK}"
    before = defs.resolve_job_def("questions_job").execute_in_process(partition_key=key, instance=instance)
    assert before.success
    first = pd.read_parquet(warehouse / "questions" / f"topic={TOPIC}" / f"track={TRACK}" / "part.parquet")
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert not any(str(k) == key for k in result.get_requested_partitions(dg.AssetKey("questions")))

    assert defs.resolve_job_def("capacity_job").execute_in_process(partition_key=key, instance=instance).success
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert key in {str(k) for k in result.get_requested_partitions(dg.AssetKey("questions"))}

    after = defs.resolve_job_def("questions_job").execute_in_process(partition_key=key, instance=instance)
    assert after.success
    grown = pd.read_parquet(warehouse / "questions" / f"topic={TOPIC}" / f"track={TRACK}" / "part.parquet")
    assert set(first["id"]) <= set(grown["id"]) and len(grown) >= len(first)

    # the backfill measured the partition's capacity and filled every cell to it, which the summary reports
    from staffml_dagster.cli import summary
    from staffml_dagster.storage import connect_warehouse

    measured = pd.read_parquet(warehouse / "cell_capacity" / f"topic={TOPIC}" / f"track={TRACK}" / "part.parquet")
    assert int(measured["capacity"].sum()) == len(grown) and set(measured["stop_reason"]) == {"exhausted"}
    assert f"measured capacity: {len(grown)} distinct questions over {len(measured)} cells, 100% saturated" in summary(
        connect_warehouse(warehouse)
    )


def test_a_partition_takes_its_own_measurements_from_a_many_partition_run(specs, part):
    """One run over every partition hands the questions stage all partitions' capacities."""
    other = part.assign(topic="thermal-management", track="edge")[["topic", "track", "zone", "level"]].assign(
        capacity=0
    )
    mine = part[["topic", "track", "zone", "level"]].assign(capacity=3)
    both = pd.concat([mine, other], ignore_index=True)  # this partition first, another after it
    targets = cell_targets(part, both, None, 1)
    assert (targets["target"] == targets["theoretical_capacity"].clip(upper=3)).all()
