"""Fidelity against full reading: how far a new way of reading a prompt moves the model, in minutes.

A change in how the same prompt is read (passage states and their repairs, excerpt length, another
quantization) changes answers only through the next-token distributions. So instead of generating the
eval again, each recorded answer (`rag eval --record DIR`, made with full reading) is read again,
teacher-forced, twice: as the full prompt (the reference, computed once per recording and engine and
kept in DIR) and under the current settings. Per answer token: the KL divergence from the reference
distribution (its top `TOP_K` tokens and the rest as one bucket, so the figure is a lower bound of the
full KL and 0 for the same reading), whether the most likely token is the same, and the log-likelihood
of the recorded token. Greedy decoding would write the recorded answer exactly as long as the most
likely token is the recorded one, so the share of the first `GREEDY_TOKENS` tokens before the first
disagreement is the greedy agreement, without generating anything.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rag.evaluation.recording import Recording, RecordingError
from rag.generation.base import GenerationEngine
from rag.types import PassageSegment, Prompt

TOP_K = 20
GREEDY_TOKENS = 32
_FLOOR = 1e-9  # a bucket's least probability, so a log of it is finite


@dataclass(frozen=True)
class RecordedAnswer:
    """One recorded question's answer prompt and the tokens the model wrote for it."""

    set_name: str
    question_id: str
    key: str
    prompt: Prompt
    tokens: list[int]


@dataclass(frozen=True)
class Reading:
    """An answer read under one configuration, kept small: per token the top `TOP_K` log-probabilities."""

    top_ids: np.ndarray  # (tokens, TOP_K)
    top_log_probs: np.ndarray  # (tokens, TOP_K)
    forced: np.ndarray  # (tokens,): log P(the recorded token)

    @classmethod
    def of(cls, log_probs: np.ndarray, tokens: list[int]) -> Reading:
        top = np.argpartition(-log_probs, TOP_K, axis=1)[:, :TOP_K]
        order = np.take_along_axis(log_probs, top, axis=1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, axis=1)
        return cls(top, np.take_along_axis(log_probs, top, axis=1), log_probs[np.arange(len(tokens)), tokens])

    def to_json(self) -> dict[str, Any]:
        return {
            "top_ids": self.top_ids.tolist(),
            "top_log_probs": np.round(self.top_log_probs, 5).tolist(),
            "forced": np.round(self.forced, 5).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reading:
        return cls(
            np.asarray(data["top_ids"], dtype=np.int64).reshape(-1, TOP_K),
            np.asarray(data["top_log_probs"], dtype=np.float32).reshape(-1, TOP_K),
            np.asarray(data["forced"], dtype=np.float32),
        )


@dataclass(frozen=True)
class Fidelity:
    """One answer under the new reading, against its full reading."""

    set_name: str
    question_id: str
    tokens: int
    kl: float  # mean per token, nats
    top1: float  # share of tokens whose most likely next token is the reference's
    log_likelihood: float  # mean per token of the recorded tokens, new reading
    reference_log_likelihood: float  # the same under full reading
    greedy: float  # share of the first GREEDY_TOKENS before greedy decoding would leave the recorded answer
    seconds: float  # reading the prompt and the answer under the new configuration


def compare(reference: Reading, log_probs: np.ndarray, tokens: list[int]) -> tuple[float, float, float, float]:
    """(mean KL, top-1 agreement, mean log-likelihood, greedy agreement) of `log_probs` against `reference`."""
    rows = np.arange(len(tokens))
    p_log = reference.top_log_probs.astype(np.float64)
    q_log = np.take_along_axis(log_probs, reference.top_ids, axis=1).astype(np.float64)
    p, q = np.exp(p_log), np.exp(q_log)
    p_tail = np.clip(1.0 - p.sum(axis=1), _FLOOR, None)
    q_tail = np.clip(1.0 - q.sum(axis=1), _FLOOR, None)
    kl = (p * (p_log - q_log)).sum(axis=1) + p_tail * (np.log(p_tail) - np.log(q_tail))
    # a token agrees when it is a most likely one: bf16 logits tie often, and argmax picks among ties by index
    best = log_probs.max(axis=1)
    top1 = q_log[:, 0] >= best
    forced = log_probs[rows, tokens]
    follows = (forced >= best)[:GREEDY_TOKENS]
    agreed = len(follows) if follows.all() else int(np.argmin(follows))
    return float(np.clip(kl, 0, None).mean()), float(top1.mean()), float(forced.mean()), agreed / len(follows)


def recorded_answers(recording: Recording, limit: int = 0) -> list[RecordedAnswer]:
    """Each recorded question's first model answer (not the checks' yes/no calls); questions refused before
    the model, or recorded without their prompt's passages and tokens, have none."""
    answers = []
    lacking = 0
    for set_name, lines in recording.lines.items():
        for question_id, line in lines.items():
            call = next((c for c in line["calls"] if c["call"] == "stream"), None)
            if call is None:
                continue
            if call.get("tokens") is None or "segments" not in call:
                lacking += 1
                continue
            if not call["tokens"]:
                continue
            prompt = Prompt(
                call["messages"],
                call["fixed"],
                call["max_new_tokens"],
                tuple(PassageSegment(**segment) for segment in call["segments"]),
            )
            answers.append(RecordedAnswer(set_name, question_id, call["key"], prompt, call["tokens"]))
    if lacking and not answers:
        raise RecordingError(
            f"{recording.folder} keeps no answer's tokens and passages (recorded by an older version, or through a "
            "model server): record again with `rag eval --record DIR` on an in-process engine"
        )
    return answers[:limit] if limit else answers


class ReferenceCache:
    """The full readings of a recording's answers, computed once per engine configuration, kept in its folder."""

    def __init__(self, folder: Path, engine_id: str) -> None:
        digest = hashlib.sha256(engine_id.encode()).hexdigest()[:12]
        self.path = folder / f"fidelity-reference-{digest}.jsonl"
        self.readings: dict[str, Reading] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.readings[entry["key"]] = Reading.from_json(entry)

    def add(self, key: str, reading: Reading) -> None:
        self.readings[key] = reading
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"key": key, **reading.to_json()}) + "\n")


