"""Evaluation: how well and how fast the assistant answers, measured through the same `Assistant`.

`question_set` runs and scores a question file (eval/seeds.json), `squad` the SQuAD 2.0 benchmark, `metrics`
the shared measures, `report` the HTML report, and `bench` the speed of every stage (`rag bench`).
"""
