"""Optical character recognition through Tesseract (Russian + English) with cheap preprocessing.

``pytesseract`` is imported lazily: text files and PDFs with a good text layer are read on a
machine without Tesseract. Recognition runs the ``tesseract`` binary directly with
``OMP_THREAD_LIMIT=1`` for that child only: Tesseract's OpenMP threads made a page about four
times slower on the 2-core machine this was measured on (1.1 s instead of 4.2 s for an A4 page),
while setting the variable in this process could also cap the embedder's OpenMP threads.

Preprocessing is cheap and aims at photos and screenshots: grayscale on white (transparency,
EXIF rotation), light text on dark inverted, uneven lighting divided out, small text upscaled to
about 30 px (line pitch measured from the row profile), a median filter on noisy images.

Whether a PDF page's text layer is good enough to skip OCR is decided in ``rag.ingest.pdf``
(``looks_like_garbage``). ``run_parallel`` recognises several pages at once for PDFs and
multi-page TIFFs.

The text comes back as ``Recognised``: a ``str`` that also holds Tesseract's word boxes (its TSV
output of the same run, as fractions of the page) mapped onto the text's offsets, so the source
view marks a fragment of a scan without recognising the page again.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import os
import re
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from rag import IngestError, RagError
from rag.ingest.types import WordBoxes

log = logging.getLogger(__name__)

LANG = "rus+eng"
# --psm 3 (automatic page segmentation) copes with columns, headers and noisy margins; --psm 6
# (one uniform block) was marginally better on clean small text but produced pages of junk on
# noisy photos. --oem 1: the LSTM recogniser, the only one Debian's language data supports.
CONFIG = ("--oem", "1", "--psm", "3")
TIMEOUT_S = 180  # per image; a pathological page must not hang ingestion
# Larger images are refused (decompression bombs, absurd scans): an A3 page at 600 dpi is 70 MP.
MAX_IMAGE_PIXELS = 80_000_000
# What Tesseract is given at most after rescaling (an A4 page at 600 dpi is 35 MP).
MAX_OCR_PIXELS = 40_000_000
# Line pitch (baseline to baseline, px) text is rescaled to when it is smaller than MIN_PITCH:
# about 30 px high letters, where Tesseract is most accurate.
TARGET_PITCH = 45
MIN_PITCH = 36
MAX_UPSCALE = 4.0

INSTALL_HINT = (
    "Установите Tesseract с русским языком: в Debian/Ubuntu — "
    "`sudo apt-get install tesseract-ocr tesseract-ocr-rus tesseract-ocr-eng`; "
    "в Streamlit Cloud — строки tesseract-ocr, tesseract-ocr-rus и tesseract-ocr-eng в packages.txt; "
    "на других системах — по инструкции https://tesseract-ocr.github.io/tessdoc/Installation.html. "
    "После установки перезапустите приложение."
)


class OcrError(RagError):
    """Tesseract failed on one image (crashed, timed out or is missing)."""


@dataclass
class _PageBudget:
    limit: int
    filename: str
    used: int = 0


# The OCR pages left to the file being extracted on this thread (set by ``page_limit``).
_budget: ContextVar[_PageBudget | None] = ContextVar("ocr_page_budget", default=None)


@contextmanager
def page_limit(limit: int | None, filename: str) -> Iterator[None]:
    """Within: ``run_parallel`` refuses the file once it needs more than ``limit`` pages recognised.

    One upload must not hold the indexing queue for everyone (a scan of 2,000 blank pages took
    nine minutes); None sets no limit.
    """
    token = _budget.set(None if limit is None else _PageBudget(limit, filename))
    try:
        yield
    finally:
        _budget.reset(token)


def _counted(jobs: Iterable[Callable[[], str]]) -> Iterator[Callable[[], str]]:
    """The jobs, refusing the file (IngestError) when one more would exceed its page budget."""
    for job in jobs:
        budget = _budget.get()
        if budget is not None:
            budget.used += 1
            if budget.used > budget.limit:
                raise IngestError(
                    f"«{budget.filename}»: страниц для распознавания (OCR) больше, чем допускается "
                    f"для одной загрузки — не больше {budget.limit} (RAG_MAX_OCR_PAGES). Разделите "
                    "файл на части или попросите администратора увеличить RAG_MAX_OCR_PAGES."
                )
        yield job


def _tesseract_cmd() -> str:
    import pytesseract

    return str(pytesseract.pytesseract.tesseract_cmd)


@functools.cache
def tesseract_problem() -> str | None:
    """Why OCR cannot run here (Russian text for the user), or None when it can. Cached."""
    try:
        import pytesseract
    except ImportError:
        return "Для распознавания текста нужен пакет pytesseract (pip install pytesseract). " + INSTALL_HINT
    try:
        version = pytesseract.get_tesseract_version()
        languages = pytesseract.get_languages()
    except Exception as exc:  # TesseractNotFoundError, or a binary that fails to run
        log.info("tesseract unavailable: %s", exc)
        return "Для распознавания текста нужна программа Tesseract OCR, а она не найдена. " + INSTALL_HINT
    if "rus" not in languages:
        return f"Tesseract {version} установлен, но без русского языка (нет данных rus). " + INSTALL_HINT
    if "eng" not in languages:
        return f"Tesseract {version} установлен, но без английского языка (нет данных eng). " + INSTALL_HINT
    return None


def tesseract_available() -> bool:
    """True when Tesseract with Russian (and English) data can be run. Cached."""
    return tesseract_problem() is None


# -- preprocessing ----------------------------------------------------------------------------


def to_gray(image: Image.Image) -> Image.Image:
    """8-bit grayscale, upright (EXIF), transparent areas on white."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # broken EXIF must not cost the page
        log.debug("exif_transpose failed: %s", exc)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        image = white
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit scans: scale, do not clip
        arr = np.asarray(image, dtype=np.float64)
        high = float(arr.max()) if arr.size else 0.0
        scale = 1.0 if high <= 255 else 255.0 / 65535 if high <= 65535 else 255.0 / high
        return Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
    try:
        return image.convert("L")
    except ValueError:  # modes Pillow converts to RGB only (LAB, HSV)
        return image.convert("RGB").convert("L")


