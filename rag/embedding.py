"""Sentence embeddings from the packaged sentence-transformers model, loaded on first use."""

from __future__ import annotations

from functools import cached_property

import numpy as np

from rag.models import embedding_model_dir


class Embedder:
    """Normalized float32 vectors, so inner product is cosine similarity."""

    def __init__(self, model_name: str, batch_size: int = 32) -> None:
        self.model_name = model_name
        self.batch_size = batch_size

    @cached_property
    def _model(self):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(embedding_model_dir(self.model_name)), device="cpu")

    @property
    def dim(self) -> int:
        return int(self._model.get_embedding_dimension())

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
