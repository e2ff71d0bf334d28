"""`rag`: build the index, list documents, ask questions from a terminal, and serve MCP over stdio."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pydantic import ValidationError

from rag.assistant import Assistant, IndexReport, QuestionError
from rag.evaluation.question_set import EvalSetError
from rag.evaluation.squad import load_squad, run_squad
from rag.models import ModelError
from rag.settings import Settings, settings_error
from rag.store.base import IndexStoreError
from rag.types import Answer, AnswerStyle, Turn

if TYPE_CHECKING:
    from rag.evaluation.recording import RecordingEngine, ReplayEngine


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        overrides = {"generator_model": getattr(args, "model", None), "store": getattr(args, "store", None)}
        settings = Settings(**{k: v for k, v in overrides.items() if v})
        return args.run(Assistant(settings), args)
    except ValidationError as exc:
        print(f"rag: error: {settings_error(exc)}", file=sys.stderr)
        return 2
    except (QuestionError, EvalSetError, ModelError, IndexStoreError, FileNotFoundError, ValueError) as exc:
        print(f"rag: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    index = commands.add_parser("index", help="index files or folders (default: the seeds corpus)")
    index.add_argument("paths", nargs="*", help="files or folders; documents not under them are dropped")
    index.add_argument("--rebuild", action="store_true", help="re-embed everything, e.g. after changing model")
    index.add_argument(
        "--summaries",
        action="store_true",
        help="also write each new or changed document's summary now (else on the first summary question)",
    )
    index.add_argument(
        "--store", choices=["local", "postgres"], help="where the index lives (setting `store`; postgres: database_url)"
    )
    index.set_defaults(run=_index)

    migrate = commands.add_parser(
        "migrate",
        help="copy the local index (index_dir) into the PostgreSQL database (database_url), vectors as they are; "
        "it replaces what the database's index held",
    )
    migrate.set_defaults(run=_migrate)

    docs = commands.add_parser("docs", help="list the indexed documents")
    docs.set_defaults(run=_docs)

    ask = commands.add_parser("ask", help="answer questions; with none given, read them interactively")
    ask.add_argument("questions", nargs="*", metavar="QUESTION")
    ask.add_argument("--json", action="store_true", help="one JSON object per answer, one per line")
    ask.add_argument("--model", help="generator: a known name, a model folder or a .gguf file")
    ask.add_argument(
        "--conversation", action="store_true", help="treat each question as a follow-up to the ones before"
    )
    ask.set_defaults(run=_ask)

    evaluate = commands.add_parser(
        "eval", help="score the assistant on a question set (default: eval/seeds.json) or `eval squad PATH`"
    )
    evaluate.add_argument(
        "--set",
        "--questions",
        dest="sets",
        type=Path,
        nargs="+",
        help="question sets (JSON); default eval/seeds.json (tuned on) and eval/fresh.json (held out), side by side",
    )
    evaluate.add_argument(
        "--gate", type=Path, help="run only the gate's questions of eval/seeds.json; exit 1 below its thresholds (CI)"
    )
    evaluate.add_argument(
        "--quick",
        action="store_true",
        help=f"ask only {QUICK_EVAL} of seeds, fresh and manual (about 40 questions, stratified, frozen), or of the "
        "sets named by --set",
    )
    evaluate.add_argument("--json", type=Path, help="metrics and answers, one set (default: eval/results/NAME.json)")
    evaluate.add_argument("--html", type=Path, help="report with plots, one set (default: eval/results/NAME.html)")
    measured = evaluate.add_mutually_exclusive_group()
    measured.add_argument(
        "--record",
        type=Path,
        metavar="DIR",
        help="also write what each question saw and decided to DIR (run.json and one JSONL per set), to replay",
    )
    measured.add_argument(
        "--replay",
        type=Path,
        metavar="DIR",
        help="ask DIR's recorded questions again on their recorded drafts: only what follows generation runs; "
        "prints the metrics beside the recording's and every question whose verdict changed",
    )
    evaluate.set_defaults(run=_eval)

    prepare = commands.add_parser("prepare", help="verify and convert the models now, with progress")
    prepare.add_argument("--model", help="generator to prepare (default: the configured one)")
    prepare.add_argument(
        "--remeasure", action="store_true", help="measure the generation engines again (generator_engine auto)"
    )
    prepare.set_defaults(run=_prepare)

    suites = evaluate.add_subparsers(dest="suite", metavar="SUITE")
    squad = suites.add_parser("squad", help="SQuAD 2.0: paragraph retrieval, answer EM/F1, abstention")
    squad.add_argument("path", metavar="PATH", help="a SQuAD 2.0 JSON file")
    squad.add_argument("--articles", help="articles to use, 1-based, e.g. 1-8 or 1,3,5-7 (default: all)")
    squad.add_argument(
        "--limit", type=_count, help="answer a fixed random sample of N questions (default: all; 0: retrieval only)"
    )
    squad.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default: 0)")
    squad.add_argument("--json", metavar="FILE", help="also write the metrics to FILE as JSON")
    squad.add_argument(
        "--answer-style", choices=get_args(AnswerStyle), default="short", help="answer prompt (default: short)"
    )
    squad.set_defaults(run=_eval_squad)
    fidelity = suites.add_parser(
        "fidelity",
        help="read a recording's answers again under the current settings against full reading: KL divergence, "
        "top-1 and greedy agreement, log-likelihood (passage states, excerpts, quantization), without generating",
    )
    fidelity.add_argument("--against", type=Path, metavar="DIR", required=True, help="a recording (rag eval --record)")
    fidelity.add_argument(
        "--eval",
        type=Path,
        metavar="DIR2",
        help="a recording of the same questions made under the current settings: say how well fidelity predicts "
        "which verdicts changed",
    )
    fidelity.add_argument("--limit", type=_count, default=0, help="only the first N recorded answers (default: all)")
    fidelity.add_argument("--json", type=Path, help="also write every answer's figures to FILE")
    fidelity.set_defaults(run=_eval_fidelity)

    mcp = commands.add_parser(
        "mcp", help="serve the assistant to an MCP client over stdio (tools ask and search, documents as resources)"
    )
    mcp.set_defaults(run=_mcp)

    soak = commands.add_parser(
        "soak", help="N clients against a real server for M minutes; exit 1 on any 5xx, hang or leak"
    )
    soak.add_argument("--minutes", type=float, default=2.0, help="how long the clients keep asking (default: 2)")
    soak.add_argument("--clients", type=int, default=4, help="concurrent clients (default: 4)")
    soak.add_argument("--model", help="generator the server loads (default: the configured one)")
    soak.add_argument("--output", help="also write the Markdown report to this file")
    soak.add_argument(
        "--faults",
        action="store_true",
        help="against a team replica of its own (PostgreSQL, a model server), killing and freezing each in turn",
    )
    soak.set_defaults(run=_soak)

    bench = commands.add_parser("bench", help="measure every stage side by side; writes docs/BENCHMARKS.md")
    bench.add_argument("--reps", type=int, default=3, help="interleaved rounds per measurement")
    bench.add_argument(
        "--sections",
        nargs="+",
        help="machine generation embedding retrieval end-to-end (the default), stores model-server replicas (a team "
        "deployment: docs/BENCHMARKS-TEAM.md), integrations (every interface: docs/BENCHMARKS-INTEGRATIONS.md), "
        "ingestion (every file format: docs/BENCHMARKS-INGESTION.md)",
    )
    bench.add_argument("--output", default="docs/BENCHMARKS.md", help="Markdown report ('-' for stdout only)")
    bench.set_defaults(run=_bench)
    return parser


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _index(assistant: Assistant, args: argparse.Namespace) -> int:
    report = assistant.index(args.paths, rebuild=args.rebuild, progress=True)
    _print_index_report(report)
    if not assistant.store.is_built():
        return 1 if report.errors else 0
    _store_passage_states(assistant)
    if args.summaries:
        started = time.perf_counter()
        written = assistant.summarize_documents(progress=True)
        print(f"Summaries: {written} written in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


def _store_passage_states(assistant: Assistant) -> None:
    """Every passage's state for a small collection, so that each question reads only its own words."""
    started = time.perf_counter()
    computed = assistant.store_passage_states(progress=True)
    store = assistant.generator.passage_states if computed else None
    if store is not None:
        print(
            f"Passage states: {computed} computed in {time.perf_counter() - started:.1f} s "
            f"({store.count()} kept, {store.size_bytes() / 1024**2:.0f} MB in {store.folder})",
            file=sys.stderr,
        )


