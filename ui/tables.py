"""Tabular views of the library for the documents and admin pages."""

from __future__ import annotations

from typing import Any

from storage import Document, DocumentStatus
from ui.components import human_size

STATUS_RU = {
    DocumentStatus.QUEUED: "в очереди",
    DocumentStatus.INDEXING: "индексируется",
    DocumentStatus.READY: "готов",
    DocumentStatus.FAILED: "ошибка",
}


def documents_frame(docs: list[Document]) -> list[dict[str, Any]]:
    """Rows for ``st.dataframe``: one per document, Russian column names."""
    return [
        {
            "Файл": d.filename,
            "Тип": d.mime_type or "—",
            "Размер": human_size(d.size),
            "Кодировка": d.encoding or "—",
            # One type per column: Arrow refuses a column mixing numbers and "—".
            "Страниц": d.pages,
            "Фрагментов": d.chunk_count,
            "Статус": STATUS_RU.get(d.status, str(d.status)),
            "Ошибка": d.error or d.warnings or "",
            "Проиндексирован": d.indexed_at.strftime("%Y-%m-%d %H:%M") if d.indexed_at else "—",
            "Модель эмбеддингов": d.embedding_model or "—",
        }
        for d in docs
    ]
