"""Dagster Definitions: every stage's assets and checks, jobs, schedules and resources."""

from __future__ import annotations

import dagster as dg

from staffml_dagster.resources import SpecsResource
from staffml_dagster.embedding import EmbedderResource
from staffml_dagster.stages import applicability, capacity, corpus, embeddings, questions, skills, taxonomy, validation
from staffml_dagster.storage import DuckDBWarehouse, HiveParquetIOManager

STAGE_MODULES = [skills, taxonomy, applicability, capacity, questions, embeddings, validation, corpus]

all_assets = dg.load_assets_from_modules(STAGE_MODULES)
all_checks = dg.load_asset_checks_from_modules(STAGE_MODULES)

questions_job = dg.define_asset_job(
    "questions_job",
    selection=dg.AssetSelection.groups("questions", "validation"),
    partitions_def=questions.topic_track,
    description="Generate and validate the questions of one or more (topic, track) partitions.",
)

corpus_job = dg.define_asset_job(
    "corpus_job",
    selection=dg.AssetSelection.groups("corpus"),
    description="Assemble the validated corpus, run the blocking balance checks and write the coverage report.",
)

design_stages_job = dg.define_asset_job(
    "design_stages",
    selection=dg.AssetSelection.groups("design", "taxonomy", "applicability", "capacity"),
    description="Skills, zones, levels, tracks, topics, hardware, applicability and cells: everything above the questions.",
)


def resources(specs_dir: str | None = None, warehouse: str | None = None) -> dict:
    return {
        "specs": SpecsResource(directory=specs_dir),
        "io_manager": HiveParquetIOManager(base_dir=warehouse),
        "warehouse": DuckDBWarehouse(base_dir=warehouse),
        "embedder": EmbedderResource(),
    }


defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=[design_stages_job, questions_job, corpus_job],
    resources=resources(),
)
