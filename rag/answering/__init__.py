"""Answering: what the model is asked, and what may be said to the user of what it wrote.

`prompts` builds the numbered-passage prompt and the yes/no answer-check prompt, `citations` checks every
answer sentence against the passage it cites, and `checks` is the ordered list of abstention steps
(add a check there). Word-level helpers they share live in `rag.lexical`.
"""
