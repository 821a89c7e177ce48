"""Opening a source (issue 19): milliseconds from the request to the picture (or the marked text),
for a page of a 100-page PDF and for a DOCX, cold and cached.

    nice -n 5 .venv/bin/python bench/source_view.py [--opens 40] [--pages 100]

A fresh library in a temporary folder indexes a generated 100-page PDF (about 300 words a page,
numbered clauses) and a generated DOCX (headings and about 60 paragraphs); then, for ``--opens``
fragments picked at random from each:

- ``cold``: the render cache emptied first: ``Library.source_view`` (the access check, the
  fragment's row), reading the original, rendering the page with PDFium at the view's width,
  marking it and encoding the whole page and the marked band as PNG (``ui.source_view``) — for
  the DOCX, extracting the document's text again and cutting the text around the fragment;
- ``cached``: the same fragment again: the service again, the picture from the cache.

Prints one JSON object per document and mode (p50, p95, max in ms) and the PNG sizes.

``--browser`` adds the browser's side for the PDF: the app is started on the library (``streamlit
run``, Debian's chromium through Playwright, as the e2e tests do), a fragment's view is opened,
and «Следующая →» is clicked ``--opens`` times: from the click to the new page's picture loaded
and decoded in the page (``img.complete``), each page seen for the first time (cold). Then, the
reader's own path: questions asked in the chat, and each source link under the answers clicked,
to the PDF page's picture or the DOCX's marked fragment (``browser_from_chat``).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.library import Library, open_library
from settings import Settings

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
SENTENCES = [
    "Хранитель обеспечивает хранение Товара при температуре от плюс двух до плюс восьми градусов.",
    "Поклажедатель оплачивает услуги в течение пятнадцати календарных дней с даты счёта.",
    "Претензия рассматривается получившей её Стороной в течение тридцати календарных дней.",
    "Товар принимается по количеству мест без вскрытия упаковки и без взвешивания.",
    "Заявка на выдачу Товара направляется по электронной почте не позднее полудня.",
]


def make_pdf(pages: int) -> bytes:
    """A contract of ``pages`` A4 pages, each a section of numbered clauses."""
    import fpdf

    pdf = fpdf.FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=10)
    pdf.set_auto_page_break(True, margin=15)
    for n in range(1, pages + 1):
        pdf.add_page()
        pdf.set_font_size(12)
        pdf.multi_cell(0, 7, f"{n}. РАЗДЕЛ {n}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font_size(10)
        for k in range(1, 9):
            text = " ".join(SENTENCES[(n + k + j) % len(SENTENCES)] for j in range(3))
            pdf.multi_cell(0, 5, f"{n}.{k}. {text}", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def make_docx(sections: int = 12) -> bytes:
    """A regulation with headings and five paragraphs a section."""
    import docx

    doc = docx.Document()
    doc.add_heading("Положение о складе", level=1)
    for n in range(1, sections + 1):
        doc.add_heading(f"{n}. Раздел {n}", level=2)
        for k in range(1, 6):
            text = " ".join(SENTENCES[(n + k + j) % len(SENTENCES)] for j in range(2))
            doc.add_paragraph(f"{n}.{k}. {text}")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), 1), "p95": round(p95, 1), "max": round(ordered[-1], 1)}


def open_source(library: Library, chunk_id: str) -> int:
    """What the page does for one fragment; returns the bytes it would send."""
    from ui.source_view import marked_html, page_picture, text_around

    view = library.source_view(chunk_id)
    if view.kind == "text":
        return len(marked_html(text_around(library, view)).encode())
    whole, band = page_picture(library, view)
    return len(whole) + len(band or b"")


def measure(library: Library, name: str, chunk_ids: list[str], opens: int) -> list[dict[str, Any]]:
    """Cold and cached opening times for ``opens`` random fragments of one document."""
    import streamlit as st

    rng = random.Random(19)
    picked = [rng.choice(chunk_ids) for _ in range(opens)]
    cold: list[float] = []
    cached: list[float] = []
    sizes: list[int] = []
    for chunk_id in picked:
        st.cache_data.clear()
        start = time.perf_counter()
        sizes.append(open_source(library, chunk_id))
        cold.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        open_source(library, chunk_id)
        cached.append((time.perf_counter() - start) * 1000)
    size = round(statistics.median(sizes) / 1024)
    return [
        {"document": name, "mode": "cold", "opens": opens, "kb_sent": size, **_ms(cold)},
        {"document": name, "mode": "cached", "opens": opens, "kb_sent": size, **_ms(cached)},
    ]


# The view's page picture is decoded in the page, and is not the one whose address is ``old``.
PAGE_SHOWN = """old => {
    const shown = [...document.querySelectorAll('[data-testid="stImage"]')]
        .filter(e => e.innerText.includes('Страница'));
    const img = shown.length ? shown[0].querySelector('img') : null;
    return img !== null && img.getAttribute('src') !== old && img.complete && img.naturalWidth > 0;
}"""


def browser_clicks(data_dir: Path, chunk_id: str, clicks: int) -> dict[str, Any]:
    """Click to picture in chromium: «Следующая →» ``clicks`` times from the fragment's page."""
    from tests.e2e.harness import AppServer, browser

    app = AppServer(data_dir=data_dir, log_path=data_dir / "app.log").start()
    samples: list[float] = []
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(f"{app.url}/source?chunk={chunk_id}")
            picture = page.get_by_test_id("stImage").filter(has_text="Страница").locator("img")
            picture.wait_for()
            for _ in range(clicks):
                before = picture.get_attribute("src")
                start = time.perf_counter()
                page.get_by_role("button", name="Следующая →").click()
                page.wait_for_function(PAGE_SHOWN, arg=before)
                samples.append((time.perf_counter() - start) * 1000)
    finally:
        app.stop()
    mode = "browser: click to picture, cold page"
    return {"document": "pdf", "mode": mode, "opens": clicks, **_ms(samples)}


