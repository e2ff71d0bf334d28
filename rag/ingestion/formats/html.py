"""HTML pages: the visible text only, spaced as a browser shows it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from rag.ingestion.formats.base import Format, Loaded, Skip, decode

if TYPE_CHECKING:
    from lxml.html import HtmlElement

NO_TEXT = "no visible text in the page"


class Html(Format):
    name = "HTML"
    extensions = (".html", ".htm", ".xhtml")
    no_text = NO_TEXT

    def load(self, path: Path) -> Loaded:
        data = path.read_bytes()
        tree = parse(decode(data, fallback_encoding=_declared_charset(data)))
        heading = tree.find(".//h1")
        title = tree.findtext(".//title") or (heading.text_content() if heading is not None else None)
        return Loaded(visible_text(tree), title)


def parse(markup: str) -> HtmlElement:
    """The page's tree without scripts, styles and templates; a page with nothing to parse is `Skip`ped."""
    from lxml.etree import ParserError
    from lxml.html import document_fromstring

    markup = re.sub(r"^\s*<\?xml[^>]*\?>", "", markup)  # lxml rejects str input with an XML declaration
    try:
        tree = document_fromstring(markup)
    except ParserError:
        raise Skip(NO_TEXT, "no_text") from None
    for hidden in tree.xpath("//script | //style | //noscript | //template"):
        hidden.drop_tree()
    return tree


def visible_text(tree: HtmlElement) -> str:
    """inscriptis keeps the layout of lists and tables. Its strict CSS profile spaces inline elements as a
    browser does: the default pads each one with spaces, so generated manuals' `<span>PostgreSQL</span>.`
    read "PostgreSQL ." and their sentences no longer matched the page's own."""
    from inscriptis import Inscriptis
    from inscriptis.css_profiles import CSS_PROFILES
    from inscriptis.model.config import ParserConfig

    return Inscriptis(tree, ParserConfig(css=CSS_PROFILES["strict"])).get_text().strip()


def html_text(markup: str) -> str:
    """The visible text of an HTML fragment (a mail's body, an e-book's chapter); "" when it has none."""
    try:
        return visible_text(parse(markup))
    except Skip:
        return ""


def _declared_charset(data: bytes) -> str | None:
    match = re.search(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", data[:4096], re.IGNORECASE)
    return match.group(1).decode("ascii") if match else None
