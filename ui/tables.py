"""Tabular views of the library for the documents and admin pages."""

from __future__ import annotations

from typing import Any

from rag.ingest.pdf_text import gauge_label
from storage import Document, DocumentStatus
from ui.components import human_size

STATUS_RU = {
    DocumentStatus.QUEUED: "в очереди",
    DocumentStatus.INDEXING: "индексируется",
    DocumentStatus.KEYWORDS: "поиск по словам готов, векторы считаются",
    DocumentStatus.READY: "готов",
    DocumentStatus.FAILED: "ошибка",
}
# What a person calls each kind of file; anything else by its family.
KIND_RU = {
    "application/pdf": "PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word (DOCX)",
    "application/vnd.oasis.opendocument.text": "OpenDocument (ODT)",
    "application/rtf": "RTF",
    "text/html": "веб-страница (HTML)",
    "text/markdown": "Markdown",
    "text/csv": "таблица (CSV)",
    "application/json": "JSON",
    "text/plain": "текст",
}


def kind_of(mime_type: str) -> str:
    """A Russian name for a file's type, never a raw MIME string."""
    if not mime_type:
        return "—"
    if mime_type in KIND_RU:
        return KIND_RU[mime_type]
    family, _, sub = mime_type.partition("/")
    if family == "image":
        return f"изображение ({sub.upper()})" if sub else "изображение"
    if family == "text":
        return "текст"
    return "документ"


def status_label(doc: Document) -> str:
    """A document's state in Russian, with how far its vectors are while they are computed."""
    if doc.status == DocumentStatus.KEYWORDS and doc.chunk_count:
        share = min(doc.embedded_chunks, doc.chunk_count) / doc.chunk_count
        return f"поиск по словам готов, векторы: {share:.0%}"
    return STATUS_RU.get(doc.status, str(doc.status))


def documents_frame(docs: list[Document]) -> list[dict[str, Any]]:
    """Rows for ``st.dataframe``: one per document, Russian column names."""
    return [
        {
            "Файл": d.filename,
            "Тип": kind_of(d.mime_type),
            "Размер": human_size(d.size),
            "Кодировка": d.encoding or "—",
            # Text, so that "—" and numbers share a column (Arrow refuses mixed types).
            "Страниц": str(d.pages) if d.pages else "—",
            "Фрагментов": d.chunk_count,
            "Статус": status_label(d),
            "Текстовый слой": gauge_label(d.damaged_pages, d.ocr_pages),
            "Ошибка": d.error or d.warnings or "",
            "Проиндексирован": d.indexed_at.strftime("%Y-%m-%d %H:%M") if d.indexed_at else "—",
            "Модель эмбеддингов": d.embedding_model or "—",
        }
        for d in docs
    ]
