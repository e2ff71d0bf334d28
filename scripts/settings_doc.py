"""docs/settings.md, generated from the settings class (rag.settings.Settings).

Every setting's name, environment variable, type, default and description come from the class itself
(its fields, their constraints and `Field(description=...)`), grouped under the comment headings of
rag/settings.py. Prints the Markdown; `--write` writes docs/settings.md. tests/test_settings_doc.py fails
when docs/settings.md differs from what this prints, so after changing a setting run:

    .venv/bin/python scripts/settings_doc.py --write
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from pathlib import Path
from types import NoneType, UnionType

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag.settings import CONFIG_ENV, DEFAULT_CONFIG_FILE, Settings  # noqa: E402

OUTPUT = ROOT / "docs" / "settings.md"

# Defaults computed when the settings are read (default_factory), in words: the value depends on the machine.
COMPUTED_DEFAULTS = {"cache_dir": "`$XDG_CACHE_HOME/rag`, else `~/.cache/rag`"}

# What a setting without a description in the class is for, until the class has one (a description there wins).
NOTES = {
    "index_dir": "The local index (`store = local`); with any store, the uploads (`uploads/`) and the kept "
    "summaries (`summaries.json`).",
    "default_corpus": "What `rag index` with no paths (and a first start with no index) indexes, with the uploads.",
    "embedding_model": "A name from `rag.models.REGISTRY`, a local Hugging Face folder or a `.gguf` path.",
    "generator_model": "A name from `rag.models.REGISTRY`, a local Hugging Face folder or a `.gguf` path.",
    "max_file_mb": "A larger file is refused with a one-line error; the rest of the batch goes on.",
    "chunk_size": "Characters per chunk; boundaries snap to sentences.",
    "chunk_overlap": "Characters shared by neighbouring chunks; smaller than chunk_size.",
    "top_k": "Passages the model reads for a fact question.",
    "candidate_k": "Candidates the store returns per search (dense and BM25) before fusion into the top passages.",
    "embed_batch_size": "Chunks embedded per batch.",
    "max_new_tokens": "New tokens for an answer.",
    "history_turns": "Earlier exchanges of a conversation read with a follow-up.",
    "max_question_chars": "Longer questions are refused (HTTP 422; 400 on /v1).",
    "support_threshold": "The support score a sentence needs against a passage for that passage to support it.",
    "min_relevance": "When no passage's cosine to the question reaches this, the off-topic step abstains.",
    "host": "Where `python app.py` listens (also `--host`).",
    "port": "Where `python app.py` listens (also `--port`).",
}

INTRO = f"""\
# Settings

Generated from `rag.settings.Settings` by `scripts/settings_doc.py`; do not edit by hand (run
`.venv/bin/python scripts/settings_doc.py --write` after changing a setting; `tests/test_settings_doc.py`
fails while this file is out of date).

One settings object holds every tunable. Each setting takes the first of these that gives it:

1. an environment variable `{Settings.model_config.get("env_prefix", "")}<NAME>`, in any case (`RAG_TOP_K=6`,
   `RAG_INDEX_DIR=/srv/rag-index`, `RAG_GENERATOR_MODEL=smollm2-135m`);
2. a TOML file: the one `{CONFIG_ENV}` names (it must exist), else `{DEFAULT_CONFIG_FILE}` in the working directory
   if there is one;
3. the default below.

No `.env` file and no secrets directory are read. An unknown key in the TOML file and an invalid value
anywhere are refused at start with one line naming each setting and what is wrong, never the value
given (a `database_url` or an API key would end up in a terminal or a log). A list setting
({{lists}}) is a TOML list in the file, and a JSON list or comma-separated values in its environment
variable (`RAG_DISABLED_CHECKS="answer check"`). A boolean's variable takes `true`/`false` (or `1`/`0`).
Secrets (marked so below) are never printed. Some settings are checked together: `chunk_overlap` must be
smaller than `chunk_size`, `generator_engine = "openai"` needs `engine_url`, `store = "postgres"` needs
`database_url`.

