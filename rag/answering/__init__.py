"""Answering: what the model is asked, and what may be said to the user of what it wrote.

`answerers` holds one answerer per kind of question (what evidence it reads, how it writes and checks
its answer), `prompts` builds the numbered-passage prompt and the yes/no answer-check prompt, `citations`
checks every answer sentence against the passage it cites, and `checks` is the ordered list of abstention
steps (add a check there). `kinds` tells a fact from a summary, comparison, list or question about the
collection, and `summaries` keeps each document's summary next to the index. Word-level helpers they
share live in `rag.lexical`.
"""
