"""Hostile files through the real library (e5 embedder, Chroma, SQLite).

Every file is generated here. Each one ends either indexed, with its real text in the chunks,
or failed with a Russian reason and nothing of it left in SQLite, the keyword index, Chroma or
the file store. Nothing is written outside the data directory, and nothing takes minutes.
"""

from __future__ import annotations

import functools
import io
import random
import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter
from sqlalchemy import text

from rag.library import IngestResult, Library
from storage import DocumentStatus

fpdf = pytest.importorskip("fpdf")

# Far below what OCR of 2,000 blank pages (minutes) or unpacking gigabytes would take.
SECONDS = 30.0
CYRILLIC = re.compile(r"[А-Яа-яЁё]")
# Latin words a Russian message may name: products and formats, not internals.
NAMES = {"Word", "LibreOffice", "OpenDocument", "Tesseract", "WebP"}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\r]")

REPORT = (
    "Отчёт о продажах за 2024 год. Выручка компании выросла на двенадцать процентов.\n"
    "Лучше всего продавались садовые инструменты; хуже всего — зимние шины.\n"
)
LEASE = (
    "Договор аренды нежилого помещения.\n"
    "Срок аренды составляет одиннадцать месяцев с даты подписания договора.\n"
    "Арендная плата составляет сорок пять тысяч рублей в месяц.\n"
)
RECIPE = (
    "Рецепт борща. Свёклу тушат отдельно с уксусом, капусту кладут в кипящий бульон.\n"
    "Бульон варят два часа на медленном огне.\n"
)


# -- the corpus ---------------------------------------------------------------------------------


def _pdf(pages: list[str]) -> bytes:
    """A PDF with one page per string; an empty string gives a page with nothing on it."""
    pdf = fpdf.FPDF()
    pdf.set_font("Helvetica", size=12)
    for page in pages:
        pdf.add_page()
        if page:
            pdf.multi_cell(0, 8, page)
    return bytes(pdf.output())


LOREM = "The lease term is eleven months from the date of signing. The rent is paid monthly. " * 6


def truncated_pdf(_folder: Path) -> bytes:
    """A five-page PDF cut off after 60 % of its bytes (an interrupted download)."""
    data = _pdf([LOREM] * 5)
    return data[: len(data) * 6 // 10]


def encrypted_pdf(_folder: Path) -> bytes:
    """A PDF that opens only with its user password (AES-256)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf([LOREM]))))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@functools.cache
def _blank_pdf() -> bytes:
    return _pdf([""] * 2000)


def blank_pdf(_folder: Path) -> bytes:
    """2,000 pages with nothing on them: no text layer, no images."""
    return _blank_pdf()


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A ZIP archive of members already deflated: (name, raw deflate data, CRC-32, unpacked size)."""
    local, central = bytearray(), bytearray()
    for name, raw, crc, size in members:
        encoded, offset = name.encode(), len(local)
        local += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(raw), size, len(encoded), 0
        )
        local += encoded + raw
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(raw), size, len(encoded),
            0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(local), 0)
    return bytes(local + central + end)


