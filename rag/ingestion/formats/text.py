"""Plain text and Markdown: read as written, so citation offsets index the file's own characters."""

from __future__ import annotations

import re
from pathlib import Path

from rag.ingestion.formats.base import Format, Loaded, decode, first_line


class PlainText(Format):
    name = "text"
    extensions = (".txt",)

    def load(self, path: Path) -> Loaded:
        text = decode(path.read_bytes())
        return Loaded(text, first_line(text))


class Markdown(Format):
    name = "Markdown"
    extensions = (".md", ".markdown")

    def load(self, path: Path) -> Loaded:
        text = decode(path.read_bytes())
        return Loaded(text, markdown_title(text))


def markdown_title(text: str) -> str | None:
    """The first level-1 heading (ATX or setext), else the first heading of any level; code is skipped."""
    prose = re.sub(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", "", text, flags=re.MULTILINE | re.DOTALL)
    level_one = re.search(
        r"^ {0,3}(?:#[ \t]+(.+?)(?:[ \t]+#+)?|(\S.*?)[ \t]*\r?\n {0,3}=+)[ \t]*$", prose, re.MULTILINE
    )
    if level_one:
        return level_one.group(1) or level_one.group(2)
    any_level = re.search(r"^ {0,3}#{2,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", prose, re.MULTILINE)
    return any_level.group(1) if any_level else None