```toml
# rag.toml
host = "0.0.0.0"
allowed_origins = ["https://intranet.example.com"]
admin_token = "change-me"
```

How the settings fit together: the server's in [guide.md](guide.md) and [api.md](api.md), a team
deployment's (`store`, `database_url`, `generator_engine = "openai"`, `engine_url`, the timeouts) in
[deploy.md](deploy.md), the measurements behind the defaults in [speed.md](speed.md) and
[evaluation.md](evaluation.md).
"""


def _sections() -> dict[str, str]:
    """Each field's section: the last `    # Heading` comment above it in the class body."""
    sections: dict[str, str] = {}
    heading = "General"
    for line in inspect.getsource(Settings).splitlines():
        comment = re.match(r"^    # (.+)$", line)
        if comment:
            heading = comment.group(1).strip()
            continue
        field = re.match(r"^    (\w+)\s*:", line)
        if field and field.group(1) in Settings.model_fields:
            sections[field.group(1)] = heading
    return sections


def _heading(comment: str) -> str:
    """'Models: a name from ...' -> 'Models'; a heading keeps its own words up to the first colon."""
    return comment.split(":", 1)[0].strip()


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin in (typing.Union, UnionType):
        rest = [a for a in args if a is not NoneType]
        named = " or ".join(_type_name(a) for a in rest)
        return f"{named}, optional" if len(rest) < len(args) else named
    if origin is list:
        (item,) = args
        if typing.get_origin(item) is typing.Literal:
            return "list of " + ", ".join(f"`{value}`" for value in typing.get_args(item))
        return f"list of {_type_name(item)}s"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path", SecretStr: "secret"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: FieldInfo) -> str:
    signs = {
        annotated_types.Ge: ("ge", "≥"),
        annotated_types.Gt: ("gt", ">"),
        annotated_types.Le: ("le", "≤"),
        annotated_types.Lt: ("lt", "<"),
    }
    parts = []
    for item in info.metadata:
        for kind, (attribute, sign) in signs.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {_number(getattr(item, attribute))}")
    return ", ".join(parts)


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return str(value)


def _default(name: str, info: FieldInfo) -> str:
    if info.default_factory is not None:
        return COMPUTED_DEFAULTS.get(name, "computed at start")
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return "unset"
    return f"`{_toml(info.default)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def settings_markdown() -> str:
    """The whole of docs/settings.md."""
    unknown = (set(NOTES) | set(COMPUTED_DEFAULTS)) - set(Settings.model_fields)
    if unknown:
        raise SystemExit(f"scripts/settings_doc.py has notes for settings that no longer exist: {sorted(unknown)}")
    fields = Settings.model_fields
    prefix = Settings.model_config.get("env_prefix", "")
    lists = ", ".join(f"`{name}`" for name, info in fields.items() if typing.get_origin(info.annotation) is list)
    out = [INTRO.replace("{lists}", lists)]
    sections = _sections()
    grouped: dict[str, list[str]] = {}
    for name in fields:
        grouped.setdefault(_heading(sections.get(name, "General")), []).append(name)
    for heading, names in grouped.items():
        out.append(f"## {heading}\n")
        out.append("| setting | environment variable | type | default | what |")
        out.append("|---|---|---|---|---|")
        for name in names:
            info = fields[name]
            kind = _type_name(info.annotation)
            bounds = _bounds(info)
            if bounds:
                kind = f"{kind}, {bounds}"
            description = info.description or NOTES.get(name, "")
            row = [f"`{name}`", f"`{prefix}{name.upper()}`", kind, _default(name, info), description]
            out.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {OUTPUT.relative_to(ROOT)} instead of printing")
    args = parser.parse_args()
    text = settings_markdown()
    if args.write:
        OUTPUT.write_text(text, encoding="utf-8")
        print(f"wrote {OUTPUT.relative_to(ROOT)}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