def _deflated(head: bytes, block: bytes, repeat: int, tail: bytes) -> tuple[bytes, int, int]:
    """Raw deflate of head + block * repeat + tail, built from one compressed block."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor has forgotten all it saw: equal blocks give equal bytes.
    packed = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    last = comp.compress(tail) + comp.flush()
    crc = zlib.crc32(head)
    for _ in range(repeat):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    return first + packed * repeat + last, crc, len(head) + len(block) * repeat + len(tail)


@functools.cache
def _docx_bomb() -> bytes:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    head = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{w}"><w:body>'.encode()
    tail = "<w:p><w:r><w:t>Бомба</w:t></w:r></w:p></w:body></w:document>".encode()
    raw, crc, size = _deflated(head, b" " * (16 << 20), 128, tail)  # 2 GiB of XML whitespace
    types = (
        b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        b'wordprocessingml.document.main+xml"/></Types>'
    )
    packed_types = zlib.compress(types, 9)[2:-4]  # strip the zlib header and checksum: raw deflate
    return _zip(
        [
            ("[Content_Types].xml", packed_types, zlib.crc32(types), len(types)),
            ("word/document.xml", raw, crc, size),
        ]
    )


def docx_bomb(_folder: Path) -> bytes:
    """A 2 MB .docx whose word/document.xml inflates to 2 GiB."""
    data = _docx_bomb()
    assert len(data) < 3 * 1024 * 1024
    return data


def huge_text(folder: Path) -> bytes:
    """200 MB of Russian text, written in big blocks and read back as an upload would be."""
    path = folder / "огромный.txt"
    block = (LEASE * 100_000).encode()[: 8 * 1024 * 1024]
    with path.open("wb") as f:
        for _ in range(25):
            f.write(block)
    assert path.stat().st_size == 200 * 1024 * 1024
    return path.read_bytes()


def script_page(_folder: Path) -> bytes:
    """A page drowned in scripts: in the head, the body, handlers, javascript: links, an unclosed one."""
    rng = random.Random(7)
    noise = "".join(
        f"<script>var v{i} = 'СКРИПТ_{rng.randrange(10**6)}'; eval(atob('YWxlcnQoMSk='));</script>\n"
        for i in range(300)
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Отчёт о продажах</title>
<script>var secret = 'СКРИПТ_ГОЛОВЫ'; alert(1);</script><style>p {{ color: red }}</style></head>
<body>{noise}<script>document.write('СКРИПТ_ТЕЛА')</script><noscript>НОСКРИПТ_ТЕКСТ</noscript>
<h1>Годовой отчёт</h1>
<p onclick="alert('ОБРАБОТЧИК_КЛИКА')">Выручка компании выросла на двенадцать процентов по сравнению
с прошлым годом.</p>{noise}
<img src="x.png" onerror="alert('ОБРАБОТЧИК_КАРТИНКИ')">
<script type="text/javascript">
// <![CDATA[
for (var i = 0; i < 10; i++) {{ console.log("СКРИПТ_ЦИКЛА"); }}
// ]]>
</script>
<p>Чистая прибыль составила три с половиной миллиарда рублей.
<a href="javascript:alert('СКРИПТ_ССЫЛКИ')">Подробнее</a></p>
<SCRIPT>ВЕРХНИЙ_РЕГИСТР()</SCRIPT><script src="evil.js"></script>
<script>unclosed('СКРИПТ_НЕЗАКРЫТЫЙ')
</body></html>"""
    return page.encode()


EOL_NUL = (
    "Первая строка протокола.\r\n"
    "Вторая строка, записанная в Windows.\r\n"
    "Третья строка\x00 из старого Mac.\r"
    "Четвёртая строка из Unix.\n"
    "\x00Пятая строка после нулевого байта.\r\n\r\n"
    "Последний абзац\x00\x00 с двумя нулями.\n"
)
EOL_PHRASES = (
    "Первая строка протокола.",
    "Вторая строка, записанная в Windows.",
    "Третья строка из старого Mac.",
    "Четвёртая строка из Unix.",
    "Пятая строка после нулевого байта.",
    "Последний абзац с двумя нулями.",
)


def constant(data: bytes) -> Callable[[Path], bytes]:
    """A maker for fixed bytes."""
    return lambda _folder: data


@dataclass(frozen=True)
class Hostile:
    """One hostile file and how it must end."""

    id: str
    filename: str  # as an uploader or the CLI hands it to the library
    make: Callable[[Path], bytes]  # gets a folder outside the data directory to work in
    indexed: tuple[str, ...] = ()  # phrases the chunks must hold (the file is indexed)
    absent: tuple[str, ...] = ()  # what no chunk may hold
    reason: str = ""  # pattern of the Russian refusal (the file fails)
    shown: str | None = None  # the name the library shows, when not the file name itself


