"""Everyday office files, written by the libraries that make them for real, each holding one fact.

The format tests ask about each fact end to end, and the ingestion benchmark writes hundreds of them:
a deck, a budget sheet, a staff directory, a mail notice, meeting minutes, an e-book guide, a photo of a
note and a half-scanned PDF. `OfficeFact` says what to ask, what the answer must contain, and which page,
slide or sheet the citation must name.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass(frozen=True)
class OfficeFact:
    file: str
    question: str
    answer: str  # a string the answer must contain (case-insensitive)
    place: str  # the page/slide/sheet the citation names ("" for a format without places)


def write_deck(path: Path, n: int = 0) -> OfficeFact:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    deck.core_properties.title = f"Product review {n}" if n else "Product review"
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = "Product review"
    first.placeholders[1].text = f"Spring planning meeting {n}" if n else "Spring planning meeting"
    plan = deck.slides.add_slide(deck.slide_layouts[1])
    plan.shapes.title.text = "Launch plan"
    plan.placeholders[
        1
    ].text = f"The Falcon app launches on {14 + n % 10} March 2027.\nBeta testers get it a week early."
    plan.notes_slide.notes_text_frame.text = "Marketing starts the campaign the same day."
    costs = deck.slides.add_slide(deck.slide_layouts[5])
    costs.shapes.title.text = "Costs"
    table = costs.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(1.5)).table
    for row, cells in enumerate([("Item", "Cost (EUR)"), ("Servers", "12000"), ("Design", "8000")]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    deck.save(str(path))
    return OfficeFact(path.name, "When does the Falcon app launch?", f"{14 + n % 10} March", "slide 2")


def write_budget(path: Path, n: int = 0) -> OfficeFact:
    from openpyxl import Workbook

    book = Workbook()
    summary = book.active
    summary.title = "Summary"
    summary.append(["Department", "Head count"])
    summary.append(["Research", 42])
    sheet = book.create_sheet("Budgets 2027")
    sheet.append(["Project", "Budget (EUR)", "Owner", "Approved"])
    sheet.append(["Vega", 120000 + n, "Tomas Berg", dt.datetime(2026, 11, 3)])
    sheet.append(["Orion", 870000 + n, "Dana Whitfield", dt.datetime(2026, 10, 14)])
    sheet.append(["Lyra", 55000 + n, "Ana Sousa", dt.datetime(2026, 9, 30)])
    book.save(path)
    return OfficeFact(path.name, "What is the budget of the Orion project?", f"{870000 + n}", "sheet Budgets 2027")


def write_directory(path: Path, n: int = 0) -> OfficeFact:
    rows = [
        "Name;Role;Phone;Office",
        f"Marc Dubois;Accountant;+44 20 7946 01{n % 100:02d};Room 2.03",
        "Priya Raman;Facilities manager;+44 20 7946 0321;Room 4.12",
        "Lena Fischer;Receptionist;+44 20 7946 0100;Lobby",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return OfficeFact(path.name, "What is Priya Raman's phone number?", "7946 0321", "")


def write_notice(path: Path, n: int = 0) -> OfficeFact:
    message = EmailMessage()
    message["Subject"] = "Fire drill on Thursday"
    message["From"] = "Safety Office <safety@example.org>"
    message["To"] = "all-staff@example.org"
    message["Date"] = "Mon, 16 Nov 2026 09:12:00 +0000"
    message.set_content(
        "Dear colleagues,\n\nThe fire drill will take place on Thursday at 10:30. "
        "When the alarm sounds, leave by the nearest stairs and assemble in the north car park. "
        f"Wardens will count everyone there.\n\nSafety Office (notice {n})\n"
    )
    message.add_attachment(
        f"Wardens: Ravi Patel (floor 1), Chloe Martin (floor 2). List {n}.\n".encode(),
        maintype="text",
        subtype="plain",
        filename="wardens.txt",
    )
    path.write_bytes(message.as_bytes())
    return OfficeFact(path.name, "Where should staff assemble during the fire drill?", "north car park", "")


def write_minutes(path: Path, n: int = 0) -> OfficeFact:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Minutes of the site committee"))
    document.text.addElement(P(text=f"Meeting {n + 1}, held in the library. Present: five members."))
    document.text.addElement(H(outlinelevel=2, text="Decisions"))
    document.text.addElement(P(text="The committee approved a new cycle shelter for 40 bicycles beside the gym."))
    document.text.addElement(P(text="The next meeting is in January."))
    document.save(str(path))
    return OfficeFact(path.name, "How many bicycles will the new cycle shelter hold?", "40", "")


def write_guide(path: Path, n: int = 0) -> OfficeFact:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier(f"guide-{n}")
    book.set_title("Equipment guide")
    book.set_language("en")
    chapters = []
    for number, (heading, text) in enumerate(
        [
            ("Borrowing equipment", f"Staff may borrow a laptop for up to {2 + n} weeks. Ask at the front desk."),
            ("Returning equipment", "Laptops must be returned to the IT desk on the second floor, with the charger."),
        ],
        start=1,
    ):
        chapter = epub.EpubHtml(title=heading, file_name=f"chapter{number}.xhtml", lang="en")
        chapter.content = f"<html><body><h1>{heading}</h1><p>{text}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)
    return OfficeFact(path.name, "Where must laptops be returned?", "IT desk", "Returning equipment")


def page_image(lines: list[str], width: int = 1240, height: int = 600, size: int = 34):
    """Lines of text drawn black on white, as a photo or a 150-dpi scan of a printed note shows them."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, size)
    for i, line in enumerate(lines):
        draw.text((60, 60 + i * round(size * 1.6)), line, fill=0, font=font)
    return image


