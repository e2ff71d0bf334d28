"""Retrieval: the passages an answer is written from.

`hybrid` fuses the store's dense and lexical candidates into one ranking; `excerpts` cuts each passage
to its sentences closest to the question before the model reads them.
"""
