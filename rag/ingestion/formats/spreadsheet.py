"""Spreadsheets (.xlsx, .ods): every sheet, each row read with its header cells, cited as "sheet NAME".

A row "Orion, 870000" under the header "Project, Budget (EUR)" becomes "Orion; Budget (EUR): 870000.":
a line a retriever and a model can read as a fact, where a bare grid of numbers says nothing.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterable
from pathlib import Path

from rag.ingestion.formats.base import Format, Joiner, Loaded, Skip, row_lines

MAX_CELLS = 2_000_000  # per file: past this a sheet is a data dump, not a document; the rest is cut


class Xlsx(Format):
    name = "XLSX"
    extensions = (".xlsx", ".xlsm")
    zip_members = ("xl/workbook.xml",)
    no_text = "no cell holds a value on any sheet"

    def load(self, path: Path) -> Loaded:
        from openpyxl import load_workbook

        try:
            book = load_workbook(path, read_only=True, data_only=True)  # streamed; formulas as last computed
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise Skip(f"not a valid .xlsx file ({exc}; old binary .xls files are not supported)", "corrupt") from None
        try:
            sheets = [(sheet.title, sheet.iter_rows(values_only=True)) for sheet in book.worksheets]
            loaded = read_sheets(sheets)
        finally:
            book.close()
        return Loaded(loaded.text, book.properties.title or loaded.title, loaded.places)


class Ods(Format):
    name = "ODS"
    extensions = (".ods",)
    zip_mimetype = "application/vnd.oasis.opendocument.spreadsheet"
    no_text = "no cell holds a value on any sheet"

    def load(self, path: Path) -> Loaded:
        import pandas

        frames = pandas.read_excel(path, sheet_name=None, header=None, engine="odf", dtype=object)
        return read_sheets((name, frame.itertuples(index=False, name=None)) for name, frame in frames.items())


def read_sheets(sheets: Iterable[tuple[str, Iterable[tuple[object, ...]]]]) -> Loaded:
    """Each sheet's first non-empty row is its header; the sheet is a labelled part of the text."""
    joiner = Joiner()
    cells = 0
    for name, rows in sheets:
        table: list[list[str]] = []
        for row in rows:
            cells += len(row)
            if cells > MAX_CELLS:
                break
            values = [cell_text(value) for value in row]
            while values and not values[-1]:
                values.pop()
            if values:
                table.append(values)
        if table:
            joiner.add(
                f"{name}\n" + "\n".join(row_lines(table[0], table[1:]) or [" | ".join(table[0])]), f"sheet {name}"
            )
        if cells > MAX_CELLS:
            break
    return joiner.loaded(title_from_text=False)


def cell_text(value: object) -> str:
    """A cell as a person reads it: 870000 not 870000.0, a date without a midnight time, no NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime) and value.time() == dt.time():
        return value.date().isoformat()
    return " ".join(str(value).split())
