"""PDFs built here with fpdf2 and read through the real pypdf: pages, passwords, damage, scans."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, NameObject, NumberObject

from rag import IngestError
from rag.ingest import Options, extract
from rag.library import Library
from storage import DocumentStatus

fpdf = pytest.importorskip("fpdf")

try:
    import cryptography  # noqa: F401  (pypdf needs it, or pycryptodome, for AES)

    HAVE_AES = True
except ImportError:
    HAVE_AES = False

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_font = pytest.mark.skipif(
    not FONT.exists(), reason=f"Cyrillic PDFs need the DejaVu TTF at {FONT} (Debian fonts-dejavu-core)"
)

PAGES = [
    "Общие положения. Арендодатель передаёт, а Арендатор принимает во временное пользование "
    "нежилое помещение на первом этаже здания.",
    "Срок аренды составляет 11 месяцев с момента подписания акта приёма-передачи. "
    "Договор может быть продлён по соглашению сторон.",
    "Ответственность сторон. За просрочку платежа начисляется пеня в размере 0,1 процента "
    "от суммы долга за каждый день.",
]


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with one text page per string (empty strings give blank pages)."""
    pdf = fpdf.FPDF()
    if FONT.exists():
        pdf.add_font("DejaVu", fname=str(FONT))
        pdf.set_font("DejaVu", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text, align="L")
    return bytes(pdf.output())


def encrypt(data: bytes, user_password: str, owner_password: str | None = None) -> bytes:
    # RC4-128 is what pypdf can write without the optional `cryptography` package.
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _norm(text: str) -> str:
    return " ".join(text.split())


@needs_font
def test_pages_are_extracted_with_their_numbers() -> None:
    got = extract(make_pdf(PAGES), "dogovor.pdf")
    assert got.mime_type == "application/pdf"
    assert got.page_count == 3
    assert [p.number for p in got.pages] == [1, 2, 3]
    for page, text in zip(got.pages, PAGES, strict=True):
        assert _norm(page.text) == _norm(text)


@needs_font
def test_justified_lines_read_with_single_spaces() -> None:
    pdf = fpdf.FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=12)
    pdf.add_page()
    pdf.multi_cell(0, 8, " ".join([PAGES[0]] * 3), align="J")  # stretched word gaps
    (page,) = extract(bytes(pdf.output()), "dogovor.pdf").pages
    assert "  " not in page.text
    assert _norm(page.text) == _norm(" ".join([PAGES[0]] * 3))


@needs_font
def test_fact_on_page_two_is_found_on_page_two(library: Library) -> None:
    res = library.ingest("dogovor.pdf", make_pdf(PAGES))
    assert res.status == "indexed", res.message
    assert res.document is not None and res.document.pages == 3
    chunks = library.docs.chunks(res.document.id)
    fact = [c for c in chunks if "11 месяцев" in c.text]
    assert fact and all(c.page == 2 for c in fact)
    assert {c.page for c in chunks} == {1, 2, 3}
    for method in ("keyword", "dense", "hybrid"):
        hits = library.retriever.search("На какой срок заключена аренда?", k=3, method=method)
        assert hits, method
        assert hits[0].page == 2 and "11 месяцев" in hits[0].text, method


@needs_font
def test_blank_pages_are_skipped_but_numbering_is_kept() -> None:
    got = extract(make_pdf(["", PAGES[1], ""]), "scan-and-text.pdf")
    assert got.page_count == 3
    assert [p.number for p in got.pages] == [2]


def test_pdf_with_only_blank_pages_asks_for_a_text_layer() -> None:
    with pytest.raises(IngestError) as err:
        extract(make_pdf(["", ""]), "скан.pdf")
    assert "скан.pdf" in str(err.value)
    assert "текстового слоя" in str(err.value)


@needs_font
def test_password_protected_pdf_is_refused_with_a_hint(library: Library) -> None:
    data = encrypt(make_pdf(PAGES), user_password="secret")
    with pytest.raises(IngestError) as err:
        extract(data, "secret.pdf")
    assert "secret.pdf" in str(err.value)
    assert "парол" in str(err.value)  # «защищён паролем»

    res = library.ingest("secret.pdf", data)
    assert res.status == "failed"
    assert "парол" in res.message
    assert res.document is not None
    assert library.docs.get(res.document.id).status == DocumentStatus.FAILED
    assert library.docs.chunks(res.document.id) == []
    assert not list(library.settings.files_dir.glob("*")), "a failed upload must not keep its original"


