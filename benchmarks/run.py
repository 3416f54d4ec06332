"""Repeatable performance measurements; writes benchmarks/results.json.

1. Embedding throughput of the pipeline (EmbedderResource -> MiniLMEmbedder.encode on the
   question texts) against raw SentenceTransformer.encode on the same texts, same model
   object settings, same run. Goal: ratio >= 0.8 (the wrapper adds next to nothing).
2. The validation pass (all criteria) on the sample, and the whole-corpus distinctness pass
   (every cell's similarity check over the full offline corpus, on precomputed vectors; the
   vectors are hashed TF-IDF there so the benchmark stays minutes, not hours, on 2 cores).

Texts come from the offline generator so the benchmark needs no prior run:
    .venv/bin/python benchmarks/run.py [--partitions N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _cells():
    from staffml_dagster.specs import cached_specs
    from staffml_dagster.stages.applicability import applicability_rows
    from staffml_dagster.stages.capacity import cell_rows

    specs = cached_specs()
    m = applicability_rows(specs)
    return specs, cell_rows(specs, {(r.topic, r.track) for r in m.itertuples() if r.applicable})


def corpus_distinctness_seconds() -> tuple[int, float, float]:
    """(questions, seconds to generate the whole offline corpus, seconds for its distinctness pass)."""
    import numpy as np
    import pandas as pd

    from staffml_dagster.embedding import get_embedder
    from staffml_dagster.generation.offline import ItemModelGenerator
    from staffml_dagster.generation.partition import generate_partition
    from staffml_dagster.quality.criteria import distinct_text, distinctness

    specs, cells = _cells()
    t = time.perf_counter()
    corpus = pd.concat([generate_partition(specs, ItemModelGenerator(), part) for _, part in cells.groupby(["topic", "track"])], ignore_index=True)
    generation = time.perf_counter() - t
    vectors = get_embedder("tfidf").encode([distinct_text(r) for r in corpus.to_dict("records")])
    t = time.perf_counter()
    for positions in corpus.groupby(["topic", "track", "zone", "level"], sort=False).indices.values():
        distinctness(corpus.iloc[positions], specs.quality.similarity_threshold, vectors=np.asarray(vectors[positions]))
    return len(corpus), generation, time.perf_counter() - t


def _texts(partitions: int):
    import pandas as pd

    from staffml_dagster.generation.offline import ItemModelGenerator
    from staffml_dagster.generation.partition import generate_partition
    from staffml_dagster.specs import cached_specs
    from staffml_dagster.stages.applicability import applicability_rows
    from staffml_dagster.stages.capacity import cell_rows

    specs = cached_specs()
    m = applicability_rows(specs)
    cells = cell_rows(specs, {(r.topic, r.track) for r in m.itertuples() if r.applicable})
    groups = list(cells.groupby(["topic", "track"]))[:: max(1, len(set(zip(cells.topic, cells.track))) // partitions)][:partitions]
    df = pd.concat([generate_partition(specs, ItemModelGenerator(), part) for _, part in groups], ignore_index=True)
    return specs, df


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from staffml_dagster.embedding import get_embedder
    from staffml_dagster.quality.criteria import distinct_text, validate_questions

    specs, df = _texts(args.partitions)
    texts = [distinct_text(r) for r in df.to_dict("records")]
    embedder = get_embedder()  # loads the model once
    raw_model = embedder.model
    embedder.encode(texts[:32])  # warm up both paths on the same model

    def best(fn):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    raw = best(lambda: raw_model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, show_progress_bar=False))
    pipeline = best(lambda: embedder.encode(texts))
    vectors = embedder.encode(texts)
    by_id = dict(zip(df["id"], vectors))
    t = time.perf_counter()
    validated = validate_questions(df, specs, vectors=by_id)
    validation_s = time.perf_counter() - t
    corpus_questions, generation_s, distinct_s = corpus_distinctness_seconds()
    result = {
        "questions": len(texts),
        "raw_encode_texts_per_s": round(len(texts) / raw, 1),
        "pipeline_encode_texts_per_s": round(len(texts) / pipeline, 1),
        "pipeline_over_raw": round(raw / pipeline, 3),
        "goal_pipeline_over_raw": 0.8,
        "validation_all_criteria_s": round(validation_s, 3),
        "validation_per_1000_questions_s": round(1000 * validation_s / len(texts), 3),
        "distinctness_failures": int((~validated["distinctness_ok"]).sum()),
        "corpus_questions": corpus_questions,
        "corpus_generation_s": round(generation_s, 1),
        "corpus_distinctness_pass_s": round(distinct_s, 2),
        "cpu_count": os.cpu_count(),
    }
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["pipeline_over_raw"] >= result["goal_pipeline_over_raw"] else 1


if __name__ == "__main__":
    sys.exit(main())
