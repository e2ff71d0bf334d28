"""Retrieval: the passages an answer is written from.

`hybrid` fuses the store's dense and lexical candidates into one ranking; `excerpts` cuts each passage
to its sentences closest to the question before the model reads them; `gathering` decides what an answer
of each question kind reads (a search per side of a comparison, several documents for a list).
"""