@dataclass
class FidelityReport:
    """Every measured answer, and what it cost."""

    results: list[Fidelity]
    reference_seconds: float
    states_seconds: float
    seconds: float
    states_made: int = 0

    def summary(self, results: list[Fidelity] | None = None) -> dict[str, float]:
        chosen = self.results if results is None else results
        if not chosen:
            return {"answers": 0}
        return {
            "answers": len(chosen),
            "kl": float(np.mean([r.kl for r in chosen])),
            "top1": float(np.mean([r.top1 for r in chosen])),
            "greedy": float(np.mean([r.greedy for r in chosen])),
            "same_first_tokens": float(np.mean([r.greedy == 1.0 for r in chosen])),
            "log_likelihood_change": float(np.mean([r.log_likelihood - r.reference_log_likelihood for r in chosen])),
            "seconds_per_answer": float(np.mean([r.seconds for r in chosen])),
        }

    def table(self) -> str:
        sets = sorted({r.set_name for r in self.results})
        rows = [(name, self.summary([r for r in self.results if r.set_name == name])) for name in sets]
        rows.append(("all", self.summary()))
        lines = [
            f"{'set':<10}{'answers':>8}{'KL':>9}{'top-1':>8}{'greedy':>8}{'same 32':>9}{'Δ loglik':>10}{'s/answer':>10}"
        ]
        for name, s in rows:
            if not s["answers"]:
                continue
            lines.append(
                f"{name:<10}{s['answers']:>8}{s['kl']:>9.4f}{s['top1']:>8.3f}{s['greedy']:>8.3f}"
                f"{s['same_first_tokens']:>9.3f}{s['log_likelihood_change']:>+10.4f}{s['seconds_per_answer']:>10.2f}"
            )
        lines.append(
            f"full readings computed: {self.reference_seconds:.0f} s; passage states made: {self.states_made} in "
            f"{self.states_seconds:.0f} s; whole run {self.seconds:.0f} s"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "reference_seconds": self.reference_seconds,
            "states_seconds": self.states_seconds,
            "states_made": self.states_made,
            "seconds": self.seconds,
            "answers": [asdict(r) for r in self.results],
        }


