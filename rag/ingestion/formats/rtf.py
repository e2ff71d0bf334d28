"""Rich Text Format (.rtf): the text without its control words."""

from __future__ import annotations

from pathlib import Path

from rag.ingestion.formats.base import Format, Loaded, Skip, first_line


class Rtf(Format):
    name = "RTF"
    extensions = (".rtf",)
    signatures = (b"{\\rtf",)

    def load(self, path: Path) -> Loaded:
        from striprtf.striprtf import rtf_to_text

        data = path.read_bytes()
        if not data.lstrip().startswith(b"{\\rtf"):
            raise Skip("not an RTF file (it does not start with {\\rtf)", "corrupt")
        # RTF is 7-bit by definition (other characters are \'xx or \uN escapes); cp1252 reads any stray byte
        text = rtf_to_text(data.decode("cp1252", errors="replace"), errors="replace")
        return Loaded(text.strip(), first_line(text))
