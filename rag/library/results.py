"""What the library's services report: outcomes of uploads, documents as a user sees them,
the consistency report, and the Russian messages they carry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from settings import Settings
from storage import (
    Document,
)

Progress = Callable[[float, str], None]
EMBED_BATCH = 32
# Joins the names of a document's embedding models (e5, then the cross-lingual one).
MODEL_SEPARATOR = "+"
INTERRUPTED = "Индексация была прервана (приложение остановлено). Переиндексируйте файл или удалите его."
INTERNAL_STORE = (
    "не удалось сохранить исходный файл (подробности в журнале). Попробуйте загрузить его ещё раз."
)


def _lost(name: str) -> str:
    return f"«{name}»: исходный файл не сохранился, загрузите его заново."


def _kept(name: str, why: str) -> str:
    return f"«{name}»: {why} Прежняя версия документа осталась в поиске в прежнем виде."


def _unfinished_vectors(name: str) -> str:
    return (
        f"«{name}»: поиск по словам работает, но векторы посчитаны не все (сбой хранилища векторов, "
        "подробности в журнале). Администратор досчитает их: «Проверить целостность», затем «Исправить»."
    )


def too_large_message(name: str, size: int, settings: Settings) -> str:
    """The Russian refusal for a file over RAG_MAX_FILE_MB."""
    return (
        f"«{name}»: файл слишком большой ({size / 1024 / 1024:.1f} МБ), допускается не больше "
        f"{settings.max_file_mb:g} МБ (RAG_MAX_FILE_MB)."
    )


def too_many_fragments_message(name: str, count: int, settings: Settings) -> str:
    """The Russian refusal for a document over RAG_MAX_CHUNKS_PER_DOCUMENT."""
    return (
        f"«{name}»: в документе {count} фрагм., а допускается не больше "
        f"{settings.max_chunks_per_document} (RAG_MAX_CHUNKS_PER_DOCUMENT). Разделите файл на части "
        "или попросите администратора увеличить RAG_MAX_CHUNKS_PER_DOCUMENT."
    )


def _no_progress(_fraction: float, _text: str) -> None:
    return None


@dataclass(frozen=True)
class DocumentEntry:
    """A document as one user sees it: under their name for it, with the collections it is in."""

    document: Document
    name: str
    collections: list[str]


@dataclass
class IngestResult:
    """Outcome of one file: indexed, duplicate or failed (with a Russian reason)."""

    filename: str
    status: Literal["indexed", "duplicate", "failed"]
    document: Document | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class ConsistencyReport:
    """What the consistency check found."""

    stale_documents: list[str] = field(default_factory=list)
    ready_without_chunks: list[str] = field(default_factory=list)
    orphan_vectors: int = 0
    orphan_keyword_rows: int = 0
    missing_vectors: list[str] = field(default_factory=list)
    # Searchable by keyword, vectors unfinished, and nobody computing them (a crash in between).
    unfinished_vectors: list[str] = field(default_factory=list)
    # The tantivy mirror of the keyword rows: changes it has not applied, and by how many rows
    # its count differs from the rows' after applying them (a crash between the two commits).
    keyword_index_behind: int = 0
    keyword_index_mismatch: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing needs repair."""
        return not (
            self.stale_documents
            or self.ready_without_chunks
            or self.orphan_vectors
            or self.orphan_keyword_rows
            or self.missing_vectors
            or self.unfinished_vectors
            or self.keyword_index_behind
            or self.keyword_index_mismatch
        )

    def findings(self) -> list[str]:
        """What is wrong, one Russian sentence per kind of problem (empty when ok)."""
        out = []
        if self.stale_documents:
            out.append(f"Индексация не завершена (прервана): {_names(self.stale_documents)}.")
        if self.ready_without_chunks:
            out.append(f"Помечены готовыми, но без фрагментов: {_names(self.ready_without_chunks)}.")
        if self.missing_vectors:
            out.append(f"Не хватает векторов: {_names(self.missing_vectors)}.")
        if self.unfinished_vectors:
            out.append(
                "Векторы посчитаны не полностью (поиск по словам уже работает): "
                f"{_names(self.unfinished_vectors)}."
            )
        if self.orphan_vectors:
            out.append(f"Векторы без фрагментов в базе: {self.orphan_vectors}.")
        if self.orphan_keyword_rows:
            out.append(f"Записи поиска по словам без фрагментов: {self.orphan_keyword_rows}.")
        if self.keyword_index_behind:
            out.append(
                "Индекс поиска по словам отстаёт от базы: "
                f"изменений не применено: {self.keyword_index_behind}."
            )
        if self.keyword_index_mismatch:
            out.append(
                f"Индекс поиска по словам расходится с базой на {self.keyword_index_mismatch} записей."
            )
        return out


def _names(names: list[str]) -> str:
    return ", ".join(f"«{n}»" for n in names)