def workers() -> int:
    """How many pages are recognised at once: one Tesseract process per core, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _extrema(gray: Image.Image) -> tuple[float, float]:
    low, high = gray.getextrema()
    assert isinstance(low, int | float) and isinstance(high, int | float)  # one band
    return float(low), float(high)


def _otsu(arr: np.ndarray) -> int:
    hist = np.bincount(arr.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1.0 - omega))
    return int(np.nanargmax(between)) if np.isfinite(between).any() else 128


def _flatten(gray: Image.Image) -> Image.Image:
    """Divide out uneven lighting (photos): background from a max-filtered thumbnail."""
    w, h = gray.size
    f = max(4, round(min(w, h) / 160))
    small = gray.resize((max(1, w // f), max(1, h // f)), Image.Resampling.BOX)
    bg_small = small.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.GaussianBlur(2))
    low, high = _extrema(bg_small)
    if high - low < 24:  # evenly lit (scans, renders, screenshots): nothing to do
        return gray
    bg = np.asarray(bg_small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    arr = np.asarray(gray, dtype=np.float32)
    return Image.fromarray(np.clip(arr * 255.0 / np.maximum(bg, 1.0), 0, 255).astype(np.uint8))


def _profile_pitch(arr: np.ndarray) -> int | None:
    """Period of the row ink profile (the line pitch), by autocorrelation."""
    prof = (arr < _otsu(arr)).mean(axis=1).astype(np.float64)
    prof -= prof.mean()
    n = len(prof)
    if n < 40 or not prof.any():
        return None
    spec = np.fft.rfft(prof, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    ac /= ac[0]
    lo, hi = 6, min(n // 3, 400)
    seg = ac[lo:hi]
    for i in range(1, len(seg) - 1):
        if seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1] and seg[i] > 0.2:
            return lo + i
    return None


def line_pitch(gray: Image.Image) -> float | None:
    """Distance between text lines in pixels (median over three vertical strips), or None."""
    arr = np.asarray(gray)
    w = arr.shape[1]
    strip = min(w, max(200, w // 5))  # narrow strips: skewed lines do not smear the profile
    found = []
    for centre in (0.3, 0.5, 0.7):
        left = min(max(0, int(centre * w) - strip // 2), w - strip)
        pitch = _profile_pitch(arr[:, left : left + strip])
        if pitch is not None:
            found.append(pitch)
    return float(np.median(found)) if found else None


def is_blank(gray: Image.Image) -> bool:
    """Nothing but paper: no pixel noticeably darker than the page."""
    low, high = _extrema(gray)
    return high - low < 40


def preprocess(image: Image.Image) -> Image.Image:
    """What Tesseract is given: see the module docstring. Cheap next to recognition itself."""
    gray = to_gray(image)
    if gray.width < 3 or gray.height < 3:
        return gray
    arr = np.asarray(gray)
    if float(np.median(arr)) < 100:  # light text on a dark background
        gray = ImageOps.invert(gray)
    gray = _flatten(gray)
    arr = np.asarray(gray)
    # Median neighbour difference: 0 on clean renders and scans, ~10 on a noisy photo.
    noisy = float(np.median(np.abs(np.diff(arr[:, : min(arr.shape[1], 2000)].astype(np.int16), axis=1)))) >= 3
    pitch = line_pitch(gray)
    scale = 1.0
    if pitch is not None and pitch < MIN_PITCH:
        scale = min(MAX_UPSCALE, TARGET_PITCH / pitch)
    elif pitch is not None and pitch > 150 and gray.width * gray.height > 10_000_000:
        scale = max(0.4, 70 / pitch)  # big text on a big photo: smaller is faster and as good
    scale = min(scale, (MAX_OCR_PIXELS / (gray.width * gray.height)) ** 0.5)
    if abs(scale - 1.0) > 0.05:
        size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
        gray = gray.resize(size, Image.Resampling.LANCZOS)
    if noisy:
        gray = gray.filter(ImageFilter.MedianFilter(3))
    return gray


# -- recognition ------------------------------------------------------------------------------


def clean_ocr_text(text: str) -> str:
    """Tesseract's output without form feeds, trailing spaces and runs of blank lines."""
    text = text.replace("\f", "\n")
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class Recognised(str):
    """Recognised text, and where its words are on the image (``words``)."""

    words: WordBoxes

    def __new__(cls, text: str, words: WordBoxes | None = None) -> Recognised:
        """The text with its word boxes (none when not given)."""
        made = super().__new__(cls, text)
        made.words = words if words is not None else WordBoxes()
        return made


