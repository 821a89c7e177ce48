"""Pictures of cited pages for the source view: a PDF page rendered by PDFium, or a scanned image,
with the fragment's words marked as a reader marks paper.

The marker is a multiply blend of a yellow fill: paper turns yellow and ink stays ink, so the
text under the mark reads as before, in the light theme and the dark one alike. Boxes are
fractions of the page (``rag.ingest.types.Box``); a PDF page's text-layer boxes are measured on
the unrotated page, and are turned here with the page's /Rotate (OCR boxes were measured on the
rendered, already turned, page).

PNG with rectangles drawn by Pillow was chosen over ``streamlit-pdf-viewer``'s annotations by a
side-by-side measurement in chromium (``bench/pdf_viewer.py``, bench/README.md): faster per page
turned, a quarter of the bytes, no component and no upload of the whole file to the browser;
its cost is one page render that the UI caches.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

from PIL import Image, ImageChops, ImageDraw, ImageOps

from rag.ingest.ocr import to_gray
from rag.ingest.pdf import PDFIUM_LOCK
from rag.ingest.types import Box

# Pixels across: readable on a laptop at full width, sharp when a phone scales it down.
VIEW_WIDTH = 1100
# A highlighter's yellow; multiplied over the page.
MARKER = (255, 221, 51)
# The mark reaches a little past the letters, as a pen stroke does (fraction of the line height).
_PAD = 0.18


def turned(box: Box, rotation: int) -> Box:
    """A box of the unrotated page as it shows on the page turned ``rotation`` degrees clockwise."""
    left, top, right, bottom = box
    rotation %= 360
    if rotation == 90:
        return 1 - bottom, left, 1 - top, right
    if rotation == 180:
        return 1 - right, 1 - bottom, 1 - left, 1 - top
    if rotation == 270:
        return top, 1 - right, bottom, 1 - left
    return box


def pixel_boxes(boxes: Sequence[Box], size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The boxes in pixels of a picture of ``size``, padded as the marker draws them."""
    width, height = size
    out = []
    for left, top, right, bottom in boxes:
        pad = (bottom - top) * height * _PAD
        out.append(
            (
                max(0, round(left * width - pad)),
                max(0, round(top * height - pad)),
                min(width, round(right * width + pad)),
                min(height, round(bottom * height + pad)),
            )
        )
    return out


def _palette() -> list[int]:
    """128 greys, then the same greys under the marker (multiplied by its yellow)."""
    greys = [round(i * 255 / 127) for i in range(128)]
    plain = [c for v in greys for c in (v, v, v)]
    marked = [round(v * c / 255) for v in greys for c in MARKER]
    return plain + marked


_PALETTE = _palette()


def mark(image: Image.Image, boxes: Sequence[Box]) -> Image.Image:
    """The picture with the boxes marked (multiply blend of the marker's yellow).

    A page in greys only (most text pages) comes back as a palette image of 128 greys and their
    marked twins: PNG writes one byte a pixel instead of three, which halves the time to encode a
    page (bench/README.md, «Issue 19: source view»), at no visible cost to the letters.
    """
    import numpy as np

    if image.mode != "L" and _greys_only(image):
        image = image.convert("L")
    if image.mode == "L":
        index = np.asarray(image) >> 1
        for left, top, right, bottom in pixel_boxes(boxes, image.size):
            index[top:bottom, left:right] |= 128
        out = Image.fromarray(index, mode="P")
        out.putpalette(_PALETTE)
        return out
    rgb = image.convert("RGB")
    if not boxes:
        return rgb
    layer = Image.new("RGB", rgb.size, (255, 255, 255))
    draw = ImageDraw.Draw(layer)
    for rect in pixel_boxes(boxes, rgb.size):
        draw.rectangle(rect, fill=MARKER)
    return ImageChops.multiply(rgb, layer)


def _greys_only(image: Image.Image) -> bool:
    """Whether a picture has no colour (a thumbnail is enough: a stamp or a chart shows in it)."""
    import numpy as np

    small = image.convert("RGB")
    small.thumbnail((160, 160))
    pixels = np.asarray(small).astype(np.int16)
    return int(np.abs(pixels - pixels[..., :1]).max()) <= 8


def strip(image: Image.Image, boxes: Sequence[Box], margin: float = 0.05) -> Image.Image | None:
    """The band of the page that holds the marks, a little above and below: what the view shows
    first, so that the fragment is in sight without scrolling down a whole page."""
    if not boxes:
        return None
    top = max(0.0, min(b[1] for b in boxes) - margin)
    bottom = min(1.0, max(b[3] for b in boxes) + margin)
    return image.crop((0, round(top * image.height), image.width, round(bottom * image.height)))


def png(image: Image.Image) -> bytes:
    """The picture as PNG, fast to encode (the view waits for it)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def pdf_page(data: bytes, page: int, boxes: Sequence[Box], ocr: bool, width: int = VIEW_WIDTH) -> Image.Image:
    """Page ``page`` (1-based) of a PDF rendered ``width`` pixels wide, the boxes marked."""
    import pypdfium2 as pdfium

    with PDFIUM_LOCK:
        document = pdfium.PdfDocument(data)
        try:
            sheet = document[page - 1]
            try:
                rotation = sheet.get_rotation()
                shown_width = sheet.get_height() if rotation % 180 else sheet.get_width()
                # A page without colour renders four times faster in greys, and encodes faster.
                thumb = sheet.render(scale=min(1.0, 120 / max(shown_width, 1.0)))
                try:
                    grey = _greys_only(thumb.to_pil())
                finally:
                    thumb.close()
                bitmap = sheet.render(scale=width / max(shown_width, 1.0), grayscale=grey)
                try:
                    image: Image.Image = bitmap.to_pil()
                    image = image.convert("L" if grey else "RGB")  # a copy: the bitmap's buffer goes
                finally:
                    bitmap.close()
            finally:
                sheet.close()
        finally:
            document.close()
    shown = list(boxes) if ocr else [turned(b, rotation) for b in boxes]
    return mark(image, shown)


def image_page(data: bytes, page: int | None, boxes: Sequence[Box], width: int = VIEW_WIDTH) -> Image.Image:
    """A scanned image (frame ``page`` of a TIFF), upright as it was recognised, the boxes marked."""
    with Image.open(io.BytesIO(data)) as source:
        if page is not None and page > 1:
            source.seek(page - 1)
        frame = source.copy()
    # Upright as OCR saw it (EXIF); in colour where it is plain colour, else as OCR's grey on white.
    with contextlib.suppress(Exception):  # broken EXIF: as recognised (to_gray gives up the same way)
        frame = ImageOps.exif_transpose(frame)
    if frame.mode not in ("RGB", "L"):
        frame = to_gray(frame)
    if frame.width > width:
        height = max(1, round(frame.height * width / frame.width))
        frame = frame.resize((width, height), Image.Resampling.LANCZOS)
    return mark(frame, boxes)
