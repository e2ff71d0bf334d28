"""Text from a picture of text, offline: Debian's Tesseract 5 (`tesseract-ocr`, installed by scripts/install.sh).

Chosen over RapidOCR by measurement on rendered scans of the seeds (scripts/ocr_compare.py,
docs/formats.md): 0.13% character errors on clean 150-dpi pages against RapidOCR's 21.6%, which
drops words and cuts lines short; Tesseract takes ~6-7 s a page on 2 cores, within the 10 s budget.
"""

from __future__ import annotations

import io
import shutil
import subprocess

from PIL import Image

from rag.ingestion.formats.base import Skip

# Fewer recognised letters than this on a page is noise (a photo, a logo, a blank scan), not text.
MIN_PAGE_LETTERS = 20
PAGE_TIMEOUT_S = 120


class Tesseract:
    """One `tesseract` process per page; the page goes in as PNG on stdin, the text comes back on stdout."""

    def __init__(self) -> None:
        if shutil.which("tesseract") is None:
            raise Skip(
                "needs OCR, and tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng, "
                "or bash scripts/install.sh)",
                "no_text",
            )

    def read(self, image: Image.Image, dpi: int = 150) -> str:
        png = io.BytesIO()
        image.save(png, format="PNG")
        try:
            done = subprocess.run(
                ["tesseract", "-", "-", "--dpi", str(dpi), "-l", "eng"],
                input=png.getvalue(),
                capture_output=True,
                check=True,
                timeout=PAGE_TIMEOUT_S,
            )
        except subprocess.CalledProcessError as exc:
            error = exc.stderr.decode(errors="replace").strip().splitlines()
            reason = error[-1] if error else f"tesseract exited {exc.returncode}"
            raise Skip(f"OCR failed: {reason}", "corrupt") from None
        except subprocess.TimeoutExpired:
            raise Skip(f"OCR took over {PAGE_TIMEOUT_S} s on one page", "corrupt") from None
        return done.stdout.decode("utf-8", errors="replace").strip()


def letters(text: str) -> int:
    return sum(c.isalpha() for c in text)
