"""ZIP-based office formats: opened only after checks against decompression bombs."""

from __future__ import annotations

import io
import logging
import zipfile

from rag import IngestError
from rag.ingest.types import Options

log = logging.getLogger(__name__)

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT_MIME = "application/vnd.oasis.opendocument.text"
RTF_MIME = "application/rtf"

# Archive limits besides Options.max_unpacked_bytes: a member that inflates more than
# _MAX_RATIO times and to more than _RATIO_FLOOR bytes is a decompression bomb, not a document.
_MAX_RATIO = 200
_RATIO_FLOOR = 10 * 1024 * 1024
_MAX_MEMBERS = 20_000

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_MB = 1024 * 1024


# -- archives (DOCX, ODT) -------------------------------------------------------------------------


def _open_archive(data: bytes, filename: str, options: Options, kind: str, resave: str) -> zipfile.ZipFile:
    """Open a ZIP-based document after checking it cannot inflate into a bomb; nothing is unpacked."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        log.warning("unreadable archive %s: %s", filename, exc)  # the library's English reason: log only
        raise IngestError(
            f"«{filename}»: файл повреждён или не является документом {kind}. {resave}"
        ) from exc
    infos = archive.infolist()
    if len(infos) > _MAX_MEMBERS:
        archive.close()
        raise IngestError(
            f"«{filename}»: в архиве документа {len(infos)} частей — это не похоже на документ {kind}."
        )
    total = sum(i.file_size for i in infos)
    if total > options.max_unpacked_bytes:
        archive.close()
        raise IngestError(
            f"«{filename}»: в распакованном виде документ занимает {_size(total)}, а допускается "
            f"не больше {_size(options.max_unpacked_bytes)}. Уберите из документа крупные "
            "вложения (картинки, видео) или разделите его на части."
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > _MAX_RATIO:
            archive.close()
            raise IngestError(
                f"«{filename}»: часть документа «{info.filename}» сжата в {ratio:.0f} раз — так "
                "выглядит «ZIP-бомба», а не документ. Файл не будет распакован."
            )
        if info.flag_bits & 0x1:
            archive.close()
            raise IngestError(f"«{filename}»: документ зашифрован. Снимите пароль и загрузите его снова.")
    return archive


def _size(n: int) -> str:
    return f"{n / _MB:.0f} МБ" if n >= _MB else f"{max(1, round(n / 1024))} КБ"


def _refuse_foreign(data: bytes, filename: str, old_format: str, new_format: str) -> None:
    """Files named .docx/.odt that are not: RTF or HTML renamed, old binary .doc, encrypted OOXML."""
    head = data[:1024].lstrip().lower()
    for magic, real in ((b"{\\rtf", ".rtf"), (b"<!doctype html", ".html"), (b"<html", ".html")):
        if head.startswith(magic):
            raise IngestError(
                f"«{filename}»: это на самом деле файл {real}, сохранённый с другим расширением. "
                f"Переименуйте его в {real} и загрузите снова."
            )
    if not data.startswith(_OLE_MAGIC):
        return
    if "EncryptedPackage".encode("utf-16-le") in data:
        raise IngestError(
            f"«{filename}»: документ защищён паролем. Снимите защиту (Файл → Сведения → Защита "
            "документа) и загрузите файл снова."
        )
    raise IngestError(
        f"«{filename}»: это документ старого формата {old_format}, он не поддерживается. Откройте его "
        f"в Word или LibreOffice, сохраните как {new_format} и загрузите снова."
    )


# -- DOCX -----------------------------------------------------------------------------------------


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
