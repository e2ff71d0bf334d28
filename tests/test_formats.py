"""Every format read from a real file its own library wrote: the fact in it, its title, and the page, slide or
sheet its text came from; the registry reads a file as what its bytes say it is."""

from __future__ import annotations

import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from rag.evaluation.office_files import WRITERS, page_image, text_pdf, write_office_set
from rag.ingestion.formats import format_of
from rag.ingestion.formats.base import row_lines
from rag.ingestion.formats.mail import MAX_ATTACHMENTS
from rag.ingestion.loaders import load_documents
from rag.types import Document

MB = 1024 * 1024


def load(*paths: Path) -> list[Document]:
    documents, errors = load_documents(list(paths), 20 * MB)
    assert not errors, errors
    return documents


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_each_everyday_file_is_read_with_its_fact_and_its_place(tmp_path: Path, name: str) -> None:
    [fact] = write_office_set(tmp_path, only=(name,))
    document = load(tmp_path / fact.file)[0]
    assert fact.answer.lower() in " ".join(document.text.split()).lower(), document.text
    offset = " ".join(document.text.split()).lower().find(fact.answer.lower())
    if fact.place:
        where = document.text.lower().find(fact.answer.split()[0].lower())
        assert document.place_at(where) == fact.place, (document.places, offset)
    assert (document.title and document.title != Path(fact.file).stem) or name.endswith(
        (".csv", ".tsv", ".xlsx", ".ods")
    )


def test_slides_keep_titles_text_tables_and_notes_in_order(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("deck.pptx",))
    document = load(tmp_path / fact.file)[0]
    assert document.title == "Product review"
    assert [p.label for p in document.places] == ["slide 1", "slide 2", "slide 3"]
    slide_two = document.text[document.places[1].start : document.places[2].start]
    assert slide_two.startswith("Launch plan\nThe Falcon app") and "Notes: Marketing starts" in slide_two
    assert "Servers; Cost (EUR): 12000." in document.text
    assert document.text.count("Launch plan") == 1  # the title placeholder is not read twice


def test_sheet_rows_read_with_their_headers_under_the_sheet_name(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("budget.xlsx",))
    document = load(tmp_path / fact.file)[0]
    assert "Orion; Budget (EUR): 870000; Owner: Dana Whitfield; Approved: 2026-10-14." in document.text
    assert [p.label for p in document.places] == ["sheet Summary", "sheet Budgets 2027"]
    assert document.title == "budget"  # a sheet's name is not the file's title


def test_ods_sheets_as_libreoffice_writes_them(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("rota.ods",))
    document = load(tmp_path / fact.file)[0]
    assert "Week: 2; On call: Omar Haddad." in document.text
    assert document.place_at(document.text.index("Omar")) == "sheet Rota"


