"""Ingestion: files on disk become `Document`s (`loaders`), and documents become `Chunk`s (`chunking`).

To add a file format, write a loader in `loaders.py` (a function from a path to its text and title) and
register its extensions in `_LOADERS`; a file it cannot read must raise, never crash the batch.
"""
