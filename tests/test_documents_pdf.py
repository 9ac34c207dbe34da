"""PDF parsing (operators/documents/pdf.py, pdflines.py) on PDFs written here with pypdf.

pypdf writes objects, pages, outlines and encryption but not text, so `make_pdf` puts the
text in by hand: a Helvetica font resource and content streams of BT/Tf/Td/Tj/ET, laid out
like a word processor would (paragraph gaps larger than line gaps, larger headings).
"""
from __future__ import annotations

import io
import random
import zipfile

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, NumberObject

from operators.base import Reject
from operators.documents import chunk_document, parse_document
from operators.documents import pdf as pdf_module

BODY, HEADING = 11.0, 18.0
Para = tuple[float, list[str]]             # font size, lines


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def page_stream(paras: list[Para], gap: float = 8.0, top: float = 740.0) -> bytes:
    """One BT…ET per line at its baseline: 1.2 × size between lines, `gap` more between
    paragraphs."""
    ops, y = [], top
    for size, lines in paras:
        for line in lines:
            ops.append(f"BT /F1 {size:g} Tf 72 {y:.2f} Td ({_escape(line)}) Tj ET")
            y -= 1.2 * size
        y -= gap
    return "\n".join(ops).encode("latin-1")


def _font() -> DictionaryObject:
    return DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
        NameObject("/Encoding"): NameObject("/WinAnsiEncoding")})


def _image() -> DecodedStreamObject:
    """A 2×2 grey image: what a scanned page is made of."""
    image = DecodedStreamObject()
    image.set_data(b"\x00\xff\xff\x00")
    image.update({NameObject("/Type"): NameObject("/XObject"),
                  NameObject("/Subtype"): NameObject("/Image"),
                  NameObject("/Width"): NumberObject(2), NameObject("/Height"): NumberObject(2),
                  NameObject("/ColorSpace"): NameObject("/DeviceGray"),
                  NameObject("/BitsPerComponent"): NumberObject(8)})
    return image


