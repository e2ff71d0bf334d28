"""PDF: each page's text layer, and OCR for a page that has none, so a half-scanned PDF is read whole."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rag.ingestion.formats.base import Format, Joiner, Loaded, Skip, one_line
from rag.ingestion.formats.ocr import MIN_PAGE_LETTERS, Tesseract, letters

if TYPE_CHECKING:
    import pypdfium2

OCR_DPI = 150  # enough for body text (0.13% character errors measured at 11 pt), and half the time of 300
# ~6 s a page on 2 cores: a scan longer than this is read up to here, and the log says where it stopped
OCR_MAX_PAGES = 200

log = logging.getLogger(__name__)


class Pdf(Format):
    name = "PDF"
    extensions = (".pdf",)
    signatures = (b"%PDF",)

    def load(self, path: Path) -> Loaded:
        """Pages are labelled "p. N" for citations; a page whose text layer holds fewer than
        `MIN_PAGE_LETTERS` letters is rendered at `OCR_DPI` and read by OCR."""
        from pypdf import PdfReader

        with _quiet_pypdf():
            reader = PdfReader(path)
            if reader.is_encrypted:
                try:
                    unlocked = reader.decrypt("")  # many "protected" PDFs only restrict printing/copying
                except Exception as exc:  # e.g. AES without the optional `cryptography` package
                    raise Skip(f"encrypted PDF that cannot be opened ({one_line(exc)})", "encrypted") from None
                if not unlocked:
                    raise Skip("encrypted PDF: needs a password", "encrypted")
            pages = [(page.extract_text() or "").strip() for page in reader.pages]
            try:
                title = reader.metadata.title if reader.metadata else None
            except Exception:  # a broken info dictionary only costs us the title
                title = None
        scanned = [i for i, page in enumerate(pages) if letters(page) < MIN_PAGE_LETTERS]
        if scanned:
            pages = self._read_scans(path, pages, scanned)
        joiner = Joiner()
        for number, page in enumerate(pages, start=1):
            joiner.add(page, f"p. {number}")
        if not joiner.parts:
            raise Skip(
                f"no extractable text in {len(pages)} page(s): blank, or scans where OCR found fewer than "
                f"{MIN_PAGE_LETTERS} letters a page",
                "no_text",
            )
        return joiner.loaded(title if isinstance(title, str) else None)

    def _read_scans(self, path: Path, pages: list[str], scanned: list[int]) -> list[str]:
        import pypdfium2

        try:
            engine = Tesseract()
        except Skip as skip:
            if len(scanned) < len(pages):
                return pages  # the pages with text are still worth indexing
            reason = f"no extractable text in {len(pages)} page(s): scanned or image-only, and it {skip}"
            raise Skip(reason, "no_text") from None
        read = list(pages)
        document = pypdfium2.PdfDocument(str(path))
        try:
            drawn = [i for i in scanned if _draws_anything(document, i)]  # a blank page is not worth a render
            if len(drawn) > OCR_MAX_PAGES:
                log.warning("%s: OCR reads %d of its %d scanned pages", path, OCR_MAX_PAGES, len(drawn))
            for i in drawn[:OCR_MAX_PAGES]:
                page = document[i]
                image = page.render(scale=OCR_DPI / 72, grayscale=True).to_pil()
                page.close()
                text = engine.read(image, dpi=OCR_DPI)
                if letters(text) >= MIN_PAGE_LETTERS:
                    read[i] = text
        finally:
            document.close()
        return read


def _draws_anything(document: pypdfium2.PdfDocument, index: int) -> bool:
    page = document[index]
    try:
        return next(page.get_objects(max_depth=1), None) is not None
    finally:
        page.close()


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """pypdf logs a warning per quirk of a damaged PDF; the outcome is reported once, as an IngestError."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
