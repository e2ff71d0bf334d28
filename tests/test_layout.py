"""The package is layered by pipeline stage: no module imports from a stage above its own.

A reader finds where a backend plugs in from the folder names only if the folders mean something;
an import from a later stage (say, the store reaching into answering) would make them mean nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rag"
# Lower stages first; what every stage shares sits at the bottom, the front ends at the top.
STAGES = (
    ("types", "settings", "lexical", "models", "cpu", "disk", "dependencies"),
    ("ingestion",),
    ("embedding",),
    ("store",),
    ("retrieval",),
    ("generation",),
    ("answering",),
    ("assistant",),
    ("serving", "evaluation"),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}


def _stage(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path) -> set[str]:
    """Every rag module a file imports, at the top, inside functions and under TYPE_CHECKING."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rag."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("rag."))
    return found


def test_every_module_belongs_to_a_stage() -> None:
    top = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    assert top - {"__init__", "__pycache__", "static"} == set(RANK)


def test_no_module_imports_from_a_stage_above_its_own() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("rag", *path.relative_to(PACKAGE).with_suffix("").parts))
        if module == "rag.__init__":
            continue
        own = _stage(module)
        for imported in _imports(path):
            other = _stage(imported)
            same_stage = other == own or RANK[other] == RANK[own] == 0
            if not same_stage and RANK[other] >= RANK[own]:
                upward.append(f"{module} imports {imported}")
    assert upward == []


# The routers every client reaches the assistant through; each asks `AnswerService` (which asks the one
# `Assistant`), so none may reach a pipeline stage itself and grow a second copy of retrieval or prompting.
FRONT_ENDS = ("api", "openai_api", "mcp_server")
PIPELINE_STAGES = {"ingestion", "embedding", "store", "retrieval", "generation", "answering"}


def test_the_front_ends_reach_the_pipeline_only_through_the_answer_service() -> None:
    reaching = {
        front_end: sorted(m for m in _imports(PACKAGE / "serving" / f"{front_end}.py") if _stage(m) in PIPELINE_STAGES)
        for front_end in FRONT_ENDS
    }
    assert reaching == {front_end: [] for front_end in FRONT_ENDS}
    for front_end in FRONT_ENDS:
        assert "rag.serving.service" in _imports(PACKAGE / "serving" / f"{front_end}.py"), front_end