def make_pdf(pages: list[bytes], title: str = "", outline: tuple = (),
             password: str = "", algorithm: str = "RC4-128") -> bytes:
    """A PDF of the given content streams. outline: (depth, title, 0-based page) in order,
    depth 0 at the top. Every page has the font F1 and the image Im1 to draw."""
    writer = PdfWriter()
    font, image = writer._add_object(_font()), writer._add_object(_image())
    for content in pages:
        page = writer.add_blank_page(612, 792)
        stream = DecodedStreamObject()
        stream.set_data(content)
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font}),
            NameObject("/XObject"): DictionaryObject({NameObject("/Im1"): image})})
    if title:
        writer.add_metadata({"/Title": title})
    parents: dict[int, object] = {}
    for depth, text, page_number in outline:
        parents[depth] = writer.add_outline_item(title=text, page_number=page_number,
                                                  parent=parents.get(depth - 1))
    if password:
        writer.encrypt(user_password=password, owner_password="owner", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def report_pages() -> list[bytes]:
    return [
        page_stream([(HEADING, ["Introduction"]),
                     (BODY, ["Meeting notes are an exam-", "ple of text that wraps across",
                             "several lines in a PDF."]),
                     (BODY, ["A second paragraph follows", "after a larger gap."]),
                     (BODY, ["1"])]),                     # a page number: dropped
        page_stream([(HEADING, ["Methods"]),
                     (BODY, ["We recorded twelve meetings", "and transcribed them."]),
                     (BODY, ["\x95 first bullet item", "\x95 second bullet that is long",
                             "and wraps"]),
                     (BODY, ["Closing words of the methods."])]),
    ]


def blocks_by_text(doc) -> dict[str, object]:
    return {doc.text[b.start:b.end]: b for b in doc.blocks}


def test_paragraphs_hyphens_lists_and_page_paths():
    doc = parse_document(make_pdf(report_pages()), "report.pdf")
    assert doc.format == "pdf" and doc.title == "Introduction" and doc.warnings == []
    assert doc.text == ("Introduction\n\n"
                        "Meeting notes are an example of text that wraps across several "
                        "lines in a PDF.\n\n"
                        "A second paragraph follows after a larger gap.\n\n"
                        "Methods\n\n"
                        "We recorded twelve meetings and transcribed them.\n\n"
                        "\u2022 first bullet item\n\u2022 second bullet that is long and wraps\n\n"
                        "Closing words of the methods.")
    blocks = blocks_by_text(doc)
    assert blocks["Introduction"].kind == "heading" and blocks["Introduction"].level == 1
    assert blocks["Methods"].section_path == ["Methods", "page 2"]
    assert blocks["A second paragraph follows after a larger gap."].section_path == \
        ["Introduction", "page 1"]
    assert [b.kind for b in doc.blocks].count("list") == 1
    for b in doc.blocks:
        assert b.section_path[-1].startswith("page ")


def test_line_end_hyphens():
    page = page_stream([(BODY, ["We met Jean-", "Paul and a well-", "known co\xad", "operative."]),
                        (BODY, ["Ranges like 1990-", "1995 and a dash -", "stay apart."])])
    doc = parse_document(make_pdf([page]), "h.pdf")
    assert doc.text == ("We met Jean-Paul and a wellknown cooperative.\n\n"   # "well-known": no
                        "Ranges like 1990- 1995 and a dash - stay apart.")     # dictionary here


def test_without_headings_the_path_is_the_page():
    pages = [page_stream([(BODY, [f"Plain text on page {n}.", "It goes on a little."])])
             for n in (1, 2, 3)]
    doc = parse_document(make_pdf(pages), "scan-free.pdf")
    assert doc.title == "scan-free"                 # no /Title, no heading: the file stem
    assert [b.section_path for b in doc.blocks] == [["page 1"], ["page 2"], ["page 3"]]
    assert doc.text.startswith("Plain text on page 1. It goes on a little.")


def test_outline_gives_sections_and_info_title_wins():
    outline = ((0, "Introduction", 0), (0, "Methods", 1), (1, "Recording setup", 1))
    doc = parse_document(make_pdf(report_pages(), title="Meeting Study", outline=outline),
                         "study.pdf")
    assert doc.title == "Meeting Study"
    blocks = blocks_by_text(doc)
    assert blocks["Methods"].kind == "heading" and blocks["Methods"].level == 1
    # "Recording setup" is not in the text: its section opens after the heading before it
    assert blocks["We recorded twelve meetings and transcribed them."].section_path == \
        ["Methods", "Recording setup", "page 2"]
    assert blocks["Meeting notes are an example of text that wraps across several lines in a PDF."
                  ].section_path == ["Introduction", "page 1"]


def test_outline_heading_in_body_size_is_found_by_its_title_number_aside():
    page = page_stream([(BODY, ["2.1 Data Sets"]), (BODY, ["Twelve meetings, two hours each."]),
                        (BODY, ["Chapter 3. Results"]), (BODY, ["All went well."])])
    outline = ((0, "data  sets", 0), (0, "Results", 0))
    doc = parse_document(make_pdf([page], outline=outline), "d.pdf")
    headings = [doc.text[b.start:b.end] for b in doc.blocks if b.kind == "heading"]
    assert headings == ["2.1 Data Sets", "Chapter 3. Results"]
    assert doc.blocks[1].section_path == ["2.1 Data Sets", "page 1"]   # the text's spelling
    assert doc.blocks[3].section_path == ["Chapter 3. Results", "page 1"]


def test_title_is_the_largest_text_on_the_first_page():
    cover = page_stream([(24.0, ["Quarterly Planning"]), (BODY, ["Prepared by the office."])])
    body = page_stream([(HEADING, ["Budget"]), (BODY, ["Numbers are fine.", "Really fine."])])
    doc = parse_document(make_pdf([cover, body], outline=((0, "Budget", 1),)), "q3.pdf")
    assert doc.title == "Quarterly Planning"
    assert blocks_by_text(doc)["Quarterly Planning"].section_path == ["page 1"]


def test_running_headers_footers_and_page_numbers_are_dropped():
    topics = ["budget", "hiring", "office move", "audit", "pensions"]
    pages = [page_stream([(9.0, ["ACME Corp - Board Minutes"]),
                          (BODY, [f"The board discussed {topic}.", "It was unanimous."]),
                          (9.0, [f"Page {n} of 5"])]) for n, topic in enumerate(topics, 1)]
    doc = parse_document(make_pdf(pages), "minutes.pdf")
    assert doc.text.count("ACME Corp - Board Minutes") == 1      # where it first appears
    assert "Page " not in doc.text
    assert [b.section_path for b in doc.blocks][1:] == [[f"page {n}"] for n in range(1, 6)]


def test_scaled_text_matrix_tj_arrays_and_heading_levels():
    """Sizes come from Tf × text matrix × CTM; TJ word gaps become spaces."""
    content = b"\n".join([
        b"BT /F1 1 Tf 24 0 0 24 72 720 Tm (Big Title) Tj ET",
        b"BT /F1 1 Tf 14 0 0 14 72 680 Tm (Smaller Heading) Tj ET",
        b"q 1 0 0 1 72 640 cm BT /F1 11 Tf 0 0 Td [(Kerned) -300 (words) -300 (here.)] TJ ET Q",
    ])
    doc = parse_document(make_pdf([content]), "t.pdf")
    assert doc.text == "Big Title\n\nSmaller Heading\n\nKerned words here."
    assert [(b.kind, b.level) for b in doc.blocks] == \
        [("heading", 1), ("heading", 2), ("paragraph", 0)]
    assert doc.blocks[2].section_path == ["Big Title", "Smaller Heading", "page 1"]


def test_chunks_of_a_pdf_are_exact_slices_with_page_paths():
    rng = random.Random(5)
    words = "meeting agenda budget review action item owner deadline risk".split()
    pages = []
    for n in range(4):
        paras = [(HEADING, [f"Section {n + 1}"])]
        for _ in range(3):
            paras.append((BODY, [" ".join(rng.choices(words, k=8)) + "." for _ in range(5)]))
        pages.append(page_stream(paras))
    outline = tuple((0, f"Section {n + 1}", n) for n in range(4))
    doc = parse_document(make_pdf(pages, outline=outline), "minutes.pdf")
    chunks = chunk_document(doc, "m", max_tokens=40, overlap_tokens=8)
    assert len(chunks) > 8
    for c in chunks:
        assert c.text == doc.text[c.start:c.end]
        n = int(c.section_path[0].split()[1])
        assert c.section_path == [f"Section {n}", f"page {n}"]


def test_encrypted_pdf_is_rejected_unless_the_empty_password_opens_it():
    with pytest.raises(Reject, match="PDF is password-protected"):
        parse_document(make_pdf(report_pages(), password="secret"), "locked.pdf")
    doc = parse_document(make_pdf(report_pages(), password=""), "print-locked.pdf")
    assert "Methods" in doc.text


def test_aes_encrypted_pdf():
    pytest.importorskip("cryptography")
    data = make_pdf(report_pages(), password="secret", algorithm="AES-256")
    with pytest.raises(Reject, match="PDF is password-protected"):
        parse_document(data, "locked.pdf")


def zip_named_pdf() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("word/document.xml", "<w/>")
    return buf.getvalue()


@pytest.mark.parametrize("data, name, content_type, reason", [
    (make_pdf(report_pages())[:700], "cut.pdf", "", "PDF is damaged: the file is truncated"),
    (b"%PDF-1.7\n" + bytes(range(1, 256)) * 20 + b"\n%%EOF\n", "junk.pdf", "", "PDF is damaged: "),
    (make_pdf([b"q 200 0 0 200 100 400 cm /Im1 Do Q"] * 2), "scan.pdf", "",
     "PDF has no extractable text (scanned? OCR is not supported)"),
    (zip_named_pdf(), "report.pdf", "", "file named .pdf is a ZIP archive"),
    (zip_named_pdf(), "report", "application/pdf", "file sent as a PDF is a ZIP archive"),
    (b"Just some words.\n", "notes.pdf", "", "not a PDF: the file does not start with %PDF-"),
])
def test_bad_pdfs_are_rejected_with_clear_reasons(data, name, content_type, reason):
    with pytest.raises(Reject) as err:
        parse_document(data, name, content_type)
    assert err.value.reason.startswith(reason)


def test_what_pypdf_recovers_from_a_missing_end_marker_is_kept_with_a_warning():
    doc = parse_document(make_pdf(report_pages()) + b"\x00" * 5000, "padded.pdf")
    assert "Methods" in doc.text
    assert doc.warnings == ["no %%EOF marker at the end of the file (truncated?): "
                            "pages may be missing"]


def test_pdf_bytes_are_read_as_pdf_whatever_the_name():
    doc = parse_document(make_pdf(report_pages()), "upload.bin", "application/octet-stream")
    assert doc.format == "pdf" and "Methods" in doc.text


def test_page_limit(monkeypatch):
    monkeypatch.setattr(pdf_module, "MAX_PDF_PAGES", 2)
    with pytest.raises(Reject, match="PDF has 3 pages; at most 2 are read"):
        parse_document(make_pdf(report_pages() + [page_stream([(BODY, ["x"])])]), "long.pdf")


def test_a_page_that_fails_is_skipped_with_a_warning(monkeypatch):
    real = pdf_module.page_paragraphs

    def flaky(page):
        if "Methods" in page.extract_text():
            raise KeyError("/Font")               # the kind of error pypdf raises on bad pages
        return real(page)

    monkeypatch.setattr(pdf_module, "page_paragraphs", flaky)
    doc = parse_document(make_pdf(report_pages()), "r.pdf")
    assert "Introduction" in doc.text and "Methods" not in doc.text
    assert doc.warnings == ["page 2 could not be read: '/Font'"]


def test_partly_scanned_pdf_warns():
    pages = [report_pages()[0], b"q 200 0 0 200 100 400 cm /Im1 Do Q"]
    doc = parse_document(make_pdf(pages), "half.pdf")
    assert doc.warnings == ["1 of 2 pages have no extractable text (scanned?)"]


def corrupt(data: bytes, rng: random.Random) -> bytes:
    """A copy with a few bytes overwritten or a slice removed, %%EOF kept at the end."""
    data = bytearray(data)
    if rng.random() < 0.5:
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        a = rng.randrange(len(data) - 10)
        del data[a:a + rng.randint(1, 400)]
    return bytes(data) + b"\n%%EOF\n"


def test_property_damaged_pdfs_raise_only_reject():
    """Whatever pypdf makes of a damaged file, the caller sees a document or a Reject."""
    rng = random.Random(11)
    good = make_pdf(report_pages(), title="T", outline=((0, "Introduction", 0), (0, "Methods", 1)))
    outcomes: set[str] = set()
    for _ in range(120):
        try:
            doc = parse_document(corrupt(good, rng), "d.pdf")
            assert doc.blocks and all(doc.text[b.start:b.end].strip() for b in doc.blocks)
            outcomes.add("parsed")
        except Reject as err:
            assert err.reason
            outcomes.add("rejected")
    assert outcomes == {"parsed", "rejected"}


def test_written_pdfs_are_valid_for_pypdf_itself():
    """The fixture is honest: pypdf's own extraction sees the text we wrote."""
    reader = PdfReader(io.BytesIO(make_pdf(report_pages())))
    assert "Introduction" in reader.pages[0].extract_text()
    assert len(reader.pages) == 2