@needs_font
def test_pdf_with_empty_user_password_is_read() -> None:
    # Encrypted only to restrict editing: opens without a password, as in any viewer.
    data = encrypt(make_pdf(PAGES), user_password="", owner_password="owner")
    assert PdfReader(io.BytesIO(data)).is_encrypted
    got = extract(data, "restricted.pdf")
    assert [p.number for p in got.pages] == [1, 2, 3]
    assert "11 месяцев" in got.pages[1].text


@needs_font
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.8, 0.99])
def test_truncated_pdf_fails_cleanly(fraction: float) -> None:
    data = make_pdf(PAGES)
    with pytest.raises(IngestError) as err:
        extract(data[: int(len(data) * fraction)], "oborvan.pdf")
    assert "oborvan.pdf" in str(err.value)
    assert "PDF" in str(err.value)


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF", "Договор".encode() * 50],
    ids=["header-only", "no-xref", "text-named-pdf"],
)
def test_not_a_pdf_fails_cleanly(data: bytes) -> None:
    with pytest.raises(IngestError) as err:
        extract(data, "fake.pdf")
    assert "fake.pdf" in str(err.value)


@needs_font
def test_corrupted_bytes_never_escape_as_other_errors() -> None:
    # Random byte damage: each file is either read (possibly losing pages) or refused
    # with an IngestError; no other exception may reach the caller.
    original = make_pdf(PAGES)
    rng = random.Random(2024)
    refused = 0
    for _ in range(25):
        damaged = bytearray(original)
        for _ in range(20):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            got = extract(bytes(damaged), "damaged.pdf")
        except IngestError as exc:
            assert "damaged.pdf" in str(exc)
            refused += 1
            continue
        assert got.pages
        assert all(p.number is not None and 1 <= p.number <= 3 for p in got.pages)
    assert refused > 0


@needs_font
def test_too_many_pages_are_refused_with_the_limit() -> None:
    with pytest.raises(IngestError) as err:
        extract(make_pdf(PAGES), "tolstyi.pdf", Options(max_pages=2))
    assert "tolstyi.pdf" in str(err.value)
    assert "3" in str(err.value) and "2" in str(err.value)
    assert len(extract(make_pdf(PAGES), "tolstyi.pdf", Options(max_pages=3)).pages) == 3


def aes_restricted_pdf(data: bytes) -> bytes:
    """An AES-128 PDF with an empty user password (Acrobat's usual "restricted editing" file).

    With `cryptography` installed pypdf writes a real one. Without it pypdf cannot write AES,
    so the file is RC4-encrypted and its dictionary then declares AESV2 (/V 4 /R 4): the
    password check is the same for both, so a reader gets as far as decrypting page content
    with AES, exactly where it would stop on a real AES file.
    """
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    if HAVE_AES:
        writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    else:
        writer.encrypt(user_password="", owner_password="owner", algorithm="RC4-128")
        entry = writer._encrypt_entry
        assert entry is not None
        std_cf = DictionaryObject(
            {
                NameObject("/CFM"): NameObject("/AESV2"),
                NameObject("/Length"): NumberObject(16),
                NameObject("/AuthEvent"): NameObject("/DocOpen"),
            }
        )
        entry[NameObject("/V")] = NumberObject(4)
        entry[NameObject("/R")] = NumberObject(4)
        entry[NameObject("/CF")] = DictionaryObject({NameObject("/StdCF"): std_cf})
        entry[NameObject("/StmF")] = NameObject("/StdCF")
        entry[NameObject("/StrF")] = NameObject("/StdCF")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@needs_font
def test_aes_restricted_pdf_is_read_or_reported_as_encrypted() -> None:
    data = aes_restricted_pdf(make_pdf(PAGES))
    reader = PdfReader(io.BytesIO(data))
    assert reader.is_encrypted
    assert reader.trailer["/Encrypt"]["/CF"]["/StdCF"]["/CFM"] == "/AESV2"
    try:
        got = extract(data, "aes.pdf")
    except IngestError as exc:
        # Acceptable only if the message names the real cause and not a missing text layer.
        assert "зашифрован" in str(exc), str(exc)
        assert "текстового слоя" not in str(exc)
    else:
        assert "11 месяцев" in got.pages[1].text
