"""Stage 7: the questions of each (topic, track) partition, from the chosen generator backend."""

import os

import dagster as dg
import pandas as pd

from staffml_dagster.generation.anthropic_backend import GENERATOR_VERSION as ANTHROPIC_VERSION
from staffml_dagster.generation.anthropic_backend import AnthropicBackendError, backend_from_env
from staffml_dagster.generation.offline import GENERATOR_VERSION, ItemModelGenerator
from staffml_dagster.generation.partition import cell_targets, empty_questions, generate_partition
from staffml_dagster.paths import warehouse_dir
from staffml_dagster.storage import read_partition
from staffml_dagster.partitions import topic_track
from staffml_dagster.resources import SpecsResource
from staffml_dagster.stages.metadata import markdown_table

GROUP = "questions"
BACKENDS = {"item-models": ItemModelGenerator, "anthropic": backend_from_env}

# Top up a partition once its measured capacity changes (cell_capacity re-materialized);
# a change of the design stages is left to a deliberate backfill.
TOP_UP = (
    dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.assets("cells", "applicability_matrix")).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.in_progress()
).with_label("top up when the measured capacity changes")


class QuestionsConfig(dg.Config):
    backend: str = os.environ.get("STAFFML_GENERATOR", "item-models")
    seed: int | None = None

def make_backend(name: str):
    if name not in BACKENDS:
        raise dg.Failure(f"unknown generator backend {name!r}; choose one of {', '.join(sorted(BACKENDS))} (run config `backend` or STAFFML_GENERATOR)")
    try:
        return BACKENDS[name]()
    except AnthropicBackendError as exc:  # e.g. the key is missing: say so before any call
        raise dg.Failure(str(exc)) from None


def backend_metadata(backend) -> dict:
    """Cost, calls and failures of a remote backend, for the partition's metadata."""
    summary = getattr(backend, "run_summary", None)
    if summary is None:
        return {}
    failures = getattr(backend, "failures", [])
    rows = [{"cell": f.get("cell"), "reason": f.get("reason"), "raw": f.get("raw")} for f in failures]
    return {
        "generation": dg.MetadataValue.json(summary()),
        "generation_failures": dg.MetadataValue.md(markdown_table(pd.DataFrame(rows), rows=20, width=160) if rows else "none"),
    }

def render_question(row: pd.Series | dict) -> str:
    return (
        f"#### {row['title']}  \n*{row['zone']} · {row['level']} · {row['track']}*\n\n"
        f"{row['scenario']}\n\n**Question.** {row['question']}\n\n**Solution.** {row['realistic_solution']}\n\n"
        f"{row['common_mistake']}\n\n{row['napkin_math']}\n"
    )

def questions_metadata(df: pd.DataFrame) -> dict:
    if df.empty:
        return {"dagster/row_count": dg.MetadataValue.int(0)}
    pivot = df.pivot_table(index="zone", columns="level", values="id", aggfunc="count", fill_value=0)
    samples = df.sample(n=min(5, len(df)), random_state=0)
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "zone_x_level": dg.MetadataValue.md(pivot.to_markdown()),
        "item_models": dg.MetadataValue.md(df["item_model"].value_counts().to_frame().to_markdown()),
        "preview": dg.MetadataValue.md(markdown_table(df, ["id", "zone", "level", "title", "answer_value", "answer_unit"], rows=10)),
        "samples": dg.MetadataValue.md("\n\n---\n\n".join(render_question(r) for _, r in samples.iterrows())),
    }

@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version=f"{GENERATOR_VERSION}+{ANTHROPIC_VERSION}",
    pool="anthropic",
    automation_condition=TOP_UP,
    description="Questions of one (topic, track) partition: every applicable cell filled up to its target with distinct questions from the generator backend (offline item models by default, Claude with backend=anthropic). An inapplicable partition is an empty table with the reason in metadata. Runs in the `anthropic` concurrency pool, whose limit is set in dagster.yaml.",
)
def questions(context: dg.AssetExecutionContext, config: QuestionsConfig, specs: SpecsResource, cells: pd.DataFrame, applicability_matrix: pd.DataFrame, cell_capacity: pd.DataFrame) -> pd.DataFrame:
    keys = context.partition_key.keys_by_dimension
    topic, track = keys["topic"], keys["track"]
    loaded = specs.load()
    verdict = applicability_matrix[(applicability_matrix["topic"] == topic) & (applicability_matrix["track"] == track)]
    if verdict.empty:
        raise dg.Failure(f"partition {topic}|{track} is not in the applicability matrix; rematerialize applicability_matrix")
    if not bool(verdict.iloc[0]["applicable"]):
        reason = verdict.iloc[0]["justification"]
        context.add_output_metadata({"dagster/row_count": dg.MetadataValue.int(0), "inapplicable": reason})
        return empty_questions()
    previous = read_partition(warehouse_dir(), "questions", {"topic": topic, "track": track})
    mine = cell_targets(cells[(cells["topic"] == topic) & (cells["track"] == track)], cell_capacity, previous, loaded.generation.questions_per_cell)
    backend = make_backend(config.backend)
    try:
        df = generate_partition(loaded, backend, mine, config.seed)
    except AnthropicBackendError as exc:  # budget reached, retries exhausted: nothing is written for this partition
        raise dg.Failure(str(exc), metadata=backend_metadata(backend)) from None
    kept = set(previous["id"]) if previous is not None and len(previous) else set()
    context.add_output_metadata({
        **questions_metadata(df), **backend_metadata(backend),
        "capacity_source": "measured (cell_capacity)" if len(cell_capacity) else f"interim bound of {loaded.generation.questions_per_cell} per cell (capacity not measured yet)",
        "kept_from_previous": dg.MetadataValue.int(len(kept & set(df["id"]))),
        "dropped_from_previous": dg.MetadataValue.int(len(kept - set(df["id"]))),
    })
    return df