def _migrate(assistant: Assistant, args: argparse.Namespace) -> int:
    settings = assistant.settings
    if settings.database_url is None:
        raise ValueError("rag migrate copies into the database at database_url; set RAG_DATABASE_URL=postgresql://...")
    from rag.store.local import LocalStore
    from rag.store.postgres import PostgresStore

    started = time.perf_counter()
    local = LocalStore(settings.index_dir, assistant.embedder)
    snapshot = local.snapshot()
    target = PostgresStore(settings.database_url.get_secret_value(), assistant.embedder)
    written = target.copy_from(snapshot.chunk_groups(), snapshot.manifest.chunk_config, len(snapshot.documents))
    print(
        f"Migrated {len(snapshot.documents)} documents, {written} chunks (no re-embedding) from {settings.index_dir} "
        f'in {time.perf_counter() - started:.1f} s; use it with store = "postgres"',
        file=sys.stderr,
    )
    return 0


def _print_index_report(report: IndexReport) -> None:
    for error in report.errors:
        print(f"rag: skipped {error}", file=sys.stderr)
    sync = report.sync
    print(
        f"Index: {len(sync.added)} added, {len(sync.changed)} changed, {len(sync.retitled)} retitled, "
        f"{len(sync.removed)} removed, "
        f"{len(sync.unchanged)} unchanged; embedded {sync.embedded_chunks} chunks in {report.seconds:.1f} s",
        file=sys.stderr,
    )