def measure_fidelity(
    engine: GenerationEngine, recording: Recording, engine_id: str, limit: int = 0, progress: bool = False
) -> FidelityReport:
    """Read each recorded answer under full reading (once, cached) and under the engine as configured."""
    started = time.perf_counter()
    answers = recorded_answers(recording, limit)
    if engine.passage_states is not None and not any(a.prompt.passages for a in answers):
        raise RecordingError(
            f"{recording.folder} keeps no answer prompt's passages, so passage states would not be read: record "
            "again with `rag eval --record DIR` (recordings made before passages were kept lack them)"
        )
    cache = ReferenceCache(recording.folder, engine_id)
    reference_seconds = states_seconds = 0.0
    states_made = 0
    results = []
    for answer in tqdm(answers, desc="answers", unit="answer", disable=not progress):
        reference = cache.readings.get(answer.key)
        if reference is None:
            t = time.perf_counter()
            with full_reading(engine):
                reference = Reading.of(engine.continuation_log_probs(answer.prompt, answer.tokens), answer.tokens)
            cache.add(answer.key, reference)
            reference_seconds += time.perf_counter() - t
        t = time.perf_counter()
        states_made += engine.store_passage_states(answer.prompt)  # made once, on disk; not the reading
        states_seconds += time.perf_counter() - t
        t = time.perf_counter()
        log_probs = engine.continuation_log_probs(answer.prompt, answer.tokens)
        seconds = time.perf_counter() - t
        kl, top1, log_likelihood, greedy = compare(reference, log_probs, answer.tokens)
        results.append(
            Fidelity(
                answer.set_name,
                answer.question_id,
                len(answer.tokens),
                kl,
                top1,
                log_likelihood,
                float(reference.forced.mean()),
                greedy,
                round(seconds, 3),
            )
        )
    return FidelityReport(results, reference_seconds, states_seconds, time.perf_counter() - started, states_made)


class full_reading:  # a context manager, read as a phrase: `with full_reading(engine):`
    """The engine reads prompts whole while inside: its passage states are set aside, then put back."""

    def __init__(self, engine: GenerationEngine) -> None:
        self.engine = engine
        self.states = engine.passage_states

    def __enter__(self) -> None:
        self.engine.passage_states = None

    def __exit__(self, *_: object) -> None:
        self.engine.passage_states = self.states


def against_eval(report: FidelityReport, before: Recording, after: Recording) -> str:
    """How well fidelity predicts the eval per question: `after` is a recording of the same questions made under
    the new reading; a question 'changed' when its verdict differs from `before`'s."""
    changed, same = [], []
    for result in report.results:
        was = before.lines.get(result.set_name, {}).get(result.question_id)
        now = after.lines.get(result.set_name, {}).get(result.question_id)
        if was is None or now is None:
            continue
        (changed if was["score"]["verdict"] != now["score"]["verdict"] else same).append(result)
    if not changed and not same:
        return "No question of the fidelity run is in both recordings."
    lines = [f"Against the eval ({after.folder}): {len(changed)} of {len(changed) + len(same)} verdicts changed"]
    for name, group in (("changed", changed), ("unchanged", same)):
        if group:
            kl, greedy = np.mean([r.kl for r in group]), np.mean([r.greedy for r in group])
            kept = np.mean([r.greedy == 1.0 for r in group])
            lines.append(f"  {name:<10} mean KL {kl:.4f}, greedy {greedy:.3f}, same first tokens {kept:.3f}")
    diverged = [r for r in changed + same if r.greedy < 1.0]
    if diverged:
        share = sum(r in changed for r in diverged) / len(diverged)
        lines.append(f"  of {len(diverged)} answers greedy would leave, {share:.0%} changed verdict")
    kept = [r for r in changed + same if r.greedy == 1.0]
    if kept:
        share = sum(r in changed for r in kept) / len(kept)
        lines.append(f"  of {len(kept)} answers whose first tokens are kept, {share:.0%} changed verdict")
    if changed and same:
        pairs = [(c.kl > s.kl) + 0.5 * (c.kl == s.kl) for c in changed for s in same]
        lines.append(f"  KL ranks a changed answer above an unchanged one {np.mean(pairs):.0%} of the time (AUC)")
    return "\n".join(lines)


def iter_answers(report: FidelityReport) -> Iterator[str]:
    for r in sorted(report.results, key=lambda r: -r.kl):
        yield f"  {r.set_name}/{r.question_id}: KL {r.kl:.4f}, top-1 {r.top1:.2f}, greedy {r.greedy:.2f}"
