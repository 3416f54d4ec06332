"""Embeddings of every question (scenario + question + solution), used for distinctness
and for measuring capacity. A text embedded before by the same model keeps its stored
vector: re-materializing a partition whose questions did not change loads no model."""

import hashlib

import dagster as dg
import numpy as np
import pandas as pd

from staffml_dagster.embedding import EmbedderResource
from staffml_dagster.partitions import topic_track
from staffml_dagster.progress import PREFIX as PROGRESS
from staffml_dagster.quality.criteria import distinct_text
from staffml_dagster.stages.metadata import add_partition_metadata, run_partition_keys
from staffml_dagster.storage import DuckDBWarehouse

GROUP = "validation"
EMBEDDING_COLUMNS = ["id", "topic", "track", "zone", "level", "model", "text_hash", "vector"]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def embedding_rows(questions: pd.DataFrame, embedder, previous: pd.DataFrame | None = None) -> tuple[pd.DataFrame, int]:
    """One embedding per question, and how many were reused: a text whose hash appears in
    ``previous`` (earlier rows of this asset) with the same model takes the stored vector."""
    if questions.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EMBEDDING_COLUMNS}), 0
    texts = [distinct_text(r) for r in questions.to_dict("records")]
    hashes = [text_hash(t) for t in texts]
    stored = {}
    if previous is not None and len(previous) and "text_hash" in previous.columns:
        same_model = previous[previous["model"] == embedder.name]
        stored = dict(zip(same_model["text_hash"], same_model["vector"]))
    todo = [i for i, h in enumerate(hashes) if h not in stored]
    fresh = dict(zip(todo, embedder.encode([texts[i] for i in todo]))) if todo else {}
    vectors = [np.asarray(fresh[i] if i in fresh else stored[h], dtype=np.float32) for i, h in enumerate(hashes)]
    df = pd.DataFrame(
        {
            "id": questions["id"].values,
            "topic": questions["topic"].values,
            "track": questions["track"].values,
            "zone": questions["zone"].values,
            "level": questions["level"].values,
            "model": embedder.name,
            "text_hash": hashes,
            "vector": vectors,
        }
    )
    return df, len(texts) - len(todo)


def stored_embeddings(warehouse: DuckDBWarehouse, partition_keys: list[str]) -> pd.DataFrame | None:
    """What this asset holds in ``warehouse`` for the given partitions (None when never materialized)."""
    frames = [
        warehouse.read_partition(
            "question_embeddings", dict(topic_track.get_partition_key_from_str(k).keys_by_dimension)
        )
        for k in partition_keys
    ]
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


@dg.asset(
    partitions_def=topic_track,
    group_name=GROUP,
    kinds={"pandas", "parquet"},
    code_version="2",
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def question_embeddings(
    context: dg.AssetExecutionContext, embedder: EmbedderResource, warehouse: DuckDBWarehouse, questions: pd.DataFrame
) -> pd.DataFrame:
    """A float32, L2-normalised embedding of each question's scenario + question + solution (all-MiniLM-L6-v2 offline,
    or the hashed TF-IDF fallback).
    """
    previous = stored_embeddings(warehouse, context.partition_keys)
    model = embedder.get()
    stored = (
        set(previous.loc[previous["model"] == model.name, "text_hash"])
        if previous is not None and "text_hash" in previous.columns
        else set()
    )
    if len(questions):
        fresh = sum(text_hash(distinct_text(r)) not in stored for r in questions.to_dict("records"))
        context.log.info(
            f"{PROGRESS}question_embeddings: {fresh} of {len(questions)} text(s) to encode with {model.name}, "
            "the others reuse their stored vectors"
        )
    df, reused = embedding_rows(questions, model, previous)
    dim = len(df["vector"].iloc[0]) if len(df) else 0
    meta = add_partition_metadata(
        context,
        df,
        lambda key, rows: {
            "dagster/row_count": dg.MetadataValue.int(len(rows)),
            "reused_vectors": dg.MetadataValue.int(int(rows["text_hash"].isin(stored).sum()) if len(rows) else 0),
        },
    )
    meta.update({"model": model.name, "dimension": dim})
    if len(run_partition_keys(context)) > 1:
        meta.update(
            {"run_row_count": dg.MetadataValue.int(len(df)), "run_reused_vectors": dg.MetadataValue.int(reused)}
        )
    context.add_output_metadata(meta)
    return df
