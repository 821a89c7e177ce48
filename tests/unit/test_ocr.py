"""OCR through the real Tesseract (rus+eng): images, scanned and garbled PDFs, missing Tesseract.

Every fixture is rendered here with Pillow or fpdf2 and the DejaVu font; nothing is mocked.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont
from pypdf import PdfReader, PdfWriter
from pypdf.generic import NameObject

from rag import IngestError
from rag.ingest import SUPPORTED_EXTENSIONS, Options, extract, ocr
from rag.ingest.pdf import looks_like_garbage
from rag.library import Library

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

pytestmark = [
    pytest.mark.skipif(not FONT.exists(), reason=f"needs the DejaVu TTF at {FONT} (fonts-dejavu-core)"),
    pytest.mark.skipif(
        not ocr.tesseract_available(),
        reason="needs Tesseract with rus and eng data (apt-get install tesseract-ocr "
        "tesseract-ocr-rus tesseract-ocr-eng)",
    ),
]

SUPPLY = "Срок поставки составляет сорок пять дней с момента внесения предоплаты."
PENALTY = "За просрочку платежа начисляется пеня в размере одного процента за каждый день."
STORAGE = "Товар хранится на складе в Твери при температуре от пяти до пятнадцати градусов."
GUARANTEE = "Гарантийный срок на оборудование составляет двадцать четыре месяца."


def render(text: str, font_px: int = 24, width: int = 900, pad: int = 30) -> Image.Image:
    """Black text on white, wrapped to ``width``, as tall as needed."""
    font = ImageFont.truetype(str(FONT), font_px)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split():
            candidate = f"{line} {word}".strip()
            if probe.textlength(candidate, font=font) > width - 2 * pad and line:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    step = int(font_px * 1.5)
    img = Image.new("L", (width, 2 * pad + step * len(lines)), 255)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * step), line, font=font, fill=0)
    return img


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def image_pdf(images: list[Image.Image], dpi: float = 150.0) -> bytes:
    """A PDF of scanned pages: one image per page, no text layer."""
    buf = io.BytesIO()
    images[0].save(buf, format="PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return buf.getvalue()


def norm(text: str) -> str:
    """Lowercase words only: OCR may differ in punctuation, ё and line breaks."""
    return " ".join(re.findall(r"\w+", text.lower().replace("ё", "е")))


def assert_has(text: str, *phrases: str) -> None:
    for phrase in phrases:
        assert norm(phrase) in norm(text), f"{phrase!r} not in {text!r}"


# -- images -----------------------------------------------------------------------------------


def test_png_is_recognised() -> None:
    got = extract(png(render(f"Договор поставки.\n{SUPPLY}\n{PENALTY}")), "dogovor.png")
    assert got.mime_type == "image/png"
    assert len(got.pages) == 1
    page = got.pages[0]
    assert page.number is None and page.ocr
    assert_has(page.text, SUPPLY, PENALTY)


def test_small_transparent_screenshot_text_is_recognised() -> None:
    # 13 px letters (a screenshot) are upscaled; transparent pixels are paper, not black.
    mask = render(f"{STORAGE} Delivery terms: forty five days.", font_px=13, width=700, pad=10)
    img = Image.new("RGBA", mask.size, (0, 0, 0, 0))
    img.putalpha(Image.eval(mask, lambda v: 255 - v))  # black letters on transparency
    got = extract(png(img), "screenshot.png")
    assert_has(got.pages[0].text, STORAGE, "Delivery terms: forty five days")


def test_multipage_tiff_keeps_page_numbers_and_reports_progress() -> None:
    frames = [render(t, width=800) for t in (SUPPLY, PENALTY, GUARANTEE)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    steps: list[tuple[float, str]] = []
    got = extract(buf.getvalue(), "skan.tiff", Options(progress=lambda f, t: steps.append((f, t))))
    assert got.mime_type == "image/tiff"
    assert got.page_count == 3
    assert [p.number for p in got.pages] == [1, 2, 3]
    assert all(p.ocr for p in got.pages)
    for page, phrase in zip(got.pages, (SUPPLY, PENALTY, GUARANTEE), strict=True):
        assert_has(page.text, phrase)
    assert "Распознавание «skan.tiff»: стр. 2/3" in [t for _, t in steps]
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    with pytest.raises(IngestError) as err:
        extract(buf.getvalue(), "skan.tiff", Options(max_pages=2))
    assert "skan.tiff" in str(err.value) and "3" in str(err.value) and "2" in str(err.value)


def test_every_image_extension_is_registered() -> None:
    for ext in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"):
        assert ext in SUPPORTED_EXTENSIONS
    for ext in (".txt", ".md", ".pdf"):
        assert ext in SUPPORTED_EXTENSIONS


@pytest.mark.parametrize("fmt,ext", [("JPEG", ".jpg"), ("WEBP", ".webp"), ("BMP", ".bmp")])
def test_other_formats_are_read(fmt: str, ext: str) -> None:
    buf = io.BytesIO()
    render(GUARANTEE, width=800).convert("RGB").save(buf, format=fmt, quality=90)
    got = extract(buf.getvalue(), f"garantiya{ext}")
    assert_has(got.pages[0].text, GUARANTEE)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # signature, then nonsense
        "Договор".encode() * 30,  # a text file named .png
        png(render(SUPPLY))[:300],  # truncated pixel data
    ],
    ids=["bad-header", "not-an-image", "truncated"],
)
def test_corrupt_png_fails_in_russian_naming_the_file(data: bytes) -> None:
    with pytest.raises(IngestError) as err:
        extract(data, "slomano.png")
    msg = str(err.value)
    assert "«slomano.png»" in msg
    assert "изображени" in msg  # «…не является изображением» / «изображение повреждено»


def test_oversized_image_is_refused_before_decoding() -> None:
    # A valid PNG header declaring 30 000 × 30 000 pixels: a decompression bomb.
    ihdr = (30_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\x00" * 64)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
    data += _png_chunk(b"IEND", b"")
    with pytest.raises(IngestError) as err:
        extract(data, "bomba.png")
    assert "«bomba.png»" in str(err.value) and "слишком большое" in str(err.value)


def test_image_without_text_fails_clearly() -> None:
    with pytest.raises(IngestError) as err:
        extract(png(Image.new("L", (600, 400), 255)), "pusto.png")
    assert "«pusto.png»" in str(err.value) and "текст" in str(err.value)


# -- PDFs -------------------------------------------------------------------------------------


def test_fact_only_on_scanned_page_two_is_found_there(library: Library) -> None:
    pages = [render(f"Раздел первый. {STORAGE}"), render(f"Раздел второй. {SUPPLY}")]
    steps: list[str] = []
    res = library.ingest("skan.pdf", image_pdf(pages), progress=lambda _f, t: steps.append(t))
    assert res.status == "indexed", res.message
    assert res.document is not None and res.document.pages == 2
    assert any("Распознавание «skan.pdf»: стр. 2/2" in t for t in steps)
    chunks = library.docs.chunks(res.document.id)
    assert {c.page for c in chunks} == {1, 2} and all(c.ocr for c in chunks)
    hits = library.retriever.search("Какой срок поставки?", k=3)
    assert hits
    assert hits[0].page == 2 and hits[0].ocr, hits[0]
    assert_has(hits[0].text, "сорок пять дней")


def _without_unicode_maps(data: bytes) -> bytes:
    """The same PDF with /ToUnicode removed from its fonts, as broken exports are."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    for page in writer.pages:
        resources: Any = page["/Resources"]
        for font in resources["/Font"].values():
            font.get_object().pop(NameObject("/ToUnicode"), None)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _fpdf(font_size: int = 14) -> Any:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=font_size)
    return pdf


