"""The source view's service (issue 19): a cited fragment with its document, page and place, and
the original file, through the same access checks as search.

What a user may not read does not exist for them: a chunk of such a document and a chunk id that
never existed give the same ``SourceMissing`` («Фрагмент не найден»). A citation the user's own
chats still hold, whose document was deleted since, says «Документ удалён»; one whose document
was re-indexed opens on the same text in the new version if it is still there, and otherwise
says the document changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from rag import RagError
from rag.ingest import extract
from rag.ingest.images import IMAGE_EXTENSIONS
from rag.ingest.types import Box, Options
from rag.library.admission import Admission
from storage import NotFoundError
from storage.models import SEARCHABLE, Chunk, Document, Source, User

NOT_FOUND = "Фрагмент не найден"
DELETED = "Документ удалён"
CHANGED = "Документ изменился: процитированного фрагмента в нём больше нет."
REINDEXED = "Документ переиндексирован после ответа: показан тот же текст в новой версии."
# Chunk ids are uuid4 hex: anything else is no id (and never reaches a LIKE pattern).
_CHUNK_ID = re.compile(r"^[0-9a-f]{16,64}$")
# About a screen of text on each side of a fragment of a document without pages to show.
CONTEXT_CHARS = 1500

Kind = Literal["pdf", "image", "text"]


class SourceMissing(RagError):
    """The fragment cannot be shown; the message («Фрагмент не найден», «Документ удалён»,
    «Документ изменился…») is what the page says."""


@dataclass(frozen=True)
class SourceView:
    """A cited fragment as its view shows it."""

    chunk: Chunk
    document: Document
    name: str  # the file name this user knows the document by
    collection: str  # the name of a collection the user reads it in
    kind: Kind  # pdf: a rendered page; image: the scanned image; text: the text around it
    page: int | None  # the page shown (the fragment's own unless another was asked for)
    pages: int | None  # how many pages the document has
    boxes: list[Box] = field(default_factory=list)  # the fragment's words on the shown page
    note: str | None = None  # e.g. the document was re-indexed since the answer

    @property
    def on_fragment_page(self) -> bool:
        """Whether the shown page is the one the fragment is on."""
        return self.page == self.chunk.page

    @property
    def label(self) -> str:
        """«dogovor.txt · п. 2.1 · стр. 1 из 3»: the header line."""
        parts = [self.name]
        if self.chunk.anchor:
            parts.append(self.chunk.anchor)
        if self.page is not None:
            parts.append(f"стр. {self.page} из {self.pages}" if self.pages else f"стр. {self.page}")
        return " · ".join(parts)


@dataclass(frozen=True)
class TextAround:
    """A document's text around a fragment: before, the fragment itself, after."""

    before: str
    fragment: str
    after: str


def source_kind(filename: str, mime_type: str) -> Kind:
    """How a document's pages are shown: rendered (PDF), as the image (scans), or as text."""
    lower = filename.lower()
    if mime_type == "application/pdf" or lower.endswith(".pdf"):
        return "pdf"
    if any(lower.endswith(ext) for ext in IMAGE_EXTENSIONS):
        return "image"
    return "text"


def _cut(text: str, start: int, end: int, chars: int = CONTEXT_CHARS) -> TextAround:
    """The fragment ``text[start:end]`` and about ``chars`` on either side, cut at word ends."""
    lo = max(0, start - chars)
    if lo > 0:
        space = text.find(" ", lo, start)
        lo = space + 1 if space >= 0 else lo
    hi = min(len(text), end + chars)
    if hi < len(text):
        space = text.rfind(" ", end, hi)
        hi = space if space >= 0 else hi
    before = ("…" if lo > 0 else "") + text[lo:start]
    after = text[end:hi] + ("…" if hi < len(text) else "")
    return TextAround(before, text[start:end], after)


