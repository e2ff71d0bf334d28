"""Delimited tables (.csv, .tsv): the dialect sniffed, each row read with its header cells."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rag.ingestion.formats.base import Format, Loaded, decode, row_lines
from rag.ingestion.formats.spreadsheet import MAX_CELLS

SNIFF_BYTES = 64 * 1024


class Delimited(Format):
    name = "CSV"
    extensions = (".csv", ".tsv")
    no_text = "no cell holds a value"

    def load(self, path: Path) -> Loaded:
        text = decode(path.read_bytes())
        sample = text[:SNIFF_BYTES]
        try:
            dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
        except csv.Error:  # one column, or too irregular to tell: the extension says
            dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
        rows: list[list[str]] = []
        cells = 0
        for row in csv.reader(io.StringIO(text), dialect):
            cells += len(row)
            if cells > MAX_CELLS:
                break
            if any(cell.strip() for cell in row):
                rows.append([" ".join(cell.split()) for cell in row])
        if not rows:
            return Loaded("")
        has_header = len(rows) > 1 and _has_header(sample)
        lines = row_lines(rows[0], rows[1:]) if has_header else row_lines([], rows)
        return Loaded("\n".join(lines))


def _has_header(sample: str) -> bool:
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return True  # a directory or a budget almost always names its columns