def test_text_layer_without_unicode_map_is_recognised_instead() -> None:
    pdf = _fpdf()
    pdf.add_page()
    pdf.multi_cell(0, 8, f"{SUPPLY} {PENALTY}")
    data = _without_unicode_maps(bytes(pdf.output()))
    raw = PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert looks_like_garbage(raw), raw  # what pypdf reads is glyph numbers
    got = extract(data, "bez-unicode.pdf")
    assert [p.number for p in got.pages] == [1] and got.pages[0].ocr
    assert_has(got.pages[0].text, SUPPLY, PENALTY)


QWERTY = dict(
    zip(
        "йцукенгшщзхъфывапролджэячсмитьбю",
        "qwertyuiop[]asdfghjkl;'zxcvbnm,.",
        strict=True,
    )
)


def on_latin_keys(text: str) -> str:
    """Russian typed with a Latin layout («Срок» -> «Chjr»): a classic broken text layer."""
    out = []
    for c in text:
        low = QWERTY.get(c.lower(), c)
        out.append(low.upper() if c.isupper() else low)
    return "".join(out)


def test_gibberish_text_layer_over_a_scan_is_replaced_by_ocr() -> None:
    # A scanned page whose invisible text layer is Latin gibberish.
    scan = io.BytesIO()
    render(f"{GUARANTEE}\n{STORAGE}", width=1000).save(scan, format="PNG")
    pdf = _fpdf(11)
    pdf.add_page()
    pdf.image(scan, x=10, y=10, w=190)
    pdf.text_mode = "INVISIBLE"
    pdf.set_xy(10, 12)
    pdf.multi_cell(190, 6, on_latin_keys(f"{GUARANTEE} {STORAGE}"))
    data = bytes(pdf.output())
    raw = PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert "Chjr" in raw or "Ufhfy" in raw, raw
    got = extract(data, "gibberish.pdf")
    assert got.pages[0].ocr
    assert_has(got.pages[0].text, GUARANTEE, STORAGE)


