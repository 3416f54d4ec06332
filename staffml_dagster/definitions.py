"""Dagster Definitions: every stage's assets and checks, jobs, schedules and resources."""

from __future__ import annotations

import os

import dagster as dg

from staffml_dagster.embedding import MINILM, EmbedderResource
from staffml_dagster.partitions import topic_track
from staffml_dagster.resources import ITEM_MODELS, GeneratorResource, SpecsResource
from staffml_dagster.specs import cached_specs
from staffml_dagster.stages import (
    applicability,
    capacity,
    corpus,
    embeddings,
    imported,
    questions,
    reviews,
    skills,
    taxonomy,
    validation,
)
from staffml_dagster.storage import DuckDBWarehouse, HiveParquetIOManager

STAGE_MODULES = [
    skills,
    taxonomy,
    applicability,
    capacity,
    questions,
    embeddings,
    validation,
    corpus,
    imported,
    reviews,
]

all_assets = dg.load_assets_from_modules(STAGE_MODULES)
all_checks = dg.load_asset_checks_from_modules(STAGE_MODULES)

# The UI's everyday operations, in the order the README names them: design_stages, then
# questions_job for a partition (its capacity measured in the same run, so no launch warns that
# cell_capacity is not materialized), then corpus_job; refresh_partition re-runs a partition
# whose capacity is measured. Each job holds every upstream asset of its selection or follows a
# job that materializes it (tests/test_browser.py checks it against the README).
questions_job = dg.define_asset_job(
    "questions_job",
    selection=dg.AssetSelection.groups("questions", "validation") | dg.AssetSelection.assets("cell_capacity"),
    partitions_def=questions.topic_track,
    description=(
        "Measure the capacity of, generate and validate the questions of one or more (topic, track) partitions: "
        "cell_capacity, questions, question_embeddings, validated_questions. "
        "Pick one topic and one track to fill one partition."
    ),
)

refresh_partition_job = dg.define_asset_job(
    "refresh_partition",
    selection=dg.AssetSelection.assets("questions", "question_embeddings", "validated_questions"),
    partitions_def=questions.topic_track,
    description=(
        "Regenerate, embed and validate the questions of one or more (topic, track) partitions against their "
        "measured capacity (questions_job or capacity_job measures it): "
        "questions, question_embeddings, validated_questions."
    ),
)

corpus_job = dg.define_asset_job(
    "corpus_job",
    selection=dg.AssetSelection.groups("corpus"),
    description="Assemble the validated corpus, run the blocking balance checks and write the coverage report.",
)

design_stages_job = dg.define_asset_job(
    "design_stages",
    selection=dg.AssetSelection.groups("design", "taxonomy", "applicability", "capacity")
    - dg.AssetSelection.assets("cell_capacity"),
    description=(
        "Skills, zones, levels, tracks, topics, hardware, applicability and cells: everything above the questions "
        "(no partitions: cell_capacity is measured per partition by questions_job)."
    ),
)


everything_job = dg.define_asset_job(
    "everything",
    selection=dg.AssetSelection.groups(
        "design", "taxonomy", "applicability", "capacity", "questions", "validation", "corpus"
    ),
    partitions_def=topic_track,
    description=(
        "The whole graph offline in one run: design stages, the capacity of every cell, then the questions of every "
        "partition in the range filled to it, their validation, the corpus and its coverage report "
        "(what `make run` launches)."
    ),
)


capacity_job = dg.define_asset_job(
    "capacity_job",
    selection=dg.AssetSelection.assets("cell_capacity"),
    partitions_def=topic_track,
    description=(
        "Measure the empirical capacity of every cell (all partitions in one run when launched by the schedule)."
    ),
)


def _all_partitions_request() -> dg.RunRequest:
    keys = topic_track.get_partition_keys()
    return dg.RunRequest(
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    )


@dg.schedule(
    job=capacity_job,
    cron_schedule=cached_specs().generation.capacity.schedule,
    execution_timezone="UTC",
    description=(
        "Re-estimate the capacity of every (topic, track) partition in one run; questions top up where it rose."
    ),
)
def capacity_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return _all_partitions_request()


@dg.sensor(
    name="reclaim_dead_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every minute: runs whose process died (kill -9, out of memory) are marked failed and their `anthropic` "
        "pool slots freed, so later runs do not wait for ever."
    ),
)
def reclaim_dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    from staffml_dagster.runs import reclaim_dead_runs

    reclaimed = reclaim_dead_runs(context.instance)
    for gone in reclaimed:
        context.log.warning(
            f"reclaimed run {gone.run_id}: its process is gone; was {gone.status}, {gone.slots} pool slot(s) freed"
        )
    return dg.SkipReason(
        f"reclaimed {len(reclaimed)} run(s) of dead processes" if reclaimed else "no run of a dead process"
    )


def env_or_default(name: str, default: str) -> str:
    """``dg.EnvVar(name)`` when the variable is set where the definitions load (Dagster reads its
    value when a run starts, in the run's process), else ``default``: an EnvVar whose variable is
    missing fails every run, and these variables are optional."""
    return dg.EnvVar(name) if os.environ.get(name) else default


def resources(
    specs_dir: str | None = None,
    warehouse: str | None = None,
    generator: str | None = None,
    embedder: str | None = None,
) -> dict:
    """The pipeline's resources. What is not given follows the environment: the generator
    backend ``STAFFML_GENERATOR`` (item-models by default), the embedder ``STAFFML_EMBEDDER``
    (all-MiniLM-L6-v2 by default), the warehouse folder ``STAFFML_DATA_DIR``/warehouse. The IO
    manager and the warehouse resource share the folder, so a stage reads what it wrote."""
    return {
        "specs": SpecsResource(directory=specs_dir),
        "io_manager": HiveParquetIOManager(base_dir=warehouse),
        "warehouse": DuckDBWarehouse(base_dir=warehouse),
        "generator": GeneratorResource(backend=generator or env_or_default("STAFFML_GENERATOR", ITEM_MODELS)),
        "embedder": EmbedderResource(kind=embedder or env_or_default("STAFFML_EMBEDDER", MINILM)),
    }


def build_defs(resource_defs: dict | None = None) -> dg.Definitions:
    """Every asset, check, job, schedule and sensor bound to ``resource_defs`` (default:
    ``resources()``, from the environment); tests pass their own."""
    return dg.Definitions(
        assets=all_assets,
        asset_checks=all_checks,
        jobs=[design_stages_job, questions_job, refresh_partition_job, corpus_job, everything_job, capacity_job],
        schedules=[capacity_schedule],
        sensors=[reclaim_dead_runs_sensor],
        resources=resources() if resource_defs is None else resource_defs,
        # steps run one after another in the run's own process: questions -> embeddings -> validation
        # are a chain, and one process loads the definitions and the embedding model once per run
        executor=dg.in_process_executor,
    )


defs = build_defs()