def _words(text: str, tsv: str) -> WordBoxes:
    """Tesseract's TSV words placed on the text it printed in the same run, in order."""
    words = WordBoxes()
    rows = [line.split("\t") for line in tsv.splitlines()[1:]]
    size = next(((float(r[8]), float(r[9])) for r in rows if len(r) >= 12 and r[0] == "1"), None)
    if size is None or size[0] <= 0 or size[1] <= 0:
        return words
    width, height = size
    pos = 0
    for r in rows:
        if len(r) < 12 or r[0] != "5" or not r[11].strip():
            continue
        word = r[11].strip()
        at = text.find(word, pos)
        if at < 0:
            continue  # not printed as read (never seen): the word goes unmarked
        left, top, w, h = (float(v) for v in r[6:10])
        words.add(at, at + len(word), (left / width, top / height, (left + w) / width, (top + h) / height))
        pos = at + len(word)
    return words


def ocr_image(image: Image.Image, *, timeout: float = TIMEOUT_S) -> Recognised:
    """Recognise Russian and English text on an image; '' when there is none.

    Raises OcrError when Tesseract is missing, crashes or runs past ``timeout`` seconds.
    """
    problem = tesseract_problem()
    if problem is not None:
        raise OcrError(problem)
    prepared = preprocess(image)
    if is_blank(prepared):
        return Recognised("")
    buf = io.BytesIO()
    # Fast PNG: Tesseract read it 0.25 s quicker than uncompressed PGM on an A4 page at 300 dpi.
    prepared.save(buf, format="PNG", compress_level=1)
    env = dict(os.environ)
    env.setdefault("OMP_THREAD_LIMIT", "1")
    with tempfile.TemporaryDirectory(prefix="rag-ocr-") as folder:
        # One run prints the text and the word boxes (TSV): the same recognition, twice written.
        base = os.path.join(folder, "out")
        cmd = [_tesseract_cmd(), "stdin", base, "-l", LANG, *CONFIG, "txt", "tsv"]
        try:
            proc = subprocess.run(cmd, input=buf.getvalue(), capture_output=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise OcrError(f"распознавание заняло больше {timeout:g} с") from exc
        except OSError as exc:
            raise OcrError(f"Tesseract не запускается ({exc})") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise OcrError(f"Tesseract завершился с ошибкой {proc.returncode}: {' '.join(err[-3:])}")
        try:
            with open(base + ".txt", encoding="utf-8", errors="replace") as f:
                raw = f.read()
            with open(base + ".tsv", encoding="utf-8", errors="replace") as f:
                tsv = f.read()
        except OSError as exc:
            raise OcrError(f"Tesseract не записал результат ({exc})") from exc
    text = clean_ocr_text(raw)
    return Recognised(text, _words(text, tsv))


def run_parallel(jobs: Iterable[Callable[[], str]]) -> Generator[str | Exception, None, None]:
    """Results of ``jobs`` in their order, ``workers()`` at a time (each job one Tesseract).

    Jobs are taken from the iterable only a few ahead of the consumer, so a long scan is never
    rendered into memory at once. A job's exception is yielded, not raised. Closing the
    generator (the consumer stopped, e.g. indexing was cancelled) drops the jobs not started.
    """
    count = workers()
    source = _counted(jobs)
    if count == 1:
        for job in source:
            try:
                yield job()
            except Exception as exc:
                yield exc
        return
    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="ocr") as pool:
        pending: deque[Future[str]] = deque(pool.submit(job) for job in itertools.islice(source, 2 * count))
        try:
            while pending:
                future = pending.popleft()
                try:
                    result: str | Exception = future.result()
                except Exception as exc:
                    result = exc
                upcoming = next(source, None)
                if upcoming is not None:
                    pending.append(pool.submit(upcoming))
                yield result
        finally:
            for future in pending:
                future.cancel()