def test_text_pdf_is_not_recognised(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ocr(*_args: object, **_kwargs: object) -> str:
        raise AssertionError("a page with a good text layer was sent to OCR")

    monkeypatch.setattr(ocr, "ocr_image", no_ocr)
    pdf = _fpdf(12)
    for text in (SUPPLY * 3, PENALTY * 3, "Contract terms: the supplier delivers within 45 days. " * 3):
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    started = time.perf_counter()
    got = extract(bytes(pdf.output()), "tekst.pdf")
    assert time.perf_counter() - started < 5
    assert [p.number for p in got.pages] == [1, 2, 3]
    assert not any(p.ocr for p in got.pages)


def test_mixed_pdf_recognises_only_the_scanned_page() -> None:
    pdf = _fpdf(12)
    pdf.add_page()
    pdf.multi_cell(0, 8, f"Текстовая страница. {PENALTY}")
    pdf.add_page()
    scan = io.BytesIO()
    render(SUPPLY, width=1000).save(scan, format="PNG")
    pdf.image(scan, x=10, y=10, w=190)
    got = extract(bytes(pdf.output()), "smeshannyi.pdf")
    assert [(p.number, p.ocr) for p in got.pages] == [(1, False), (2, True)]
    assert_has(got.pages[0].text, PENALTY)
    assert_has(got.pages[1].text, SUPPLY)


# -- text-layer quality -----------------------------------------------------------------------

REAL_LAYERS = {
    "russian": f"{SUPPLY} {PENALTY} {STORAGE} Стороны договорились о нижеследующем.",
    "english": "The supplier shall deliver the goods within forty-five days of the prepayment. "
    "Payment is made in roubles by bank transfer to the supplier's account.",
    "numbers table": "№ п/п Наименование Кол-во Цена, руб. Сумма\n1 Болт М8×40 1 200 4,50 5 400,00\n"
    "2 Гайка М8 1 200 1,20 1 440,00\n3 Шайба 8 2 400 0,35 840,00\nИтого: 7 680,00 руб. (НДС 20 %)",
    "contents": "Содержание\nВведение ........................ 3\nГлава 1. Общие положения ...... 5\n"
    "Глава 2. Порядок расчётов ....... 12\nЗаключение ..................... 40",
    "codes and acronyms": "HTTP, TCP, SMTP и DNS — протоколы. ГОСТ Р 7.0.97-2016, СНиП 2.01.07-85, "
    "ISO 9001:2015, ИНН 7707083893, КПП 773601001, тел. +7 (495) 123-45-67, e-mail: info@example.ru",
    "ukrainian and french": "Договір поставки між сторонами. Les parties conviennent de ce qui "
    "suit: le délai de livraison est de quarante-cinq jours à compter du paiement.",
    "short": "— 3 —",
    "capitals": f"ДОГОВОР ПОСТАВКИ. {SUPPLY.upper()}",
    "ukrainian": "Договір поставки між сторонами укладено відповідно до чинного законодавства України. "
    "Постачальник зобов'язується передати товар у власність покупця.",
    "belarusian": "Беларуская мова — нацыянальная мова беларусаў, уваходзіць у індаеўрапейскую моўную "
    "сям'ю, славянскую групу, усходнеславянскую падгрупу.",
    "serbian": "Српски језик припада словенској групи језика породице индоевропских језика. "
    "Службени је језик у Србији и Босни и Херцеговини.",
    "kazakh": "Қазақ тілі — Қазақстан Республикасының мемлекеттік тілі, қыпшақ тобына жататын түркі "
    "тілдерінің бірі.",
}


@pytest.mark.parametrize("text", REAL_LAYERS.values(), ids=REAL_LAYERS.keys())
def test_real_text_layers_are_not_garbage(text: str) -> None:
    assert not looks_like_garbage(text)


GARBAGE_LAYERS = {
    "control characters": "\x01\x02\x03\x04  \x05\x03\x06\x07\x08\t\x04\n \x06\x03\x06\x07\x08\t\x0b",
    "private use": "\ue000\ue001\ue002 \ue003\ue004 \ue005\ue006\ue007\ue008 \ue009\ue00a",
    "replacement": "\ufffd\ufffd\ufffd\ufffd \ufffd\ufffd\ufffd \ufffd\ufffd\ufffd\ufffd\ufffd",
    "cp1251 read as latin-1": SUPPLY.encode("cp1251").decode("latin-1"),
    "utf-8 read as cp1252": SUPPLY.encode("utf-8").decode("cp1252", "replace"),
    "latin keyboard layout": on_latin_keys(f"{SUPPLY} {PENALTY}"),
    "cp1251 read as koi8-r": SUPPLY.encode("cp1251").decode("koi8_r"),
    "koi8-r read as cp1251": PENALTY.encode("koi8_r").decode("cp1251"),
    "cp1251 read as cp866": SUPPLY.encode("cp1251").decode("cp866"),
    "glyph numbers": "5:+8/% 2$#!& (=)*8 3@.+/ 7#%&) 1+*=( $8/@ 9!(%# 4&*)+ 6/@$=",
    "latin look-alikes in words": "Cрoк пocтaвки cocтaвляeт copoк пять днeй c мoмeнтa внeceния "
    "пpeдoплaты, oплaтa пpoизвoдитcя в pyбляx",
}


@pytest.mark.parametrize("text", GARBAGE_LAYERS.values(), ids=GARBAGE_LAYERS.keys())
def test_garbage_text_layers_are_detected(text: str) -> None:
    assert looks_like_garbage(text), text


# -- without Tesseract ------------------------------------------------------------------------


def test_without_tesseract_images_fail_with_install_hint_and_text_still_works(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    (tmp_path / "skan.png").write_bytes(png(render(SUPPLY)))
    (tmp_path / "zametka.txt").write_text(f"Заметка. {PENALTY}", encoding="utf-8")
    env = child_env | {"PATH": "/nonexistent"}  # no tesseract (nor anything else) on PATH
    res = subprocess.run(
        [
            sys.executable,  # the venv's python by absolute path
            "-m",
            "rag",
            "ingest",
            str(tmp_path / "skan.png"),
            str(tmp_path / "zametka.txt"),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    failed = next(line for line in res.stdout.splitlines() if "skan.png" in line)
    assert failed.startswith("failed:"), res.stdout
    assert "«skan.png»" in failed and "Tesseract" in failed
    assert "apt-get install tesseract-ocr tesseract-ocr-rus" in failed
    assert "packages.txt" in failed
    indexed = next(line for line in res.stdout.splitlines() if "zametka.txt" in line)
    assert indexed.startswith("indexed:"), res.stdout


def test_tesseract_without_russian_data_is_reported(tmp_path: Path, child_env: dict[str, str]) -> None:
    # An empty tessdata folder: the binary runs but knows no languages.
    (tmp_path / "tessdata").mkdir()
    (tmp_path / "skan.png").write_bytes(png(render(SUPPLY)))
    code = (
        "import sys\n"
        "from rag import IngestError\n"
        "from rag.ingest import extract\n"
        "try:\n"
        f"    extract(open({str(tmp_path / 'skan.png')!r}, 'rb').read(), 'skan.png')\n"
        "except IngestError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(1)\n"
    )
    env = child_env | {"TESSDATA_PREFIX": str(tmp_path / "tessdata")}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "«skan.png»" in res.stdout and "без русского языка" in res.stdout, res.stdout
    assert "tesseract-ocr-rus" in res.stdout