CORPUS = [
    Hostile("empty-txt", "пустой.txt", constant(b""), reason=r"файл пуст"),
    Hostile("empty-pdf", "пустой.pdf", constant(b""), reason=r"файл пуст"),
    Hostile("one-byte-txt", "1 байт.txt", constant(b"\x01"), reason=r"нет текста"),
    Hostile("one-byte-pdf", "1 байт.pdf", constant(b"%"), reason=r"PDF повреждён"),
    Hostile("one-byte-docx", "1 байт.docx", constant(b"P"), reason=r"не является документом Word"),
    Hostile("one-byte-png", "1 байт.png", constant(b"\x89"), reason=r"не является изображением"),
    Hostile(
        "random-binary-txt",
        "notes.txt",
        constant(random.Random(20_240_601).randbytes(256 * 1024)),
        reason=r"не похож на текст \(двоичные данные\)",
    ),
    Hostile("truncated-pdf", "обрыв.pdf", truncated_pdf, reason=r"PDF повреждён"),
    Hostile("encrypted-pdf", "секрет.pdf", encrypted_pdf, reason=r"защищён паролем"),
    Hostile("blank-2000-pdf", "2000 пустых страниц.pdf", blank_pdf, reason=r"все страницы \(2000\) пустые"),
    Hostile("docx-zip-bomb", "бомба.docx", docx_bomb, reason=r"в распакованном виде .* 2048 МБ"),
    Hostile(
        "200-mb-txt", "огромный.txt", huge_text, reason=r"слишком большой \(200\.0 МБ\).*RAG_MAX_FILE_MB"
    ),
    Hostile(
        "posix-traversal",
        "../../etc/passwd.txt",
        constant(LEASE.encode()),
        indexed=("Срок аренды составляет одиннадцать месяцев",),
        shown="passwd.txt",
    ),
    Hostile(
        "windows-traversal",
        "..\\..\\Windows\\System32\\drivers\\etc\\hosts.txt",
        constant(RECIPE.encode()),
        indexed=("Бульон варят два часа",),
        shown="hosts.txt",
    ),
    Hostile(
        "cyrillic-name-with-spaces",
        "Отчёт о продажах за 2024 год (итог).txt",
        constant(REPORT.encode()),
        indexed=("Выручка компании выросла на двенадцать процентов",),
    ),
    Hostile(
        "html-full-of-scripts",
        "отчёт.html",
        script_page,
        indexed=(
            "Выручка компании выросла на двенадцать процентов",
            "Чистая прибыль составила три с половиной миллиарда рублей",
        ),
        absent=(
            "СКРИПТ",
            "alert",
            "eval",
            "document.write",
            "console",
            "НОСКРИПТ",
            "ОБРАБОТЧИК",
            "javascript",
            "ВЕРХНИЙ_РЕГИСТР",
            "evil.js",
            "<script",
            "color: red",
        ),
    ),
    Hostile(
        "mixed-eol-nul-utf8",
        "протокол.txt",
        constant(EOL_NUL.encode()),
        indexed=EOL_PHRASES,
    ),
    Hostile(
        "mixed-eol-nul-cp1251",
        "протокол-1251.txt",
        constant(EOL_NUL.encode("cp1251")),
        indexed=EOL_PHRASES,
    ),
    Hostile(
        # UTF-16 saved without a byte order mark: read truly, not refused as binary.
        "utf16-without-bom",
        "договор-utf16.txt",
        constant(LEASE.encode("utf-16-le")),
        indexed=("Арендная плата составляет сорок пять тысяч рублей",),
    ),
    Hostile(
        # Two Russian code pages glued together: whichever is chosen, half comes out as letter soup.
        "koi8r-and-cp1251",
        "склейка.txt",
        constant((LEASE * 3).encode("koi8_r") + (RECIPE * 3).encode("cp1251")),
        reason=r"не удалось определить кодировку.*смешаны разные кодировки",
    ),
    Hostile(
        "cp866-and-cp1251",
        "склейка-dos.txt",
        constant((LEASE * 3).encode("cp866") + (RECIPE * 3).encode("cp1251")),
        reason=r"не удалось определить кодировку",
    ),
    Hostile(
        "utf8-and-cp1251",
        "склейка-utf8.txt",
        constant((LEASE * 3).encode() + (RECIPE * 3).encode("cp1251")),
        reason=r"не удалось определить кодировку",
    ),
]


# -- checks ---------------------------------------------------------------------------------------