class Sources(Admission):
    """Cited fragments and originals, as the user who asks may see them."""

    def source_view(self, chunk_id: str, user: User | None = None, page: int | None = None) -> SourceView:
        """The fragment ``chunk_id`` for its view, on its page (or on ``page`` of its document).

        Raises SourceMissing with the message the page shows.
        """
        actor = self.actor(user)
        if not _CHUNK_ID.match(chunk_id or ""):
            raise SourceMissing(NOT_FOUND)
        note = None
        found = self.docs.chunks_by_ids([chunk_id], ready_only=False).get(chunk_id)
        if found is None:
            chunk, doc = self._moved(chunk_id, actor)
            note = REINDEXED
        else:
            chunk, doc = found
        if doc.replaces is not None or doc.status not in SEARCHABLE:
            raise SourceMissing(NOT_FOUND)  # a re-index's hidden version, a failed upload
        name, collection = self._reader_names(actor, doc)
        kind = source_kind(doc.filename, doc.mime_type)
        pages = doc.pages if kind != "text" else None
        shown = chunk.page
        if page is not None and pages and kind == "pdf":
            shown = min(max(1, page), pages)
        boxes: list[Box] = []
        if shown == chunk.page and chunk.boxes:
            boxes = [(b[0], b[1], b[2], b[3]) for b in chunk.boxes]
        return SourceView(chunk, doc, name, collection, kind, shown, pages, boxes, note)

    def _reader_names(self, actor: User, doc: Document) -> tuple[str, str]:
        """The user's name for the document and a collection they read it in; SourceMissing if none."""
        links = self.collections.links_of_document(doc.id)
        if not self.access.is_admin(actor):
            readable = {c.id for c in self.access.readable(actor)}
            links = [link for link in links if link.collection_id in readable]
            if not links:
                raise SourceMissing(NOT_FOUND)
        if not links:  # an admin's view of a document in no collection (being removed)
            return doc.filename, "—"
        first = min(links, key=lambda link: link.added_at)
        try:
            collection = self.collections.get(first.collection_id).name
        except NotFoundError:
            collection = "—"
        return first.filename, collection

    def _moved(self, chunk_id: str, actor: User) -> tuple[Chunk, Document]:
        """Where a fragment the user's own chats cite went: the same text in the document's new
        version. SourceMissing says the document was deleted or changed, or that there is none."""
        cited: Source | None = self.chats.cited_source(chunk_id, actor.id)
        if cited is None:
            raise SourceMissing(NOT_FOUND)
        try:
            doc = self.docs.get(cited.document_id)
        except NotFoundError:
            raise SourceMissing(DELETED) from None
        self._reader_names(actor, doc)  # no longer readable: as if it never was
        wanted = " ".join(cited.text.split())
        for chunk in self.docs.chunks(doc.id):
            if " ".join(chunk.text.split()) == wanted:
                return chunk, doc
        body = " ".join(wanted.splitlines()[-1].split()) if wanted else ""
        for chunk in self.docs.chunks(doc.id):
            if body and body in " ".join(chunk.text.split()):
                return chunk, doc
        raise SourceMissing(CHANGED)

    def text_around(self, view: SourceView, chars: int = CONTEXT_CHARS) -> TextAround:
        """The document's text around the fragment (text documents), read again from the original."""
        data = self._original_bytes(view.document)
        extracted = extract(data, view.document.filename, Options(max_pages=self.settings.max_pages))
        page = next((p for p in extracted.pages if p.number == view.chunk.page), None)
        text = page.text if page is not None else ""
        start, end = view.chunk.char_start, view.chunk.char_end
        if not (0 <= start < end <= len(text)):
            # Not the text the fragment was cut from (indexed by an older release): the fragment alone.
            return TextAround("", view.chunk.text, "")
        return _cut(text, start, end, chars)

    def original(self, document_id: str, user: User | None = None) -> tuple[str, bytes]:
        """The uploaded file (the user's name for it, its bytes); NotFoundError unless readable."""
        actor = self.actor(user)
        try:
            doc = self.docs.get(document_id)
            if doc.replaces is not None:
                raise NotFoundError(document_id)
            name, _ = self._reader_names(actor, doc)
        except SourceMissing:
            raise NotFoundError(document_id) from None
        return name, self._original_bytes(doc)

    def view_original(self, view: SourceView) -> bytes:
        """The original of a view's document (the view itself was access-checked)."""
        return self._original_bytes(view.document)

    def _original_bytes(self, doc: Document) -> bytes:
        data = self.originals.get(doc.stored_path) if doc.stored_path else None
        if data is None:
            raise SourceMissing("Исходный файл документа не сохранён: его можно только найти поиском.")
        return data
