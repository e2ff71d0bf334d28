"""Embedding: text becomes normalized vectors (`embedder.Embedder`), for the store, retrieval and the checks."""