QUESTIONS = [
    "При какой температуре хранится товар?",
    "В какой срок оплачиваются услуги?",
    "Сколько дней рассматривается претензия?",
    "Как принимается товар?",
    "Когда направляется заявка на выдачу товара?",
    "Как взвешивают товар при приёмке?",
    "Куда направляется заявка на выдачу?",
    "Кто рассматривает претензию?",
]


def browser_from_chat(data_dir: Path, clicks: int) -> list[dict[str, Any]]:
    """Click to picture from the chat: a source link under an answer, as a reader opens it.

    The offline provider answers ``QUESTIONS`` once; then each source link in turn is clicked
    (``st.page_link``: the same session, no reload) and timed until the view shows the PDF page's
    picture decoded or the DOCX's marked fragment, and «Назад к чату» leads back. A link opened
    again would be cached: each fragment is timed once, so every figure is a cold render.
    """
    import re

    from tests.e2e.harness import AppServer, ask, browser, wait_for_app

    app = AppServer(data_dir=data_dir, log_path=data_dir / "app-chat.log").start()
    samples: dict[str, list[float]] = {"pdf": [], "docx": []}
    try:
        with browser() as b:
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            page.goto(app.url)
            wait_for_app(page, network_idle=False)
            for q in QUESTIONS:
                ask(page, q, network_idle=False)
            link = re.compile(r"\[\d+\] (dogovor|polozhenie)")
            # A link's text starts with its icon's name («find_in_page»): the label is its last line.
            texts = page.get_by_role("link", name=link).all_inner_texts()
            labels = list(dict.fromkeys(t.strip().splitlines()[-1].strip() for t in texts))
            for label in labels[:clicks]:
                kind = "pdf" if "dogovor" in label else "docx"
                target = page.get_by_role("link", name=re.compile(re.escape(label) + "$")).first
                # Playwright clicks only an element that has stopped moving: the chat scrolls to
                # its end for about a second after it is drawn, which a click timed at once would
                # count (0.9 s). A reader clicks a link they see: wait for it to settle first.
                target.hover()
                start = time.perf_counter()
                target.click()
                if kind == "pdf":
                    page.wait_for_function(PAGE_SHOWN, arg=None)
                else:
                    page.get_by_test_id("source-fragment").wait_for()
                samples[kind].append((time.perf_counter() - start) * 1000)
                page.get_by_role("link", name=re.compile("Назад к чату")).click()
                page.get_by_test_id("stChatInputTextArea").wait_for()
                wait_for_app(page, network_idle=False)
    finally:
        app.stop()
    mode = "browser: source link in the chat to picture (PDF) or marked text (DOCX), cold"
    return [{"document": k, "mode": mode, "opens": len(v), **_ms(v)} for k, v in samples.items() if v]


def main() -> None:
    """Index the two documents, open their fragments, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--opens", type=int, default=40)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--browser", action="store_true", help="also click through pages in chromium")
    args = parser.parse_args()
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-source-view-") as folder:
        settings = Settings(_env_file=None, RAG_DATA_DIR=Path(folder), RAG_AUTH="none")
        library = open_library(settings, recover=False)
        docs = {f"dogovor_{args.pages}_str.pdf": make_pdf(args.pages), "polozhenie.docx": make_docx()}
        for name, data in docs.items():
            start = time.perf_counter()
            result = library.ingest(name, data)
            assert result.status == "indexed" and result.document is not None, result.message
            chunks = library.docs.chunks(result.document.id)
            print(
                json.dumps(
                    {
                        "document": name,
                        "pages": result.document.pages,
                        "fragments": len(chunks),
                        "indexed_s": round(time.perf_counter() - start, 1),
                    },
                    ensure_ascii=False,
                ),
                flush=True,
            )
            for row in measure(library, name, [c.id for c in chunks], args.opens):
                print(json.dumps(row, ensure_ascii=False), flush=True)
            if args.browser and name.endswith(".pdf"):
                first = next(c for c in chunks if c.page == 1)
                clicks = min(args.opens, args.pages - 1)
                row = browser_clicks(Path(folder), first.id, clicks)
                print(json.dumps(row, ensure_ascii=False), flush=True)
        if args.browser:
            for row in browser_from_chat(Path(folder), args.opens):
                print(json.dumps(row, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