def _docs(assistant: Assistant, args: argparse.Namespace) -> int:
    chunk_counts = assistant.store.chunk_counts()
    for doc in assistant.documents():
        print(f"{doc.doc_id}  {chunk_counts.get(doc.doc_id, 0):>4} chunks  {doc.source}  {doc.title}")
    return 0


def _mcp(assistant: Assistant, args: argparse.Namespace) -> int:
    """The MCP server on stdin/stdout, for a client that starts it (an IDE, an agent); logs go to stderr."""
    from contextlib import redirect_stdout

    from rag.serving.app import prepared_assistant
    from rag.serving.mcp_server import build_mcp_server
    from rag.serving.service import AnswerService
    from rag.serving.telemetry import configure_logging

    with redirect_stdout(sys.stderr):  # stdout carries the protocol: indexing and loading must not write there
        ready = prepared_assistant(assistant.settings)
    configure_logging(ready.settings.log_format)
    build_mcp_server(AnswerService(ready)).run("stdio")
    return 0


def _soak(assistant: Assistant, args: argparse.Namespace) -> int:
    from rag.cpu import cpu_info
    from rag.evaluation.faults import fault_report, fault_soak
    from rag.evaluation.soak import report, soak

    if args.faults:
        faulty = fault_soak(assistant.settings, args.minutes, args.clients)
        result, text = faulty, fault_report(faulty, assistant.settings, cpu_info().describe())
    else:
        result = soak(assistant.settings, args.minutes, args.clients)
        text = report(result, assistant.settings, cpu_info().describe())
    print(text)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    return 1 if result.problems else 0


def _prepare(assistant: Assistant, args: argparse.Namespace) -> int:
    """Verify and convert the models (with progress), choose the engine for this CPU, and load it."""
    from rag.generation.choice import engine_choice
    from rag.generation.transformers.prepare import generator_model_dir
    from rag.models import generator_gguf

    settings = assistant.settings
    assistant.embedder.encode(["warm up"])
    if settings.generator_engine in ("auto", "llama.cpp"):
        generator_gguf(settings.generator_model, settings.cache_dir)
    if settings.generator_engine in ("auto", "transformers"):
        generator_model_dir(settings.generator_model, settings.cache_dir)
    if settings.generator_engine == "auto":
        engine_choice(settings, remeasure=args.remeasure, verbose=True)
    assistant.generator.load()
    print(f"Ready: {settings.embedding_model}, {settings.generator_model}", file=sys.stderr)
    return 0


