"""The embedder resource: MiniLM offline and the hashed TF-IDF fallback."""

import numpy as np
import pytest

from staffml_dagster.embedding import EmbedderResource, get_embedder

NEAR = [
    "The KV cache of Llama 3 8B at 8k context fills the H100's memory at batch 64.",
    "At 8k context and batch 64, Llama 3 8B's KV cache fills the memory of the H100.",
]
FAR = "A coin cell powers a microcontroller that wakes once a second to run a keyword spotter."


@pytest.mark.parametrize("kind", ["tfidf", "all-MiniLM-L6-v2"])
def test_vectors_are_normalised_and_rank_near_duplicates_first(kind):
    e = get_embedder(kind)
    v = e.encode([*NEAR, FAR])
    assert v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
    assert np.array_equal(e.encode(NEAR), e.encode(NEAR))  # deterministic


def test_resource_follows_its_config():
    assert (
        EmbedderResource().get().name == "all-MiniLM-L6-v2"
    )  # the default (STAFFML_EMBEDDER is mapped in definitions.resources)
    assert EmbedderResource(kind="tfidf").get() is get_embedder("tfidf")  # loaded once per process
    with pytest.raises(ValueError, match="unknown embedder"):
        EmbedderResource(kind="word2vec").get()


class CountingEmbedder:
    """The TF-IDF embedder, counting the texts it is asked to encode."""

    name = "tfidf"

    def __init__(self):
        self.encoded = 0

    def encode(self, texts):
        self.encoded += len(texts)
        return get_embedder("tfidf").encode(texts)


def _questions(texts):
    import pandas as pd

    return pd.DataFrame(
        {
            "id": [f"q{i}" for i in range(len(texts))],
            "topic": "t",
            "track": "cloud",
            "zone": "recall",
            "level": "L1",
            "scenario": texts,
            "question": "How much?",
            "realistic_solution": "So much.",
        }
    )


def test_stored_vectors_are_reused_only_for_the_same_text_and_model():
    from staffml_dagster.stages.embeddings import embedding_rows

    first = CountingEmbedder()
    before, reused = embedding_rows(_questions([*NEAR, FAR]), first)
    assert (first.encoded, reused) == (3, 0)

    again = CountingEmbedder()
    changed = _questions([NEAR[0], NEAR[1] + " Twice.", FAR])
    after, reused = embedding_rows(changed, again, previous=before)
    assert (again.encoded, reused) == (1, 2)  # only the edited text is embedded again
    assert np.array_equal(after["vector"][0], before["vector"][0])
    assert not np.array_equal(after["vector"][1], before["vector"][1])

    other_model = before.assign(model="all-MiniLM-L6-v2")
    third = CountingEmbedder()
    _, reused = embedding_rows(_questions([*NEAR, FAR]), third, previous=other_model)
    assert (third.encoded, reused) == (3, 0)  # vectors of another model are never mixed in


def test_minilm_loads_its_model_on_first_encode_only():
    from staffml_dagster.embedding import MiniLMEmbedder

    e = MiniLMEmbedder()
    assert not e.loaded
    assert e.encode([]).shape == (0, 384) and not e.loaded
    e.encode(NEAR[:1])
    assert e.loaded


def test_minilm_vectors_equal_sentence_transformers():
    """The pipeline computes the model's sentence-transformers recipe itself; same vectors,
    in the caller's order, for texts of very different lengths (one beyond 128 tokens)."""
    from sentence_transformers import SentenceTransformer

    from staffml_dagster.embedding import MiniLMEmbedder

    texts = [FAR, *NEAR, "Short.", " ".join([NEAR[0]] * 12)]
    ours = MiniLMEmbedder(batch_size=2).encode(texts)
    reference = SentenceTransformer(str(MiniLMEmbedder.path()), device="cpu", local_files_only=True)
    reference.max_seq_length = 128
    theirs = reference.encode(
        texts, batch_size=2, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    assert np.abs(ours - theirs).max() < 1e-5


@pytest.fixture(scope="module")
def question_texts(specs):
    """Distinctness texts of real generated questions from three partitions (all of them
    longer than 128 tokens, so truncated), plus short and mid-length ones."""
    from staffml_dagster.generation.offline import ItemModelGenerator
    from staffml_dagster.generation.partition import generate_partition
    from staffml_dagster.quality.criteria import distinct_text
    from staffml_dagster.stages.applicability import applicability_rows
    from staffml_dagster.stages.capacity import cell_rows

    wanted = {("kv-cache-management", "cloud"), ("kv-cache-management", "edge"), ("roofline-analysis", "mobile")}
    m = applicability_rows(specs)
    cells = cell_rows(
        specs, {(r.topic, r.track) for r in m.itertuples() if r.applicable and (r.topic, r.track) in wanted}
    )
    rows = [
        r
        for _, part in cells.groupby(["topic", "track"])
        for r in generate_partition(specs, ItemModelGenerator(), part).to_dict("records")
    ]
    assert len(rows) >= 10
    return [distinct_text(r) for r in rows] + [r["question"] for r in rows[:5]] + [FAR, "Short.", "x"]


def test_numpy_minilm_equals_sentence_transformers_on_question_texts(question_texts):
    """The numpy forward pass (what a one-partition backfill runs) gives the vectors of
    SentenceTransformer.encode with the same weights, long texts truncated at 128 tokens."""
    from sentence_transformers import SentenceTransformer

    from staffml_dagster.embedding import MiniLMEmbedder

    e = MiniLMEmbedder(batch_size=8)
    assert (
        max(len(e._load_numpy().tokenizer.encode(t, add_special_tokens=True).ids) for t in question_texts) == 128
    )  # some were cut
    ours = e.encode_numpy(question_texts)
    reference = SentenceTransformer(str(MiniLMEmbedder.path()), device="cpu", local_files_only=True)
    reference.max_seq_length = 128
    theirs = reference.encode(
        question_texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() >= 0.9999
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.abs(ours - e.encode_torch(question_texts)).max() < 1e-4  # the bulk path agrees too


def test_small_encodes_import_neither_torch_nor_transformers():
    """A partition's few dozen texts go through numpy: a fresh process encoding them never
    imports torch or transformers; more than the bulk threshold goes through torch."""
    import subprocess
    import sys

    code = (
        "import sys; from staffml_dagster.embedding import MiniLMEmbedder; e = MiniLMEmbedder(bulk_threshold=3); "
        "e.encode(['a', 'b', 'c']); print('torch' in sys.modules, 'transformers' in sys.modules); "
        "e.encode(['a', 'b', 'c', 'd']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]
