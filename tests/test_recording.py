"""`rag eval --record` and `--replay` with the tiny model on a handful of seed questions.

A replay of an unchanged pipeline reproduces every recorded verdict without generating; a changed step
after generation shows in its diff; a recording made under another model or prompt version is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SEEDS

from rag.cli import main
from rag.evaluation.recording import RUN_FILE

SEED_SET = Path(__file__).resolve().parent.parent / "eval" / "seeds.json"
QUESTIONS = ("fact-01", "fact-04", "yes-01", "unans-09", "follow-02b")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The question file, the index folder and a recording of the tiny model answering it."""
    root = tmp_path_factory.mktemp("recorded")
    questions = json.loads(SEED_SET.read_text(encoding="utf-8"))
    wanted = set(QUESTIONS) | {q["follows"] for q in questions["questions"] if q["id"] in QUESTIONS and "follows" in q}
    questions["questions"] = [q for q in questions["questions"] if q["id"] in wanted]
    questions["name"] = "few"
    (root / "eval").mkdir()
    (root / "seeds").symlink_to(SEEDS)
    question_file = root / "eval" / "few.json"
    question_file.write_text(json.dumps(questions), encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        _tiny(env, root)
        assert (
            main(
                [
                    "eval",
                    "--questions",
                    str(question_file),
                    "--json",
                    str(root / "r.json"),
                    "--html",
                    str(root / "r.html"),
                    "--record",
                    str(root / "rec"),
                ]
            )
            == 0
        )
    return question_file, root, root / "rec"


def _tiny(env: pytest.MonkeyPatch, root: Path) -> None:
    env.setenv("RAG_INDEX_DIR", str(root / "index"))
    env.setenv("RAG_GENERATOR_MODEL", "smollm2-135m")
    env.setenv("RAG_GENERATOR_ENGINE", "transformers")


def test_a_recording_holds_the_run_and_every_question_with_its_draft_and_model_calls(
    recorded: tuple[Path, Path, Path],
) -> None:
    _, root, folder = recorded
    header = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    assert header["generator_model"] == "smollm2-135m" and header["generator_engine"] == "transformers"
    assert header["prompt_version"] and header["packages"]["torch"] and header["cpu"]
    entry = header["sets"]["few"]
    assert entry["metrics"]["n"] == len(entry["questions"])
    lines = [json.loads(line) for line in (folder / "few.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == entry["questions"]
    report = json.loads((root / "r.json").read_text(encoding="utf-8"))
    for line, scored in zip(lines, report["questions"], strict=True):
        assert line["score"]["verdict"] == scored["verdict"] and line["draft"] == scored["draft"]
        streams = [c for c in line["calls"] if c["call"] == "stream"]
        if scored["draft"]:  # generated: the prompt, its passages, the draft as streamed and its tokens
            assert "".join(streams[0]["pieces"]).strip() == scored["draft"]
            assert streams[0]["tokens"] and streams[0]["fixed"] >= 1
            assert streams[0]["segments"], streams[0]
            assert streams[0]["messages"][-1]["role"] == "user" and streams[0]["prompt_tokens"] > 0
        assert line["passages"] or line["abstained_by"]
        given = {p["chunk_id"] for p in line["passages"]}
        if line["kind"] == "fact" and given:  # a fact's passages are the top of the search's candidates
            assert given <= {c["chunk_id"] for c in line["candidates"]}
    follow_up = next(line for line in lines if line["id"] == "follow-02b")
    assert follow_up["history"]  # asked with the assistant's own first answer


def test_a_replay_of_the_same_pipeline_reproduces_every_verdict_without_generating(
    recorded: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, root, folder = recorded
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as env:
        _tiny(env, root)
        assert main(["eval", "--replay", str(folder)]) == 0
    printed = capsys.readouterr().out
    header = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    n = header["sets"]["few"]["metrics"]["n"]
    assert f"0 of {n} questions changed" in printed, printed
    assert "generated for real" not in printed, printed


def test_a_changed_step_after_generation_shows_in_the_replay_diff(
    recorded: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The citation step changed to refuse every draft: each answer the recording kept is now refused, and
    the diff names each with the step that refused it; what an earlier step refused is as recorded."""
    from rag.answering.checks import ABSTAIN_TEXT, CitationsUnsupported

    _, root, folder = recorded
    lines = [json.loads(line) for line in (folder / "few.jsonl").read_text(encoding="utf-8").splitlines()]
    answered = [line["id"] for line in lines if not line["abstained_by"] and line["draft"]]
    assert answered, "the tiny model answered none of the questions: nothing for the changed step to change"
    monkeypatch.setattr(CitationsUnsupported, "refusal", lambda self, case: ABSTAIN_TEXT)
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as env:
        _tiny(env, root)
        assert main(["eval", "--replay", str(folder)]) == 0
    printed = capsys.readouterr().out
    changed = dict(line.strip().split(": ", 1) for line in printed.splitlines() if " -> " in line)
    assert set(answered) <= changed.keys(), printed
    assert all(
        outcome.endswith("-> abstained (should answer) [citations]")
        or outcome.endswith("-> abstained (right) [citations]")
        for outcome in changed.values()
    ), printed
    earlier = {line["id"] for line in lines if line["abstained_by"] in ("off topic", "names missing", "model")}
    assert not earlier & changed.keys(), printed  # refused before the changed step: as recorded


def test_a_recording_under_another_model_or_prompt_version_is_refused(
    recorded: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root, folder = recorded
    for field, value in (("generator_model", "qwen2.5-coder-1.5b"), ("prompt_version", "0123456789abcdef")):
        copy = tmp_path / field
        copy.mkdir()
        for path in folder.iterdir():
            (copy / path.name).write_bytes(path.read_bytes())
        header = json.loads((copy / RUN_FILE).read_text(encoding="utf-8"))
        header[field] = value
        (copy / RUN_FILE).write_text(json.dumps(header), encoding="utf-8")
        with pytest.MonkeyPatch.context() as env:
            _tiny(env, root)
            assert main(["eval", "--replay", str(copy)]) != 0
        error = capsys.readouterr().err
        assert f"{field} {value!r} there" in error and "Record again" in error, error


def test_fidelity_of_full_reading_against_itself_is_exact_and_passage_states_move_it(
    recorded: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recorded answers read again as recorded: KL 0, every top token the same. Read from passage states
    (each passage computed without the others) the distributions move, and fidelity says so."""
    _, root, folder = recorded
    figures = {}
    for states in ("false", "true"):
        with pytest.MonkeyPatch.context() as env:
            _tiny(env, root)
            env.setenv("RAG_PASSAGE_STATES", states)
            env.setenv("RAG_PASSAGE_STATE_DIR", str(tmp_path / "states"))
            assert main(["eval", "fidelity", "--against", str(folder), "--json", str(tmp_path / f"{states}.json")]) == 0
        figures[states] = json.loads((tmp_path / f"{states}.json").read_text(encoding="utf-8"))
    printed = capsys.readouterr().out
    assert "Fidelity of this configuration" in printed and "full reading" in printed
    lines = [json.loads(line) for line in (folder / "few.jsonl").read_text(encoding="utf-8").splitlines()]
    generated = [line for line in lines if any(c["call"] == "stream" for c in line["calls"])]
    same = figures["false"]["answers"]
    assert len(same) == len(generated) > 0
    assert all(a["kl"] < 1e-6 and a["top1"] == 1.0 for a in same), same
    assert all(a["log_likelihood"] == pytest.approx(a["reference_log_likelihood"], abs=1e-5) for a in same)
    moved = figures["true"]["answers"]
    assert figures["true"]["states_made"] > 0  # the recorded prompts' passages were read as states
    assert len(moved) == len(same) and max(a["kl"] for a in moved) > 1e-3, moved
    assert list((folder).glob("fidelity-reference-*.jsonl"))  # full readings kept: the second run reused them
    assert figures["true"]["reference_seconds"] == 0


def test_fidelity_refuses_a_recording_without_answer_tokens(
    recorded: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root, folder = recorded
    copy = tmp_path / "old"
    copy.mkdir()
    (copy / RUN_FILE).write_bytes((folder / RUN_FILE).read_bytes())
    lines = [json.loads(line) for line in (folder / "few.jsonl").read_text(encoding="utf-8").splitlines()]
    for line in lines:
        for call in line["calls"]:
            call.pop("tokens", None)
    (copy / "few.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        _tiny(env, root)
        assert main(["eval", "fidelity", "--against", str(copy)]) != 0
    error = capsys.readouterr().err
    assert "keeps no answer's tokens" in error and "record again" in error, error
