"""PDF text layers on real PDFs: pypdf (plain and layout mode) against PDFium's text page, raw and
as indexed (``rag.ingest.pdf_text``), and the whole ``rag.ingest.extract`` (issue 25).

    .venv/bin/python bench/pdf_text.py [PDF or PDF.gz ...] [--rounds 3] [--extract-only]

Without arguments it reads the Debian PDFs installed on this machine (``debian-faq-ru`` from
packages-dev.txt; others under /usr/share/doc when present) and the text-layer PDFs of
``../shared/eval/ru-docs-dev/docs``. For each PDF and extractor it prints one JSON object:

- ``pages_per_s``: pages per second, best of ``--rounds`` (extraction only, in this process);
- ``glued``: tokens of 30+ letters without a space, per 1000 tokens;
- ``nonwords``: tokens no language spells so (``pdf_text._is_nonword``), per 1000 tokens;
- ``bad_chars``: replacement and control characters;
- ``damaged_pages``: pages the gauge (``pdf_text.damage``) calls damaged;
- ``ref_words``: where a plain-text edition exists beside the PDF (``debian-faq.ru.txt.gz``),
  the share of the extracted words (2+ letters) that the edition spells so.

``--extract-only`` prints only ``rag.ingest.extract``'s pages per second: run it with
``PYTHONPATH`` on an older tree (``git worktree add /tmp/base <commit>``) for a before/after.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Appended, not prepended: PYTHONPATH=<an older tree> measures that tree's ``rag`` instead.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from rag.ingest import extract

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PDFS = [
    Path("/usr/share/doc/debian/FAQ/debian-faq.ru.pdf.gz"),
    Path("/usr/share/doc/valgrind/valgrind_manual.pdf.gz"),
    Path("/usr/share/doc/nettle-dev/nettle.pdf.gz"),
    Path("/usr/share/doc/bzip2/manual.pdf.gz"),
    REPO_ROOT.parent / "shared/eval/ru-docs-dev/docs/rukovodstvo_TSD_InfoScan_TS-52.pdf",
    REPO_ROOT.parent / "shared/eval/ru-docs-dev/docs/tarify_VTLK_2024.pdf",
]
_WORD = re.compile(r"[^\W\d_]{2,}")


def read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def reference_words(path: Path) -> set[str] | None:
    """The words of the plain-text edition beside the PDF (Debian ships both), lowercased."""
    name = path.name.removesuffix(".gz").removesuffix(".pdf")
    for candidate in (path.with_name(f"{name}.txt.gz"), path.with_name(f"{name}.txt")):
        if candidate.exists():
            return {w.lower() for w in _WORD.findall(read(candidate).decode("utf-8", "replace"))}
    return None


def pypdf_pages(data: bytes, layout: bool) -> list[str]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if layout:
        texts = [p.extract_text(extraction_mode="layout") for p in reader.pages]
    else:
        texts = [p.extract_text() for p in reader.pages]
    return [re.sub(r"[ \t]{2,}", " ", t or "") for t in texts]


def pdfium_raw(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(data)
    try:
        out = []
        for i in range(len(doc)):
            textpage = doc[i].get_textpage()
            out.append(textpage.get_text_range())
            textpage.close()
        return out
    finally:
        doc.close()


def page_texts(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    from rag.ingest.pdf_text import read_pdf_texts

    doc = pdfium.PdfDocument(data)
    try:
        return [t.text for t in read_pdf_texts(doc)]
    finally:
        doc.close()


def extracted(data: bytes) -> list[str]:
    return [p.text for p in extract(data, "bench.pdf").pages]


EXTRACTORS: dict[str, Callable[[bytes], list[str]]] = {
    "pypdf": lambda d: pypdf_pages(d, layout=False),
    "pypdf-layout": lambda d: pypdf_pages(d, layout=True),
    "pdfium-raw": pdfium_raw,
    "pdfium-page-text": page_texts,
    "extract": extracted,
}


def timed(fn: Callable[[bytes], list[str]], data: bytes, rounds: int) -> tuple[list[str], float]:
    best = float("inf")
    pages: list[str] = []
    for _ in range(rounds):
        started = time.perf_counter()
        pages = fn(data)
        best = min(best, time.perf_counter() - started)
    return pages, best


def quality(pages: list[str], ref: set[str] | None) -> dict[str, Any]:
    from rag.ingest.pdf_text import Damage, damage

    gauges = [damage(p) for p in pages]
    total = sum(gauges, Damage())
    per_k = 1000 / max(total.tokens, 1)
    out: dict[str, Any] = {
        "tokens": total.tokens,
        "glued": round(total.glued * per_k, 2),
        "nonwords": round(total.nonwords * per_k, 2),
        "bad_chars": total.bad_chars,
        "damaged_pages": sum(g.damaged for g in gauges),
    }
    if ref is not None:
        words = [w.lower() for p in pages for w in _WORD.findall(p)]
        out["ref_words"] = round(sum(w in ref for w in words) / max(len(words), 1), 4)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pdfs", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--extract-only", action="store_true")
    args = parser.parse_args()
    paths = [p for p in (args.pdfs or DEFAULT_PDFS) if p.exists()]
    if not paths:
        print("no PDFs found: install debian-faq-ru (packages-dev.txt) or name PDFs", file=sys.stderr)
        return 1
    names = ["extract"] if args.extract_only else list(EXTRACTORS)
    from pypdf import PdfReader

    for path in paths:
        data = read(path)
        count = len(PdfReader(io.BytesIO(data)).pages)  # pages per second count every page
        ref = None if args.extract_only else reference_words(path)
        for name in names:
            pages, seconds = timed(EXTRACTORS[name], data, args.rounds)
            row: dict[str, Any] = {
                "pdf": path.name,
                "extractor": name,
                "pages": count,
                "pages_per_s": round(count / seconds, 1),
            }
            if not args.extract_only:
                row.update(quality(pages, ref))
            print(json.dumps(row, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
