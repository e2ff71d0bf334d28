"""Measure the two offline OCR engines on generated scans of the seeds' text: which one rag ships.

Each seed article is typeset onto A4 pages at 150 dpi (11 pt serif, black on white: a clean scan) and,
as a second condition, the same pages slightly blurred, rotated and speckled (a photocopy). Both engines
read every page; the script prints the character error rate (edit distance over the reference length,
whitespace collapsed) and seconds per page, side by side, and names the CPU.

    .venv/bin/python scripts/ocr_compare.py [--pages N]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont
from rapidfuzz.distance import Levenshtein

from rag.ingestion.formats import ocr

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
DPI = 150
FONT = "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf"


def pages_of(text: str, font: ImageFont.FreeTypeFont, width: int, height: int, margin: int) -> list[str]:
    """The text wrapped to the page width and cut into pages; each page's reference text."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words, line = paragraph.split(), ""
        for word in words:
            candidate = f"{line} {word}".strip()
            if font.getlength(candidate) <= width - 2 * margin:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    per_page = (height - 2 * margin) // int(font.size * 1.4)
    return ["\n".join(lines[i : i + per_page]) for i in range(0, len(lines), per_page)]


def render(page: str, font: ImageFont.FreeTypeFont, width: int, height: int, margin: int) -> Image.Image:
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(page.split("\n")):
        draw.text((margin, margin + row * int(font.size * 1.4)), line, font=font, fill=0)
    return image


def photocopy(image: Image.Image, rng: random.Random) -> Image.Image:
    noisy = image.filter(ImageFilter.GaussianBlur(0.6)).rotate(0.7, fillcolor=255, resample=Image.BICUBIC)
    pixels = noisy.load()
    for _ in range(image.width * image.height // 400):
        pixels[rng.randrange(image.width), rng.randrange(image.height)] = rng.choice((0, 255))
    return noisy


class RapidOcr:
    """PP-OCR models run by onnxruntime; the models ship inside the rapidocr-onnxruntime 1.4.4 wheel (the
    `rapidocr` package, unlike it, downloads them), so it is measured here but not a dependency."""

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR()

    def read(self, image: Image.Image, dpi: int = DPI) -> str:
        import numpy as np

        result, _ = self._engine(np.asarray(image.convert("RGB")))
        return "\n".join(text for _, text, _ in result or [])


def cer(reference: str, read: str) -> float:
    reference, read = " ".join(reference.split()), " ".join(read.split())
    return Levenshtein.distance(reference, read) / max(1, len(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=8, help="pages to read per condition")
    args = parser.parse_args()
    font = ImageFont.truetype(FONT, round(11 / 72 * DPI))
    width, height, margin = round(8.27 * DPI), round(11.69 * DPI), round(0.8 * DPI)
    pages = [p for path in sorted(SEEDS.glob("*.txt")) for p in pages_of(path.read_text(), font, width, height, margin)]
    pages = [p for p in pages if len(p) > 500][: args.pages]
    rng = random.Random(0)
    conditions = {
        "clean 150 dpi": [render(p, font, width, height, margin) for p in pages],
        "photocopy 150 dpi": [photocopy(render(p, font, width, height, margin), rng) for p in pages],
    }
    engines: dict[str, RapidOcr | ocr.Tesseract] = {"tesseract": ocr.Tesseract()}
    try:
        engines = {"rapidocr": RapidOcr(), **engines}
    except ImportError:
        print("rapidocr-onnxruntime is not installed (pip install rapidocr-onnxruntime==1.4.4): Tesseract only")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    print(f"CPU: {cpu}; {len(pages)} pages per condition, {sum(map(len, pages)) // len(pages)} characters a page\n")
    print("| condition | engine | CER mean | CER worst | s/page median |")
    print("|---|---|---|---|---|")
    for condition, images in conditions.items():
        for name, engine in engines.items():
            engine.read(images[0])  # load the models before timing
            errors, seconds = [], []
            for reference, image in zip(pages, images, strict=True):
                started = time.perf_counter()
                read = engine.read(image)
                seconds.append(time.perf_counter() - started)
                errors.append(cer(reference, read))
            print(
                f"| {condition} | {name} | {statistics.mean(errors):.2%} | {max(errors):.2%} "
                f"| {statistics.median(seconds):.2f} |"
            )


if __name__ == "__main__":
    main()
