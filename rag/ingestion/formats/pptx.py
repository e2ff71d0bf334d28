"""PowerPoint decks (.pptx): each slide's title, text boxes, tables and speaker notes, cited as "slide N"."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from rag.ingestion.formats.base import Format, Joiner, Loaded, Skip, row_lines

if TYPE_CHECKING:
    from pptx.shapes.base import BaseShape


class Pptx(Format):
    name = "PPTX"
    extensions = (".pptx",)
    zip_members = ("ppt/presentation.xml",)
    no_text = "no text on any slide"

    def load(self, path: Path) -> Loaded:
        from pptx import Presentation
        from pptx.exc import PackageNotFoundError

        try:
            deck = Presentation(str(path))
        except (zipfile.BadZipFile, PackageNotFoundError):
            raise Skip(
                "not a valid .pptx file (not a zip archive; old binary .ppt files are not supported)", "corrupt"
            ) from None
        joiner = Joiner()
        first_title = None
        for number, slide in enumerate(deck.slides, start=1):
            title_shape = slide.shapes.title
            title = title_shape.text_frame.text.strip() if title_shape is not None else ""
            first_title = first_title or title or None
            title_id = title_shape.shape_id if title_shape is not None else None
            blocks = [title] + [text for shape in slide.shapes if shape.shape_id != title_id for text in _texts(shape)]
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    blocks.append(f"Notes: {notes.text.strip()}")
            joiner.add("\n".join(b for b in blocks if b), f"slide {number}")
        return joiner.loaded(deck.core_properties.title or first_title)


def _texts(shape: BaseShape) -> list[str]:
    """A shape's text in reading order: a group's members, a table's rows read with their header cells."""
    from pptx.shapes.group import GroupShape

    if isinstance(shape, GroupShape):
        return [text for member in shape.shapes for text in _texts(member)]
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
        return ["\n".join(row_lines(rows[0], rows[1:]))] if len(rows) > 1 else [" | ".join(rows[0]) if rows else ""]
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return [shape.text_frame.text.strip()]
    return []
