"""Imported StaffML questions, judged like generated ones: the criteria, dedup against the
generated questions, and coverage of our cells. Domain logic: staffml_dagster.interchange."""

import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from staffml_dagster.embedding import EmbedderResource, vectors_by_id
from staffml_dagster.interchange.importer import ImportResult, import_corpus
from staffml_dagster.interchange.review import GENERATED_COLUMNS, ImportCoverage, import_coverage, review_imported
from staffml_dagster.resources import SpecsResource
from staffml_dagster.stages.metadata import markdown_table
from staffml_dagster.stages.validation import verdict_metadata
from staffml_dagster.storage import DuckDBWarehouse

GROUP = "imported"
IMPORT_PATH_ENV = "STAFFML_IMPORT_PATH"


class ImportConfig(dg.Config):
    path: str = Field(
        default="",
        description=(
            "A folder or file holding a StaffML corpus (YAML tree, .json or .jsonl bundle). "
            f"Empty: the {IMPORT_PATH_ENV} environment variable; neither set: an empty table."
        ),
    )


def generated_for_dedup(warehouse: DuckDBWarehouse, model: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The generated questions (every partition) and their stored embeddings when they were
    made by ``model``; empty when nothing has been generated yet."""
    con = warehouse.connect()
    views = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    if "questions" not in views:
        return pd.DataFrame(columns=GENERATED_COLUMNS), {}
    generated = con.execute(f"SELECT {', '.join(GENERATED_COLUMNS)} FROM questions").df()
    vectors: dict[str, np.ndarray] = {}
    if "question_embeddings" in views:
        stored = con.execute("SELECT id, vector FROM question_embeddings WHERE model = ?", [model]).df()
        vectors = vectors_by_id(stored)
    return generated, vectors


def coverage_metadata(cov: ImportCoverage) -> dict:
    return {
        "coverage": dg.MetadataValue.json(cov.stats),
        "cells_filled": dg.MetadataValue.int(cov.stats["cells_filled"]),
        "per_topic_track": dg.MetadataValue.md(markdown_table(cov.per_partition, rows=30)),
        "per_zone": dg.MetadataValue.md(markdown_table(cov.per_zone, rows=20)),
        "per_level": dg.MetadataValue.md(markdown_table(cov.per_level, rows=10)),
        "cells_filled_preview": dg.MetadataValue.md(markdown_table(cov.cells, rows=30)),
        "outside_our_cells": dg.MetadataValue.md(markdown_table(cov.outside, rows=30)),
    }


def import_metadata(result: ImportResult) -> dict:
    report = result.report()
    errors = "\n".join(f"- `{e.where}`: {e.message}" for e in result.errors[:50]) or "none"
    if len(result.errors) > 50:
        errors += f"\n- … and {len(result.errors) - 50} more"
    return {
        "source": dg.MetadataValue.path(str(result.root)),
        "formats": dg.MetadataValue.json(report["formats"]),
        "import_errors": dg.MetadataValue.int(len(result.errors)),
        "import_error_list": dg.MetadataValue.md(errors),
        "renamed": dg.MetadataValue.json(report["renamed"]),
        "unmapped": dg.MetadataValue.json(
            {f: {v: d["count"] for v, d in values.items()} for f, values in report["unmapped"].items()}
        ),
    }


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version="1",
    deps=["questions", "question_embeddings"],
)
def imported_questions(
    context: dg.AssetExecutionContext,
    config: ImportConfig,
    specs: SpecsResource,
    embedder: EmbedderResource,
    warehouse: DuckDBWarehouse,
    cells: pd.DataFrame,
) -> pd.DataFrame:
    """Questions imported from a StaffML corpus (config `path` or STAFFML_IMPORT_PATH), each with the verdicts generated
    questions get, deduplicated against the generated questions (exact and near-duplicate), with coverage of our cells
    (the `cells` asset) in metadata. Unmapped values (e.g. the `global` track) are kept empty and fail specificity;
    unknown fields are kept in `extra`. No path configured: an empty table.
    """
    loaded = specs.load()
    path = config.path or os.environ.get(IMPORT_PATH_ENV, "")
    if not path:
        empty = review_imported(ImportResult(root=Path(".")).frame(), loaded, embedder.get())
        context.add_output_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(0),
                "note": f"no import path configured (run config `path` or {IMPORT_PATH_ENV}); nothing imported",
            }
        )
        return empty
    try:
        result = import_corpus(path, loaded)
    except FileNotFoundError as exc:
        raise dg.Failure(str(exc)) from None
    if not result.rows:
        raise dg.Failure(
            f"nothing could be imported from {path}: {len(result.errors)} error(s)", metadata=import_metadata(result)
        )
    model = embedder.get()
    generated, vectors = generated_for_dedup(warehouse, model.name)
    reviewed = review_imported(result.frame(), loaded, model, generated, vectors)
    duplicates = reviewed[reviewed["duplicate_of"].notna()]
    meta = {
        **verdict_metadata(reviewed),
        **import_metadata(result),
        "generated_compared": dg.MetadataValue.int(len(generated)),
        "duplicates_of_generated": dg.MetadataValue.int(len(duplicates)),
        "duplicate_list": dg.MetadataValue.md(
            markdown_table(duplicates, ["id", "duplicate_kind", "duplicate_of", "duplicate_similarity"], rows=20)
        ),
        **coverage_metadata(import_coverage(reviewed, cells)),
        "preview": dg.MetadataValue.md(
            markdown_table(reviewed, ["id", "track", "zone", "level", "topic", "passed"], rows=10)
        ),
    }
    context.add_output_metadata(meta)
    context.log.info(
        json.dumps({"imported": len(reviewed), "errors": len(result.errors), "duplicates": len(duplicates)})
    )
    return reviewed
