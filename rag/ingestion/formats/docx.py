"""Word documents (.docx): paragraphs and tables in document order."""

from __future__ import annotations

import zipfile
from pathlib import Path

from rag.ingestion.formats.base import Format, Loaded, Skip, first_line


class Docx(Format):
    name = "DOCX"
    extensions = (".docx",)
    zip_members = ("word/document.xml",)
    no_text = "no text in the document"

    def load(self, path: Path) -> Loaded:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
        from docx.text.paragraph import Paragraph

        try:
            document = docx.Document(str(path))
        except (zipfile.BadZipFile, PackageNotFoundError):  # python-docx says "package not found" for non-zips
            raise Skip(
                "not a valid .docx file (not a zip archive; old binary .doc files are not supported)", "corrupt"
            ) from None
        blocks: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Paragraph):
                blocks.append(block.text.strip())
            else:
                rows = (dedupe([cell.text.strip() for cell in row.cells]) for row in block.rows)
                blocks.append("\n".join(" | ".join(cell for cell in row if cell) for row in rows).strip())
        text = "\n\n".join(block for block in blocks if block)
        return Loaded(text, document.core_properties.title or first_line(text))


def dedupe(cells: list[str]) -> list[str]:
    """Merged table cells repeat their text in every grid cell they span; keep it once."""
    return [cell for i, cell in enumerate(cells) if i == 0 or cell != cells[i - 1]]
