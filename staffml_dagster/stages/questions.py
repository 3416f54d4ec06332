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


def anthropic_with_reviewed_exemplars():
    """Claude, shown as exemplars only corpus questions that reviews rated staff-worthy."""
    from staffml_dagster.quality.exemplars import reviewed_exemplars
    from staffml_dagster.storage import connect_warehouse

    return backend_from_env(exemplars=reviewed_exemplars(connect_warehouse()))


BACKENDS = {"item-models": ItemModelGenerator, "anthropic": anthropic_with_reviewed_exemplars}

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

def partition_questions(loaded, backend, topic: str, track: str, cells: pd.DataFrame, applicability_matrix: pd.DataFrame,
                        cell_capacity: pd.DataFrame, seed: int | None) -> tuple[pd.DataFrame, dict]:
    """The questions of one (topic, track) partition and what happened to it: empty with the
    reason when the partition is inapplicable, otherwise every cell filled up to its target
    (ids of the previous materialization are kept where the generator reproduces them)."""
    verdict = applicability_matrix[(applicability_matrix["topic"] == topic) & (applicability_matrix["track"] == track)]
    if verdict.empty:
        raise dg.Failure(f"partition {topic}|{track} is not in the applicability matrix; rematerialize applicability_matrix")
    if not bool(verdict.iloc[0]["applicable"]):
        return empty_questions(), {"inapplicable": str(verdict.iloc[0]["justification"])}
    previous = read_partition(warehouse_dir(), "questions", {"topic": topic, "track": track})
    mine = cell_targets(cells[(cells["topic"] == topic) & (cells["track"] == track)], cell_capacity, previous, loaded.generation.questions_per_cell)
    try:
        df = generate_partition(loaded, backend, mine, seed)
    except AnthropicBackendError as exc:  # budget reached, retries exhausted: nothing is written for this run
        raise dg.Failure(f"{topic}|{track}: {exc}", metadata=backend_metadata(backend)) from None
    kept = set(previous["id"]) if previous is not None and len(previous) else set()
    return df, {"kept": len(kept & set(df["id"])), "dropped": len(kept - set(df["id"]))}


@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version=f"{GENERATOR_VERSION}+{ANTHROPIC_VERSION}",
    pool="anthropic",
    automation_condition=TOP_UP,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Questions of each (topic, track) partition: every applicable cell filled up to its target with distinct questions from the generator backend (offline item models by default, Claude with backend=anthropic). An inapplicable partition is an empty table with the reason in metadata. A backfill of many partitions is one run. Runs in the `anthropic` concurrency pool, whose limit is set in dagster.yaml.",
)
def questions(context: dg.AssetExecutionContext, config: QuestionsConfig, specs: SpecsResource, cells: pd.DataFrame, applicability_matrix: pd.DataFrame, cell_capacity: pd.DataFrame) -> pd.DataFrame:
    loaded = specs.load()
    backend = make_backend(config.backend)
    frames, inapplicable, kept, dropped = [], {}, 0, 0
    for key in context.partition_keys:
        dims = topic_track.get_partition_key_from_str(key).keys_by_dimension
        df, outcome = partition_questions(loaded, backend, dims["topic"], dims["track"], cells, applicability_matrix, cell_capacity, config.seed)
        frames.append(df)
        if "inapplicable" in outcome:
            inapplicable[key] = outcome["inapplicable"]
        kept, dropped = kept + outcome.get("kept", 0), dropped + outcome.get("dropped", 0)
    filled = [f for f in frames if len(f)]
    df = pd.concat(filled, ignore_index=True) if filled else empty_questions()
    meta = {**questions_metadata(df), **backend_metadata(backend), "partitions": dg.MetadataValue.int(len(frames))}
    if inapplicable:
        meta["inapplicable"] = next(iter(inapplicable.values())) if len(frames) == 1 else dg.MetadataValue.json(inapplicable)
    if len(inapplicable) < len(frames):
        meta.update({
            "capacity_source": "measured (cell_capacity)" if len(cell_capacity) else f"interim bound of {loaded.generation.questions_per_cell} per cell (capacity not measured yet)",
            "kept_from_previous": dg.MetadataValue.int(kept),
            "dropped_from_previous": dg.MetadataValue.int(dropped),
        })
    context.add_output_metadata(meta)
    return df