def write_note_photo(path: Path, n: int = 0) -> OfficeFact:
    page_image(["Note for the front desk:", "The printer on floor 3 is called Kestrel.", f"Thank you! ({n})"]).save(
        path, dpi=(150, 150)
    )
    return OfficeFact(path.name, "What is the printer on floor 3 called?", "Kestrel", "")


def write_half_scanned(path: Path, n: int = 0) -> OfficeFact:
    """Page 1 has a text layer; page 2 is only a picture of a page, as a scanner makes it."""
    from pypdf import PdfReader, PdfWriter

    scan = io.BytesIO()
    page_image(
        ["Canteen opening hours", "The canteen opens at 7:45 on weekdays.", "It closes at 15:00."],
        width=1240,
        height=1754,
    ).save(scan, format="PDF", resolution=150)
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(text_pdf([f"Facilities handbook, edition {n + 1}", "Page two is a scan."]))))
    writer.append(PdfReader(scan))
    with path.open("wb") as handle:
        writer.write(handle)
    return OfficeFact(path.name, "When does the canteen open on weekdays?", "7:45", "p. 2")


def write_rota(path: Path, n: int = 0) -> OfficeFact:
    import pandas

    with pandas.ExcelWriter(path, engine="odf") as writer:
        pandas.DataFrame({"Week": [1, 2, 3], "On call": ["Ines Duarte", "Omar Haddad", f"Kai Lindqvist {n}"]}).to_excel(
            writer, sheet_name="Rota", index=False
        )
    return OfficeFact(path.name, "Who is on call in week 2?", "Omar Haddad", "sheet Rota")


def write_induction(path: Path, n: int = 0) -> OfficeFact:
    from odf.draw import Frame, Page, TextBox
    from odf.opendocument import OpenDocumentPresentation
    from odf.style import MasterPage, PageLayout
    from odf.text import P

    slides = OpenDocumentPresentation()
    layout = PageLayout(name="layout")
    slides.automaticstyles.addElement(layout)
    master = MasterPage(name="master", pagelayoutname=layout)
    slides.masterstyles.addElement(master)
    for text in (f"Welcome to the induction, group {n + 1}", "Badges are collected from security on level 0."):
        page = Page(masterpagename=master)
        frame = Frame(width="20cm", height="3cm", x="1cm", y="1cm")
        box = TextBox()
        box.addElement(P(text=text))
        frame.addElement(box)
        page.addElement(frame)
        slides.presentation.addElement(page)
    slides.save(str(path))
    return OfficeFact(path.name, "Where are badges collected from?", "security", "slide 2")


