"""The source view's service (issue 19): a cited fragment opens on its page with its words' boxes
for the user who may read it, and for nobody else; deleted and re-indexed documents say so.

PDFs are laid out here with fpdf2 and scans drawn with Pillow, then indexed for real (PDFium,
Tesseract): the boxes are checked against where the words were put on the page.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont

from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.chat import ChatService, TurnChoice
from rag.ingest import ocr
from rag.library import Library, SourceMissing
from rag.library import render as pictures
from rag.library.sources import CHANGED, DELETED, NOT_FOUND, REINDEXED
from storage import NotFoundError
from storage.models import Access, Role, User

OFFLINE = TurnChoice(provider="offline", model=MODEL_ID)
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
CONTRACT = (
    "ДОГОВОР АРЕНДЫ № 7\n\n1. ПРЕДМЕТ ДОГОВОРА\n\n1.1. Арендодатель передаёт Арендатору склад площадью "
    "300 кв. м.\n\n2. СРОК АРЕНДЫ\n\n2.1. Срок аренды составляет одиннадцать месяцев с даты подписания.\n\n"
    "2.2. Арендатор вправе продлить договор, уведомив Арендодателя за тридцать дней.\n"
)
QUESTION = "Какой срок аренды склада?"


@pytest.fixture
def team(library: Library) -> tuple[Library, User, User]:
    alice = library.users.create("alice")
    bob = library.users.create("bob")
    library.users.create("boss", role=Role.ADMIN)
    return library, alice, bob


def _ask(lib: Library, user: User, question: str = QUESTION) -> Any:
    service = ChatService(
        lib.chats, lib.retriever, {"offline": OfflineProvider()}, actor=lib.actor, scope=lib.scope
    )
    turn = service.ask(None, question, OFFLINE, user=user)
    turn.run()
    return turn


def test_a_cited_fragment_opens_with_its_place_for_its_reader(team: tuple[Library, User, User]) -> None:
    lib, alice, _bob = team
    assert lib.ingest("dogovor_arendy.txt", CONTRACT.encode(), user=alice).status == "indexed"
    turn = _ask(lib, alice)
    top = turn.sources[0]
    # The whole contract is one fragment: it holds clauses 1.1 to 2.2.
    assert top.filename == "dogovor_arendy.txt" and top.anchor == "пп. 1.1–2.2"
    stored = lib.chats.messages(turn.chat.id)[-1].sources[0]
    assert stored.anchor == top.anchor  # kept with the answer
    view = lib.source_view(top.chunk_id, alice)
    assert view.name == "dogovor_arendy.txt" and view.collection == "Мои документы"
    assert view.kind == "text" and view.page is None and view.chunk.anchor == top.anchor
    assert view.label.startswith(f"dogovor_arendy.txt · {top.anchor}")
    around = lib.text_around(view)
    assert "одиннадцать месяцев" in around.fragment
    assert (around.before + around.fragment + around.after).replace("…", "") in CONTRACT
    name, data = lib.original(view.document.id, alice)
    assert (name, data) == ("dogovor_arendy.txt", CONTRACT.encode())


def test_another_member_gets_not_found_as_for_no_such_fragment(team: tuple[Library, User, User]) -> None:
    lib, alice, bob = team
    lib.ingest("dogovor_arendy.txt", CONTRACT.encode(), user=alice)
    chunk_id = _ask(lib, alice).sources[0].chunk_id
    for who, wanted in ((bob, chunk_id), (alice, "0" * 32), (alice, "../../etc/passwd"), (alice, "")):
        with pytest.raises(SourceMissing) as err:
            lib.source_view(wanted, who)
        assert str(err.value) == NOT_FOUND
    document_id = lib.source_view(chunk_id, alice).document.id
    with pytest.raises(NotFoundError):
        lib.original(document_id, bob)
    # Shared with bob by name, the same address opens for him.
    coll = lib.access.personal_collection(alice)
    lib.collections.grant(coll.id, bob.id, Access.READ)
    assert lib.source_view(chunk_id, bob).name == "dogovor_arendy.txt"
    assert lib.original(document_id, bob)[1] == CONTRACT.encode()


def test_deleted_and_reindexed_documents_say_so(team: tuple[Library, User, User]) -> None:
    lib, alice, bob = team
    res = lib.ingest("dogovor_arendy.txt", CONTRACT.encode(), user=alice)
    assert res.document is not None
    old = _ask(lib, alice).sources[0]
    lib.reindex(res.document.id)
    moved = lib.source_view(old.chunk_id, alice)
    assert moved.note == REINDEXED and moved.chunk.id != old.chunk_id
    assert " ".join(moved.chunk.text.split()) == " ".join(old.text.split())
    with pytest.raises(SourceMissing) as err:
        lib.source_view(old.chunk_id, bob)  # no citation of it in bob's chats: nothing to say
    assert str(err.value) == NOT_FOUND
    assert lib.remove(res.document.id, alice)
    with pytest.raises(SourceMissing) as err:
        lib.source_view(old.chunk_id, alice)
    assert str(err.value) == DELETED


def test_a_changed_document_says_the_fragment_is_gone(team: tuple[Library, User, User]) -> None:
    lib, alice, _bob = team
    res = lib.ingest("dogovor_arendy.txt", CONTRACT.encode(), user=alice)
    assert res.document is not None
    old = _ask(lib, alice).sources[0]
    # The fragment's text is no longer in the document (as after a re-index of edited bytes).
    lib.docs.store_chunks(res.document.id, [], [])
    with pytest.raises(SourceMissing) as err:
        lib.source_view(old.chunk_id, alice)
    assert str(err.value) == CHANGED


# -- pages and boxes ------------------------------------------------------------------------------

fpdf = pytest.importorskip("fpdf")
needs_font = pytest.mark.skipif(not FONT.exists(), reason=f"needs {FONT} (Debian fonts-dejavu-core)")
LINES = [
    "Настоящий договор регулирует хранение грузов на складе.",
    "2.1. Срок хранения партии составляет сорок пять суток.",
    "2.2. Температура в камере поддерживается от плюс двух градусов.",
]


def _pdf(pages: int = 3) -> tuple[bytes, tuple[float, float]]:
    """A PDF whose page 2 holds the LINES at known places; the y (mm) of «Срок хранения»."""
    pdf = fpdf.FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=12)
    pdf.set_auto_page_break(False)
    for n in range(1, pages + 1):
        pdf.add_page()
        if n == 2:
            for k, line in enumerate(LINES):
                pdf.text(20, 100 + 12 * k, line)
        else:
            pdf.text(20, 40, f"Страница {n}: общие положения о порядке работы склада.")
    return bytes(pdf.output()), (20 / 210, 112 / 297)


def _yellow(image: Image.Image, box: tuple[float, float, float, float]) -> float:
    """The share of marker-yellow pixels in a box of the picture (paper under the marker)."""
    w, h = image.size
    area = image.convert("RGB").crop(
        (round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h))
    )
    pixels = list(area.getdata())
    return sum(1 for r, g, b in pixels if r > 200 and g > 170 and b < 120) / max(len(pixels), 1)


@needs_font
def test_a_pdf_fragment_has_its_words_boxes_on_its_page(team: tuple[Library, User, User]) -> None:
    lib, alice, _bob = team
    data, (x, _) = _pdf()
    assert lib.ingest("hranenie.pdf", data, user=alice).status == "indexed"
    hit = next(s for s in _ask(lib, alice, "Какой срок хранения партии?").sources if s.page == 2)
    view = lib.source_view(hit.chunk_id, alice)
    assert (view.kind, view.page, view.pages) == ("pdf", 2, 3)
    assert view.boxes and not view.chunk.ocr
    # Each printed line is boxed where it was printed: its left edge at 20 mm, its baseline at
    # 100, 112 and 124 mm from the top (the box ends a little below it, starts a letter above).
    lines = sorted(view.boxes, key=lambda b: b[1])
    assert len(lines) == len(LINES)
    for k, box in enumerate(lines):
        baseline = (100 + 12 * k) / 297
        assert abs(box[0] - x) < 0.01 and abs(box[3] - baseline) < 0.008 and box[1] < baseline - 0.005
    line = lines[1]
    image = pictures.pdf_page(data, 2, view.boxes, ocr=False)
    assert _yellow(image, line) > 0.5
    assert _yellow(image, (0.1, 0.8, 0.9, 0.9)) == 0  # paper elsewhere stays white
    # Another page of the same document: no marks.
    other = lib.source_view(hit.chunk_id, alice, page=3)
    assert other.page == 3 and other.boxes == [] and not other.on_fragment_page
    assert lib.source_view(hit.chunk_id, alice, page=99).page == 3


@needs_font
@pytest.mark.skipif(not ocr.tesseract_available(), reason="needs Tesseract with Russian")
def test_a_scanned_page_keeps_tesseract_word_boxes(team: tuple[Library, User, User]) -> None:
    lib, alice, _bob = team
    width, height = 1240, 1754  # A4 at 150 dpi
    scan = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(scan)
    font = ImageFont.truetype(str(FONT), 34)
    for k, line in enumerate(LINES):
        draw.text((150, 600 + 70 * k), line, font=font, fill=0)
    buf = io.BytesIO()
    scan.save(buf, format="PDF", resolution=150.0)
    assert lib.ingest("skan.pdf", buf.getvalue(), user=alice).status == "indexed"
    hit = _ask(lib, alice, "Какой срок хранения партии?").sources[0]
    view = lib.source_view(hit.chunk_id, alice)
    assert view.chunk.ocr and view.kind == "pdf" and view.boxes
    # The second line was drawn 670 px down from the top, from 150 px on the left.
    line = min(view.boxes, key=lambda b: abs(b[1] - 670 / height))
    assert abs(line[0] - 150 / width) < 0.01 and abs(line[1] - 670 / height) < 0.015
    image = pictures.pdf_page(buf.getvalue(), 1, view.boxes, ocr=True)
    assert _yellow(image, line) > 0.5


def test_the_marker_keeps_colour_and_greys_alike() -> None:
    page = Image.new("RGB", (200, 100), (255, 255, 255))
    ImageDraw.Draw(page).rectangle((150, 10, 190, 50), fill=(200, 0, 0))  # a red stamp
    box = (0.1, 0.4, 0.5, 0.6)
    marked = pictures.mark(page, [box]).convert("RGB")
    assert marked.getpixel((170, 30)) == (200, 0, 0)  # the colour is kept
    assert _yellow(marked, box) > 0.9 and _yellow(marked, (0.6, 0.7, 0.7, 0.9)) == 0
    grey = pictures.mark(page.convert("L"), [box])
    assert grey.mode == "P" and _yellow(grey, box) > 0.9  # greys: a palette image, marked the same
    assert pictures.strip(grey, [box]) is not None and pictures.strip(grey, []) is None