def test_csv_and_tsv_dialects_are_sniffed(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text("Room\tCapacity\nAtlas\t12\nBorealis\t30\n")
    (tmp_path / "b.csv").write_text('Room,Capacity,Note\nCygnus,8,"has a screen, and a phone"\n')
    tsv, comma = load(tmp_path / "a.tsv", tmp_path / "b.csv")
    assert "Borealis; Capacity: 30." in tsv.text
    assert "Cygnus; Capacity: 8; Note: has a screen, and a phone." in comma.text


def test_mail_headers_body_and_attachments_as_their_own_documents(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("notice.eml",))
    mail, wardens = load(tmp_path / fact.file)
    assert mail.title == "Fire drill on Thursday"
    assert "From: Safety Office <safety@example.org>" in mail.text and "Date: Mon, 16 Nov 2026" in mail.text
    assert "Attachments: wardens.txt" in mail.text
    assert wardens.source == f"{mail.source} > wardens.txt" and "Ravi Patel" in wardens.text


def test_outlook_msg_with_an_attachment(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("permits.msg",))
    mail, fees = load(tmp_path / fact.file)
    assert mail.title == "Parking permits" and "issued by Room 1.08" in mail.text
    assert "From: Facilities Office <office@example.org>" in mail.text
    assert fees.source.endswith("permits.msg > fees.txt") and "40 EUR" in fees.text


def test_a_mail_carries_at_most_so_many_attachments_and_says_so(tmp_path: Path) -> None:
    message = EmailMessage()
    message["Subject"] = "Scans"
    message.set_content("All the scans, attached.")
    for n in range(MAX_ATTACHMENTS + 5):
        message.add_attachment(
            f"Scan {n} of the archive.\n".encode(), maintype="text", subtype="plain", filename=f"{n}.txt"
        )
    (tmp_path / "scans.eml").write_bytes(message.as_bytes())
    documents, errors = load_documents([tmp_path / "scans.eml"], 20 * MB)
    assert len(documents) == 1 + MAX_ATTACHMENTS
    assert [e.reason for e in errors] == [f"5 of its {MAX_ATTACHMENTS + 5} attachments not read (at most 20 a mail)"]


def test_epub_chapters_in_spine_order_without_the_table_of_contents(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("guide.epub",))
    document = load(tmp_path / fact.file)[0]
    assert document.title == "Equipment guide"
    assert [p.label for p in document.places] == ["Borrowing equipment", "Returning equipment"]
    assert document.text.index("borrow a laptop") < document.text.index("returned to the IT desk")
    assert "1. Borrowing" not in document.text


def test_odt_headings_and_paragraphs_and_odp_slides(tmp_path: Path) -> None:
    minutes_fact, slides_fact = write_office_set(tmp_path, only=("minutes.odt", "induction.odp"))
    minutes = load(tmp_path / minutes_fact.file)[0]
    assert minutes.title == "Minutes of the site committee"
    assert minutes.text.index("Decisions") < minutes.text.index("cycle shelter for 40 bicycles")
    deck = load(tmp_path / slides_fact.file)[0]
    assert deck.place_at(deck.text.index("Badges")) == "slide 2"
    assert deck.title == "Welcome to the induction, group 1"


def test_rtf_text_without_control_words(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("policy.rtf",))
    document = load(tmp_path / fact.file)[0]
    assert "Visitors sign in at the café desk" in document.text and document.title == "Visitor policy"
    assert "\\" not in document.text and "rtf1" not in document.text


def test_pdf_pages_are_cited_and_only_pages_without_text_are_read_by_ocr(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("scan.pdf",))
    document = load(tmp_path / fact.file)[0]
    assert [p.label for p in document.places] == ["p. 1", "p. 2"]
    assert document.text.startswith("Facilities handbook, edition 1\nPage two is a scan.")
    assert document.place_at(document.text.index("7:45")) == "p. 2"


def test_an_image_without_text_is_refused_in_one_line(tmp_path: Path) -> None:
    page_image([], width=400, height=300).save(tmp_path / "blank.png")
    _, errors = load_documents([tmp_path / "blank.png"], 20 * MB)
    assert [e.kind for e in errors] == ["no_text"] and "OCR found no text" in errors[0].reason


def test_a_file_is_read_as_what_its_bytes_say(tmp_path: Path) -> None:
    [fact] = write_office_set(tmp_path, only=("deck.pptx",))
    renamed = tmp_path / "deck-really.pdf"
    (tmp_path / fact.file).rename(renamed)
    assert format_of(renamed).name == "PPTX"
    assert "Falcon app" in load(renamed)[0].text
    pdf = tmp_path / "report.docx"
    pdf.write_bytes(text_pdf(["Quarterly figures are up."]))
    assert "Quarterly figures" in load(pdf)[0].text
    with zipfile.ZipFile(tmp_path / "photos.xlsx", "w") as archive:
        archive.writestr("photo.txt", "not a workbook")
    _, errors = load_documents([tmp_path / "photos.xlsx"], 20 * MB)
    assert len(errors) == 1 and errors[0].kind == "corrupt" and "\n" not in errors[0].reason


def test_row_lines_name_each_cell_by_its_header() -> None:
    assert row_lines(["Project", "Budget (EUR)", ""], [["Orion", "870000", "note"], ["", "", ""]]) == [
        "Orion; Budget (EUR): 870000; note."
    ]
    assert row_lines(["Week", "On call"], [["2", "Omar Haddad"], ["3b", ""], ["", "Kai", "extra"]]) == [
        "Week: 2; On call: Omar Haddad.",
        "3b.",
        "On call: Kai; extra.",
    ]
    assert row_lines([], [["a", "", "b"]]) == ["a; b."]