def write_rooms(path: Path, n: int = 0) -> OfficeFact:
    rows = ["Room\tCapacity\tFloor", f"Atlas\t{12 + n}\t1", "Borealis\t30\t2", "Cygnus\t8\t3"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return OfficeFact(path.name, "How many people does the Borealis room seat?", "30", "")


def write_permits(path: Path, n: int = 0) -> OfficeFact:
    """An Outlook .msg (written by msgforge, a development dependency) with a text attachment."""
    from msgforge import Message

    message = Message(
        subject="Parking permits",
        text_body=f"Parking permits for 2027 are issued by Room 1.08 from 4 January. (Notice {n})",
        to=[("staff@example.org", "Staff")],
        sender=("office@example.org", "Facilities Office"),
    )
    message.attach_bytes("fees.txt", f"Permit fees: 40 EUR a month. List {n}.\n".encode())
    message.save(str(path))
    return OfficeFact(path.name, "Which room issues parking permits?", "1.08", "")


def write_policy(path: Path, n: int = 0) -> OfficeFact:
    path.write_text(
        r"{\rtf1\ansi\deff0{\fonttbl{\f0 Times;}}\f0\b Visitor policy\b0\par "
        r"Visitors sign in at the caf\'e9 desk and wear a yellow lanyard.\par "
        f"Revision {n}.\\par}}",
        encoding="ascii",
    )
    return OfficeFact(path.name, "What colour lanyard do visitors wear?", "yellow", "")


def write_sign(path: Path, n: int = 0) -> OfficeFact:
    page_image(["Lost property", "Lost property is kept at the gatehouse.", f"Ask for form L{n}."]).save(
        path, format="JPEG", quality=85, dpi=(150, 150)
    )
    return OfficeFact(path.name, "Where is lost property kept?", "gatehouse", "")


def write_archive_scan(path: Path, n: int = 0) -> OfficeFact:
    """A two-page TIFF, as a document scanner writes a multi-page scan; the fact is on page 2."""
    first = page_image(["Archive request form", f"Form number {n}.", "Fill in both pages."])
    second = page_image(["Archive boxes", "Requested boxes arrive within three working days.", "Archive office"])
    first.save(path, format="TIFF", save_all=True, append_images=[second], dpi=(150, 150), compression="tiff_lzw")
    return OfficeFact(path.name, "How long do requested archive boxes take to arrive?", "three working days", "p. 2")


def text_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A minimal valid one-page PDF with a real text layer (Helvetica), xref offsets computed."""
    ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title is not None:
        objects.append(b"<< /Title (" + title.encode("latin-1") + b") >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info 6 0 R" if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


WRITERS: dict[str, Callable[[Path, int], OfficeFact]] = {
    "deck.pptx": write_deck,
    "budget.xlsx": write_budget,
    "directory.csv": write_directory,
    "notice.eml": write_notice,
    "minutes.odt": write_minutes,
    "guide.epub": write_guide,
    "note.png": write_note_photo,
    "scan.pdf": write_half_scanned,
    "rota.ods": write_rota,
    "induction.odp": write_induction,
    "rooms.tsv": write_rooms,
    "permits.msg": write_permits,
    "policy.rtf": write_policy,
    "sign.jpg": write_sign,
    "archive.tiff": write_archive_scan,
}


def write_office_set(folder: Path, n: int = 0, only: tuple[str, ...] = ()) -> list[OfficeFact]:
    """The files in `folder` (named with `n` when n > 0, so a benchmark can write hundreds)."""
    folder.mkdir(parents=True, exist_ok=True)
    facts = []
    for name, write in WRITERS.items():
        if only and name not in only:
            continue
        stem, suffix = name.rsplit(".", 1)
        facts.append(write(folder / (f"{stem}-{n}.{suffix}" if n else name), n))
    return facts
