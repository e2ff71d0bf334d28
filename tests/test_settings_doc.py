"""docs/settings.md is generated from the settings class; it must be what scripts/settings_doc.py prints now."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "settings_doc.py"
DOC = ROOT / "docs" / "settings.md"


def _generator():
    spec = importlib.util.spec_from_file_location("settings_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.settings_markdown


def test_docs_settings_md_is_what_the_script_generates() -> None:
    expected = _generator()()
    actual = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    assert actual == expected, "docs/settings.md is out of date: run .venv/bin/python scripts/settings_doc.py --write"


def test_every_setting_is_documented_with_its_environment_variable() -> None:
    text = _generator()()
    for name in Settings.model_fields:
        assert f"| `{name}` | `RAG_{name.upper()}` |" in text, name
