"""Pictures of text (.png, .jpg, .tiff): a photo of a note, a scanned page, read by OCR."""

from __future__ import annotations

import warnings
from pathlib import Path

from rag.ingestion.formats.base import Format, Joiner, Loaded, Skip
from rag.ingestion.formats.ocr import MIN_PAGE_LETTERS, Tesseract, letters

# A page scanned at 300 dpi is ~9 megapixels; more than this is not a page of text (or is a
# decompression bomb: a small file that claims billions of pixels), refused before it is decoded.
MAX_PIXELS = 60_000_000
MAX_SIDE = 32_000  # Tesseract's own limit is 32,767 px a side
MAX_FRAMES = 50  # a multi-page TIFF: pages read, at most


class Picture(Format):
    name = "image"
    extensions = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
    signatures = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")

    def load(self, path: Path) -> Loaded:
        from PIL import Image, ImageOps

        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                image = Image.open(path)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise Skip(
                    f"image claims over {MAX_PIXELS:,} pixels, past the limit for OCR (a decompression bomb?)",
                    "too_large",
                ) from None
            with image:
                width, height = image.size
                if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                    raise Skip(
                        f"image is {width:,} x {height:,} px, over the {MAX_PIXELS // 1_000_000} megapixel "
                        f"/ {MAX_SIDE:,} px limit for OCR",
                        "too_large",
                    )
                engine = Tesseract()
                frames = getattr(image, "n_frames", 1)
                joiner = Joiner()
                for frame in range(min(frames, MAX_FRAMES)):
                    image.seek(frame)
                    page = ImageOps.exif_transpose(image).convert("L")  # a phone photo is stored sideways
                    dpi = image.info.get("dpi", (0, 0))[0]
                    text = engine.read(page, dpi=round(dpi) if dpi and dpi >= 70 else 150)
                    if letters(text) >= MIN_PAGE_LETTERS:
                        joiner.add(text, f"p. {frame + 1}" if frames > 1 else "")
        if not joiner.parts:
            raise Skip(
                f"OCR found no text in the image (fewer than {MIN_PAGE_LETTERS} letters): a photo, not a page?",
                "no_text",
            )
        return joiner.loaded()
