"""Images (PNG, JPEG, TIFF, WebP, BMP) recognised with Tesseract; a multi-page TIFF gives one page
per frame.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import PurePath

from PIL import Image

from rag import IngestError
from rag.ingest import ocr
from rag.ingest.types import Extracted, Options, Page

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")


def _open_image(data: bytes, filename: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise IngestError(
            f"«{filename}»: изображение слишком большое (больше {ocr.MAX_IMAGE_PIXELS // 1_000_000} "
            "мегапикселей). Уменьшите его разрешение и загрузите снова."
        ) from exc
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error, ...
        log.warning("unreadable image %s: %r", filename, exc)
        raise IngestError(
            f"«{filename}»: файл повреждён или не является изображением (PNG, JPEG, TIFF, WebP, BMP). "
            "Откройте его в графическом редакторе, сохраните заново и загрузите снова."
        ) from exc
    return image


def _check_size(image: Image.Image, filename: str) -> None:
    width, height = image.size
    if width * height > ocr.MAX_IMAGE_PIXELS:
        raise IngestError(
            f"«{filename}»: изображение слишком большое ({width}×{height} пикселей, допускается не "
            f"больше {ocr.MAX_IMAGE_PIXELS // 1_000_000} мегапикселей). Уменьшите его разрешение и "
            "загрузите снова."
        )
    if width < 1 or height < 1:
        raise IngestError(f"«{filename}»: изображение пустое (0 пикселей).")


class _FrameUnreadable(Exception):
    """A frame of an image file could not be decoded."""


def _load_frames(image: Image.Image, frames: int, filename: str) -> Iterator[Callable[[], str]]:
    """One OCR job per frame; frames are decoded here, in order, as the jobs are taken."""
    for index in range(frames):
        try:
            image.seek(index)
            _check_size(image, filename)
            image.load()
            frame = image.copy()
        except IngestError:
            raise
        except Exception as exc:  # truncated or corrupt pixel data
            error = _FrameUnreadable(str(exc) or type(exc).__name__)
            yield functools.partial(_raise, error)
            continue
        yield functools.partial(ocr.ocr_image, frame)


def _raise(error: Exception) -> str:
    raise error


def extract_image(data: bytes, filename: str, options: Options | None = None) -> Extracted:
    """Recognise text on an image; a multi-page TIFF gives one page per frame."""
    options = options or Options()
    image = _open_image(data, filename)
    _check_size(image, filename)
    mime = Image.MIME.get(image.format or "", "image/" + PurePath(filename).suffix.lower().lstrip("."))
    # Only TIFF has pages; other formats' extra frames are animation.
    frames = int(getattr(image, "n_frames", 1) or 1) if image.format == "TIFF" else 1
    if frames > options.max_pages:
        raise IngestError(
            f"«{filename}»: в изображении {frames} страниц, а допускается не больше {options.max_pages}."
        )
    problem = ocr.tesseract_problem()
    if problem is not None:
        raise IngestError(f"«{filename}»: {problem}")

    def label(index: int) -> str:
        return f"Распознавание «{filename}»" + (f": стр. {index + 1}/{frames}" if frames > 1 else "")

    pages: list[Page] = []
    warnings: list[str] = []
    options.report(0.0, label(0))
    with contextlib.closing(ocr.run_parallel(_load_frames(image, frames, filename))) as results:
        for index, result in enumerate(results):
            if index + 1 < frames:
                options.report((index + 1) / frames, label(index + 1))
            if isinstance(result, Exception):
                log.warning("frame %d of %s failed: %s", index + 1, filename, result)
                if frames == 1 and isinstance(result, _FrameUnreadable):
                    raise IngestError(
                        f"«{filename}»: изображение повреждено (например, загружено не до конца), его "
                        "не удалось прочитать. Сохраните его заново и загрузите снова."
                    ) from result
                if frames == 1:
                    # OcrError says in Russian what Tesseract did (timed out, crashed); others are ours.
                    why = str(result) if isinstance(result, ocr.OcrError) else "ошибка обработки изображения"
                    raise IngestError(f"«{filename}»: не удалось распознать текст ({why}).") from result
                what = "прочитать изображение" if isinstance(result, _FrameUnreadable) else "распознать"
                warnings.append(f"стр. {index + 1}: не удалось {what}")
            elif result.strip():
                words = result.words if isinstance(result, ocr.Recognised) else None
                pages.append(Page(index + 1 if frames > 1 else None, str(result), ocr=True, words=words))
    if not pages:
        raise IngestError(
            f"«{filename}»: на изображении не удалось распознать текст — его нет, или он слишком "
            "мелкий, размытый или рукописный."
        )
    options.report(1.0, f"Распознан «{filename}»")
    return Extracted(
        pages=pages, mime_type=mime, page_count=frames if frames > 1 else None, warnings=warnings
    )
