"""E-books (.epub): the chapters in reading (spine) order, each cited by its heading."""

from __future__ import annotations

import zipfile
from pathlib import Path

from rag.ingestion.formats.base import TITLE_MAX_CHARS, Format, Joiner, Loaded, Skip, decode, one_line
from rag.ingestion.formats.html import parse, visible_text


class Epub(Format):
    name = "EPUB"
    extensions = (".epub",)
    zip_mimetype = "application/epub+zip"
    no_text = "no text in any chapter"

    def load(self, path: Path) -> Loaded:
        import ebooklib
        from ebooklib import epub

        try:
            book = epub.read_epub(str(path), options={"ignore_ncx": True})
        except (zipfile.BadZipFile, epub.EpubException, KeyError) as exc:
            raise Skip(f"not a valid .epub file ({one_line(exc)})", "corrupt") from None
        joiner = Joiner()
        for number, (idref, _linear) in enumerate(book.spine, start=1):
            item = book.get_item_with_id(idref)
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
                continue  # the table of contents repeats the chapters' headings, and says nothing
            try:
                tree = parse(decode(item.get_content()))
            except Skip:
                continue
            heading = next(
                (h.text_content().strip() for h in tree.iter("h1", "h2", "h3") if h.text_content().strip()), ""
            )
            label = " ".join(heading.split())[: TITLE_MAX_CHARS // 2] or f"part {number}"
            joiner.add(visible_text(tree), label)
        titles = book.get_metadata("DC", "title")
        return joiner.loaded(titles[0][0] if titles else None)