def snapshot(root: Path, skip: Path) -> dict[str, int]:
    """Every path under root outside ``skip``, with its modification time."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if not p.is_relative_to(skip)
    }


def keyword_rows(lib: Library, document_id: str) -> int:
    with lib.engine.connect() as conn:
        q = text("SELECT count(*) FROM chunk_fts WHERE document_id = :d")
        return int(conn.execute(q, {"d": document_id}).scalar_one())


def assert_russian_reason(message: str, filename: str) -> None:
    """A reason a user reads: names the file, Russian words, no traceback or Python internals."""
    assert f"«{filename}»" in message, message
    for internal in ("Traceback", 'File "', "Error", "Exception", "errno", "\n"):
        assert internal not in message, message
    rest = message.replace(f"«{filename}»", "")
    rest = re.sub(r"\.[A-Za-z0-9]+\b", "", rest)  # file extensions (.txt, .docx) are Latin
    latin = re.findall(r"[A-Za-z_]{3,}", rest)
    english = [w for w in latin if not w.isupper() and w not in NAMES]
    assert english == [], message
    # What is left besides acronyms (PDF, RAG_MAX_FILE_MB) and product names is Russian.
    letters = [c for c in re.sub(r"[A-Za-z_]{3,}", "", rest) if c.isalpha()]
    assert sum(bool(CYRILLIC.match(c)) for c in letters) / len(letters) > 0.9, message
    assert len(re.findall(r"[А-Яа-яЁё]{2,}", rest)) >= 2, message


def assert_nothing_left(lib: Library, res: IngestResult) -> None:
    """A failed document keeps its row (with the reason) and nothing else."""
    if res.document is None:  # refused before a row was written
        assert lib.docs.list_all() == []
    else:
        doc = lib.docs.get(res.document.id)
        assert doc.status == DocumentStatus.FAILED
        assert doc.error == res.message
        assert doc.chunk_count == 0 and doc.stored_path is None
        assert lib.docs.chunks(doc.id) == []
        assert keyword_rows(lib, doc.id) == 0
        for model in lib.vectors.models():
            assert doc.id not in lib.vectors.document_ids(model)
    assert lib.docs.totals()["chunks"] == 0
    files = lib.settings.files_dir
    assert not files.exists() or list(files.iterdir()) == [], "a failed file must not keep its original"


def assert_indexed(lib: Library, res: IngestResult, case: Hostile, data: bytes) -> None:
    """Ready, with the expected text in clean chunks, keyword rows, vectors and a safe original."""
    assert res.status == "indexed", res.message
    assert res.document is not None
    doc = lib.docs.get(res.document.id)
    assert doc.status == DocumentStatus.READY
    # The shown name is the base name: no folders, nothing that climbs out of one.
    assert doc.filename == (case.shown or case.filename)
    assert not re.search(r"[/\\]", doc.filename) and not doc.filename.startswith(".")
    chunks = lib.docs.chunks(doc.id)
    assert chunks and doc.chunk_count == len(chunks)
    joined = " ".join(" ".join(c.text.split()) for c in chunks)
    for phrase in case.indexed:
        assert phrase in joined
    for junk in case.absent:
        assert junk not in joined
    assert not any(CONTROL.search(c.text) for c in chunks)
    assert keyword_rows(lib, doc.id) == len(chunks)
    for model in lib.embedding_models:  # every vector channel has every chunk
        assert {c.id for c in chunks} <= lib.vectors.ids(model)
    # The key is a bare file name inside the files folder (never a path the upload could steer).
    assert doc.stored_path is not None
    assert re.fullmatch(r"[0-9a-f]{64}(\.[a-z0-9]+)?", doc.stored_path)
    assert (lib.settings.files_dir / doc.stored_path).read_bytes() == data
    assert lib.originals.get(doc.stored_path) == data
    hits = lib.retriever.search(case.indexed[0], k=3)
    assert hits and hits[0].document_id == doc.id


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_hostile_file_is_indexed_or_refused_cleanly(
    case: Hostile, make_library: Callable[..., Library], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"  # a sibling of the data directory, like a user's folder
    outside.mkdir()
    data = case.make(outside)
    lib = make_library(tmp_path / "data")
    data_dir = lib.settings.data_dir
    before = snapshot(tmp_path, data_dir)

    started = time.monotonic()
    res = lib.ingest(case.filename, data)
    elapsed = time.monotonic() - started

    assert elapsed < SECONDS, f"{case.id} took {elapsed:.0f} s"
    assert snapshot(tmp_path, data_dir) == before, "something was written outside the data directory"
    assert not Path("/etc/passwd.txt").exists()
    assert not (tmp_path.parent / "etc").exists() and not (tmp_path / "etc").exists()
    assert not [p for p in data_dir.rglob("*") if p.name in ("etc", "passwd.txt", "hosts.txt")]
    if case.reason:
        assert res.status == "failed"
        assert_russian_reason(res.message, case.shown or case.filename)
        assert re.search(case.reason, res.message), res.message
        assert_nothing_left(lib, res)
    else:
        assert_indexed(lib, res, case, data)
    assert lib.check().ok


def test_whole_corpus_in_one_library_stays_consistent(
    make_library: Callable[..., Library], tmp_path: Path
) -> None:
    # The corpus (but the 200 MB file) as one batch: the good files are indexed and searchable,
    # each failure keeps only its row, and the same bad bytes again fail the same way, in place.
    lib = make_library(tmp_path / "data")
    cases = [c for c in CORPUS if c.id != "200-mb-txt"]
    results = {c.id: lib.ingest(c.filename, c.make(tmp_path)) for c in cases}
    assert {k for k, r in results.items() if r.status == "indexed"} == {c.id for c in cases if not c.reason}
    assert {k for k, r in results.items() if r.status == "failed"} == {c.id for c in cases if c.reason}
    assert lib.check().ok
    originals = {
        Path(r.document.stored_path or "").name
        for r in results.values()
        if r.document and r.status == "indexed"
    }
    assert {p.name for p in lib.settings.files_dir.iterdir()} == originals
    rows = len(lib.docs.list_all())
    again = lib.ingest("обрыв-2.pdf", truncated_pdf(tmp_path))
    assert again.status == "failed" and "PDF повреждён" in again.message
    assert again.document is not None and again.document.id == results["truncated-pdf"].document.id  # type: ignore[union-attr]
    assert len(lib.docs.list_all()) == rows
    assert lib.check().ok
