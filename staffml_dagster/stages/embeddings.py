"""Embeddings of every question (scenario + question + solution), used for distinctness
and for measuring capacity."""

import dagster as dg
import numpy as np
import pandas as pd

from staffml_dagster.embedding import EmbedderResource
from staffml_dagster.partitions import topic_track
from staffml_dagster.quality.criteria import distinct_text

GROUP = "validation"
EMBEDDING_COLUMNS = ["id", "topic", "track", "zone", "level", "model", "vector"]


def embedding_rows(questions: pd.DataFrame, embedder) -> pd.DataFrame:
    if questions.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EMBEDDING_COLUMNS})
    vectors = embedder.encode([distinct_text(r) for r in questions.to_dict("records")])
    return pd.DataFrame(
        {"id": questions["id"].values, "topic": questions["topic"].values, "track": questions["track"].values,
         "zone": questions["zone"].values, "level": questions["level"].values,
         "model": embedder.name, "vector": [np.asarray(v, dtype=np.float32) for v in vectors]}
    )


def vectors_by_id(embeddings: pd.DataFrame) -> dict[str, np.ndarray]:
    return {i: np.asarray(v, dtype=np.float32) for i, v in zip(embeddings["id"], embeddings["vector"])}


@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version="1",
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="A float32, L2-normalised embedding of each question's scenario + question + solution (all-MiniLM-L6-v2 offline, or the hashed TF-IDF fallback).",
)
def question_embeddings(context: dg.AssetExecutionContext, embedder: EmbedderResource, questions: pd.DataFrame) -> pd.DataFrame:
    df = embedding_rows(questions, embedder.get())
    dim = len(df["vector"].iloc[0]) if len(df) else 0
    context.add_output_metadata({"dagster/row_count": dg.MetadataValue.int(len(df)), "model": embedder.get().name, "dimension": dim})
    return df
