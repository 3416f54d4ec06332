"""The embedder resource: MiniLM offline and the hashed TF-IDF fallback."""

import numpy as np
import pytest

from staffml_dagster.embedding import EmbedderResource, get_embedder

NEAR = ["The KV cache of Llama 3 8B at 8k context fills the H100's memory at batch 64.",
        "At 8k context and batch 64, Llama 3 8B's KV cache fills the memory of the H100."]
FAR = "A coin cell powers a microcontroller that wakes once a second to run a keyword spotter."


@pytest.mark.parametrize("kind", ["tfidf", "all-MiniLM-L6-v2"])
def test_vectors_are_normalised_and_rank_near_duplicates_first(kind):
    e = get_embedder(kind)
    v = e.encode([*NEAR, FAR])
    assert v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
    assert np.array_equal(e.encode(NEAR), e.encode(NEAR))  # deterministic


def test_resource_follows_config_and_environment(monkeypatch):
    monkeypatch.setenv("STAFFML_EMBEDDER", "tfidf")
    assert EmbedderResource().get().name == "tfidf"
    assert EmbedderResource(kind="tfidf").get() is get_embedder("tfidf")  # loaded once per process
    with pytest.raises(ValueError, match="unknown embedder"):
        EmbedderResource(kind="word2vec").get()
