"""A backfill of many partitions is one run: it must write exactly what one run per
partition writes, partition by partition."""

import re

import dagster as dg
import pytest

from staffml_dagster.partitions import topic_track
from staffml_dagster.stages.applicability import applicability_rows
from staffml_dagster.storage import read_partition

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@pytest.fixture(scope="module")
def window(specs):
    """Four consecutive partition keys, some that hold questions (applicable, with a native item
    model) and at least one that does not."""
    from staffml_dagster.core.item_model import models_for_topic

    applicable = {
        (r.topic, r.track): bool(r.applicable) and bool(models_for_topic(r.topic, r.track))
        for r in applicability_rows(specs).itertuples()
    }
    keys = topic_track.get_partition_keys()
    for i in range(len(keys) - 3):
        dims = [k.keys_by_dimension for k in keys[i : i + 4]]
        flags = [applicable[(d["topic"], d["track"])] for d in dims]
        one_topic = len({d["topic"] for d in dims}) == 1  # a range tag pair spans one topic's four tracks
        if one_topic and 1 <= flags.count(False) and flags.count(True) >= 2:
            return keys[i : i + 4], flags
    pytest.fail("no window of four partitions mixes applicable and inapplicable ones")


def _materialize(defs, instance, partition_key=None, tags=None):
    assert defs.resolve_job_def("design_stages").execute_in_process(instance=instance, run_config=QUIET).success
    result = defs.resolve_job_def("questions_job").execute_in_process(
        instance=instance, partition_key=partition_key, tags=tags, run_config=QUIET
    )
    assert result.success
    return result


def test_one_run_over_a_range_writes_what_single_runs_write(window, pipeline, tmp_path):
    from staffml_dagster.definitions import build_defs, resources

    keys, flags = window
    warehouse = pipeline.warehouse
    instance = dg.DagsterInstance.ephemeral()
    ranged_run = _materialize(
        pipeline.defs,
        instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    assert len(instance.get_run_records()) == 2  # the design stages, then all four partitions at once
    checks = [c for c in ranged_run.get_asset_check_evaluations() if c.check_name == "validated_questions_expectations"]
    assert len(checks) == 1 and checks[0].passed
    materialized = instance.get_materialized_partitions(dg.AssetKey("validated_questions"))
    assert set(materialized) == set(keys)

    ranged = {}
    for key, applicable in zip(keys, flags):
        dims = dict(key.keys_by_dimension)
        q = read_partition(warehouse, "questions", dims)
        e = read_partition(warehouse, "question_embeddings", dims)
        v = read_partition(warehouse, "validated_questions", dims)
        assert (len(q) > 0) == applicable, key
        assert (q["topic"] == dims["topic"]).all() and (q["track"] == dims["track"]).all()
        assert list(e["id"]) == list(q["id"]) and list(v["id"]) == list(q["id"])
        ranged[key] = sorted(q["id"])
        _assert_own_metadata(instance, warehouse, key, dims, q, e, v)

    # the same partition materialized on its own, in a fresh warehouse, holds the same questions
    single = build_defs(resources(warehouse=str(tmp_path / "single"), generator="item-models", embedder="tfidf"))
    single_key = next(k for k, a in zip(keys, flags) if a)
    _materialize(single, dg.DagsterInstance.ephemeral(), partition_key=single_key)
    alone = read_partition(tmp_path / "single", "questions", dict(single_key.keys_by_dimension))
    assert sorted(alone["id"]) == ranged[single_key]

    # the per-partition check reads the run's partitions only: all four in the ranged run, one
    # when that partition runs again in the warehouse that holds the four
    assert checks[0].metadata["rows_checked"].value == sum(len(ids) for ids in ranged.values())
    again = _materialize(pipeline.defs, instance, partition_key=single_key)
    check = next(c for c in again.get_asset_check_evaluations() if c.check_name == "validated_questions_expectations")
    assert (
        check.passed
        and check.metadata["rows_checked"].value == len(ranged[single_key]) < checks[0].metadata["rows_checked"].value
    )


def _latest_metadata(instance, asset: str, key) -> dict:
    (record,) = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
    ).records
    return record.asset_materialization.metadata


def _assert_own_metadata(instance, warehouse, key, dims, questions, embeddings, validated):
    """Each partition of a run over many shows its own figures, not the run's (issue 17: a 44-row
    partition showed the run's 11,066 rows and another track's samples)."""
    meta = _latest_metadata(instance, "questions", key)
    assert meta["dagster/row_count"].value == len(questions), key
    assert meta["partitions"].value == 4 and meta["run_row_count"].value > len(questions)
    if len(questions):
        tracks = re.findall(
            r"^\*[\w-]+ · L[\w+]+ · ([\w-]+)\*$", meta["samples"].value, flags=re.M
        )  # each sample's "*zone · level · track*"
        assert len(tracks) == min(5, len(questions)) and set(tracks) == {dims["track"]}, (key, tracks)
        assert meta["zone_x_level"].value.count("\n") >= 2
    else:
        assert "samples" not in meta
    assert _latest_metadata(instance, "question_embeddings", key)["dagster/row_count"].value == len(embeddings)
    verdicts = _latest_metadata(instance, "validated_questions", key)
    assert verdicts["dagster/row_count"].value == len(validated)
    if len(validated):
        assert verdicts["passed"].value == int(validated["passed"].sum())
    capacity = read_partition(warehouse, "cell_capacity", dims)
    assert _latest_metadata(instance, "cell_capacity", key)["dagster/row_count"].value == (
        0 if capacity is None else len(capacity)
    )


def test_backfills_of_the_partitioned_stages_are_single_runs():
    from staffml_dagster.definitions import defs

    for name in ("questions", "question_embeddings", "validated_questions", "cell_capacity"):
        policy = defs.resolve_assets_def(name).backfill_policy
        assert policy is not None and policy.max_partitions_per_run is None, name