def _bench(assistant: Assistant, args: argparse.Namespace) -> int:
    from pathlib import Path

    from rag.evaluation.bench import DEFAULT_SECTIONS, SECTIONS, run_bench

    sections = tuple(args.sections or DEFAULT_SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown bench sections {sorted(unknown)}; choose from {' '.join(SECTIONS)}")
    text = run_bench(assistant.settings, None if args.output == "-" else Path(args.output), args.reps, sections)
    print(text)
    return 0


def _ask(assistant: Assistant, args: argparse.Namespace) -> int:
    if not assistant.store.is_built():
        print(f"rag: no index yet; indexing {assistant.settings.default_corpus}/ first", file=sys.stderr)
        _print_index_report(assistant.index(progress=True))
        _store_passage_states(assistant)
    assistant.warm_up()
    interactive = not args.questions
    if interactive and sys.stdin.isatty():
        print("Ask a question about your documents (Ctrl-D to quit).", file=sys.stderr)
    questions = args.questions or _read_questions()
    history: list[Turn] = []
    for question in questions:
        try:
            answer = assistant.ask(question, history)
        except QuestionError as exc:
            print(f"rag: error: {exc}", file=sys.stderr)
            if not interactive:
                return 2
            continue
        if interactive or args.conversation:
            history.append(Turn(answer.question, answer.answer))
        print(json.dumps(answer.to_dict(), ensure_ascii=False) if args.json else _render(answer), flush=True)
    return 0


DEFAULT_EVAL_SET = Path("eval/seeds.json")  # the questions tuned on
HELD_OUT_EVAL_SET = Path("eval/fresh.json")  # written before the changes they measure; never tuned on
MANUAL_EVAL_SET = Path("eval/manual.json")  # the same, over another kind of text: the PostgreSQL 15 manual
QUICK_EVAL = Path("eval/quick.toml")  # a fixed stratified sample of the three, to choose between changes


def _eval(assistant: Assistant, args: argparse.Namespace) -> int:
    from rag.evaluation.question_set import (
        eval_settings,
        index_own,
        load_gate,
        load_question_set,
        load_quick,
        run_question_set,
        side_by_side,
        terminal_table,
    )
    from rag.evaluation.recording import Recorder, RecordingEngine, Replay, ReplayEngine, load_recording
    from rag.evaluation.report import write_html

    gate = load_gate(args.gate) if args.gate else None
    recording = load_recording(args.replay) if args.replay else None
    default_sets = [DEFAULT_EVAL_SET] if gate else [DEFAULT_EVAL_SET, HELD_OUT_EVAL_SET, MANUAL_EVAL_SET]
    paths = args.sets or default_sets
    if args.quick and gate:
        raise EvalSetError("--quick asks its own questions: leave out --gate")
    if recording is not None:  # the recorded sets and questions, whatever else was asked for
        if args.sets or gate or args.quick:
            raise EvalSetError("--replay asks the recording's own questions: leave out --set, --gate and --quick")
        paths = [Path(entry["path"]) for entry in recording.header["sets"].values()]
    if (args.json or args.html) and len(paths) > 1:
        raise EvalSetError("--json and --html name one report: give one --set with them")
    question_sets = [load_question_set(path) for path in paths]
    if not args.sets:  # a default set whose documents are not installed is skipped, saying how to get them
        for question_set, path in zip(question_sets, paths, strict=True):
            if not question_set.corpus.is_dir():
                print(
                    f"Skipped {path}: its documents ({question_set.corpus}) are not here; scripts/install.sh "
                    "installs them",
                    file=sys.stderr,
                )
        paths = [p for p, q in zip(paths, question_sets, strict=True) if q.corpus.is_dir()]
        question_sets = [q for q in question_sets if q.corpus.is_dir()]
    if gate:
        paths, question_sets = paths[:1], [question_sets[0].subset(gate.questions)]
    if args.quick:  # of the sets asked for (default: all three), the quick sample's questions
        quick = load_quick(QUICK_EVAL)
        paths = [p for p, q in zip(paths, question_sets, strict=True) if q.name in quick]
        question_sets = [q.subset(quick[q.name]) for q in question_sets if q.name in quick]
    if recording is not None:
        question_sets = [q.subset(recording.header["sets"][q.name]["questions"]) for q in question_sets]
    # The engine the eval asks through: the configured one as it is, or wrapped to record or to replay
    engine: RecordingEngine | ReplayEngine | None = None
    recorder, replay = None, None
    if args.record:
        engine = RecordingEngine(assistant.generator)
        recorder = Recorder(args.record, _this_run(assistant, engine.name), engine)
    elif recording is not None:
        recording.check_matches(_this_run(assistant, assistant.generator.name))
        engine = ReplayEngine(assistant.generator, recording.drafts(), recording.log_odds())
        replay = Replay(recording, engine)
    evaluators: dict[str, Assistant] = {}  # one index per corpus, one loaded model for all
    reports = []
    for question_set, path in zip(question_sets, paths, strict=True):
        settings = eval_settings(assistant.settings, question_set)
        key = settings.model_dump_json()
        if key not in evaluators:
            shared = next(iter(evaluators.values())).generator if evaluators else engine
            evaluators[key] = Assistant(settings, generator=shared)
        evaluator = evaluators[key]
        _print_index_report(index_own(evaluator, progress=True))
        on_result = None
        if engine is not None:  # warmed up here, so the warm-up's model call is not one question's
            evaluator.warm_up()
            engine.take_calls()
        if recorder is not None:
            recorder.start_set(question_set.name, str(path), [q.id for q in question_set.questions])
            on_result = recorder.on_result(question_set.name)
        elif replay is not None:
            on_result = replay.on_result(question_set.name)
        report = run_question_set(evaluator, question_set, progress=True, on_result=on_result, warm_up=engine is None)
        reports.append(report)
        if recorder is not None:
            recorder.finish_set(question_set.name, report.metrics, report.seconds)
        if replay is not None:
            print(replay.compare(report))
            continue  # a replay writes no report over the eval's own
        results = Path("eval/results")
        suffix = "-gate" if gate else "-quick" if args.quick else ""
        json_path = args.json or results / f"{report.name}{suffix}.json"
        html_path = args.html or results / f"{report.name}{suffix}.html"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        write_html(report, html_path)
        print(terminal_table(report))
        print(f"Wrote {json_path} and {html_path}")
    if len(reports) > 1:
        print(side_by_side(reports))
    if gate:
        failures = gate.failures(reports[0].metrics)
        for failure in failures:
            print(f"rag: eval gate failed: {failure}", file=sys.stderr)
        if failures:
            return 1
        print(f"Eval gate passed ({args.gate})")
    return 0


def _this_run(assistant: Assistant, engine: str) -> dict[str, Any]:
    from rag.cpu import cpu_info
    from rag.evaluation.recording import run_header

    return run_header(assistant.settings.model_dump(mode="json"), engine, cpu_info().describe())


def _eval_fidelity(assistant: Assistant, args: argparse.Namespace) -> int:
    from rag.evaluation.fidelity import against_eval, iter_answers, measure_fidelity
    from rag.evaluation.recording import load_recording

    recording = load_recording(args.against)
    engine = assistant.generator
    recording.check_matches(_this_run(assistant, engine.name))
    engine_id = str(getattr(engine, "state_id", engine.name))
    report = measure_fidelity(engine, recording, engine_id, limit=args.limit, progress=True)
    states = "passage states" if engine.passage_states is not None else "full reading"
    print(f"Fidelity of this configuration ({engine.name}, {states}) against full reading of {args.against}:")
    print(report.table())
    print("Furthest from full reading:")
    for line in list(iter_answers(report))[:10]:
        print(line)
    if args.eval:
        print(against_eval(report, recording, load_recording(args.eval)))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        print(f"Wrote {args.json}")
    return 0


def _eval_squad(assistant: Assistant, args: argparse.Namespace) -> int:
    squad = load_squad(args.path, args.articles)
    report = run_squad(
        squad, assistant.settings, limit=args.limit, seed=args.seed, answer_style=args.answer_style, progress=True
    )
    print(report.table())
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


def _read_questions() -> Iterator[str]:
    while True:
        if sys.stdin.isatty():
            print("? ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def _render(answer: Answer) -> str:
    lines = [answer.answer]
    if answer.citations:
        lines.append("")
        lines.append("Sources:")
    for c in answer.citations:
        doc_offset = c.quote_start - c.start
        quote = c.text[doc_offset : doc_offset + (c.quote_end - c.quote_start)]
        place = f", {c.place}" if c.place else ""
        lines.append(f"  [{c.n}] {c.title}{place} — {c.source} (chars {c.start}-{c.end})")
        lines.append(f'      "{quote}"')
    t = answer.timings
    lines.append(
        f"({t.retrieve_ms:.0f} ms retrieval · {t.first_token_ms / 1000:.1f} s first token · {t.total_ms / 1000:.1f} s)"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
