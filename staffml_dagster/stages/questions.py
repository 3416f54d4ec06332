"""Stage 7: the questions of each (topic, track) partition, from the chosen generator backend."""

import os

import dagster as dg
import pandas as pd

from staffml_dagster.generation.offline import GENERATOR_VERSION, ItemModelGenerator
from staffml_dagster.generation.partition import empty_questions, generate_partition
from staffml_dagster.partitions import topic_track
from staffml_dagster.resources import SpecsResource
from staffml_dagster.stages.metadata import markdown_table

GROUP = "questions"
BACKENDS = {"item-models": ItemModelGenerator}

class QuestionsConfig(dg.Config):
    backend: str = os.environ.get("STAFFML_GENERATOR", "item-models")
    seed: int | None = None

def make_backend(name: str):
    if name not in BACKENDS:
        raise dg.Failure(f"unknown generator backend {name!r}; choose one of {', '.join(sorted(BACKENDS))} (run config `backend` or STAFFML_GENERATOR)")
    return BACKENDS[name]()

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
    code_version=GENERATOR_VERSION,
    description="Questions of one (topic, track) partition: every applicable cell filled up to its target with distinct questions from the generator backend (offline item models by default). An inapplicable partition is an empty table with the reason in metadata.",
)
def questions(context: dg.AssetExecutionContext, config: QuestionsConfig, specs: SpecsResource, cells: pd.DataFrame, applicability_matrix: pd.DataFrame) -> pd.DataFrame:
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
    mine = cells[(cells["topic"] == topic) & (cells["track"] == track)]
    df = generate_partition(loaded, make_backend(config.backend), mine, config.seed)
    context.add_output_metadata(questions_metadata(df))
    return df
