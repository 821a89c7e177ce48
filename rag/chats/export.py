"""A chat taken out of the app: Markdown or DOCX, with each answer's model and its citations as
numbered footnotes (file, page, clause, the quoted fragment).

Footnotes are numbered through the whole chat: the answers' own ``[1]``, ``[2]`` become the
chat's footnotes 1, 2, then 3, 4 for the next answer's sources. A source the answer's text does not
cite (an offline answer quotes without numbers) is still listed, referenced at the answer's end.
The DOCX has real Word footnotes (a ``footnotes.xml`` part, which python-docx cannot write itself),
so Word and LibreOffice number and place them as their own.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from docx import Document as new_docx
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.opc.packuri import PackURI
from docx.opc.part import Part
from docx.oxml.ns import nsdecls, qn
from docx.oxml.parser import parse_xml
from docx.text.paragraph import Paragraph
from lxml import etree

from rag.answer.chat import ChatService
from storage import Chat, Message, Source
from storage.models import User

FORMATS = ("md", "docx")
MEDIA_TYPES = {
    "md": "text/markdown",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
# «[1]», «[1, 2]», «[1][3]»: a citation the prompt asks models to write (rag.answer.prompts).
_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
# Characters XML 1.0 cannot hold (a control character in a document's text would break the file).
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_FOOTNOTES_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"


@dataclass(frozen=True)
class Footnote:
    """A chat-wide footnote: its number and the source it stands for."""

    number: int
    source: Source

    def text(self) -> str:
        """«dogovor.pdf, стр. 2, п. 2.1: «fragment»»: where the fragment stands and what it says."""
        place = [self.source.filename]
        if self.source.page:
            place.append(f"стр. {self.source.page}")
        if self.source.anchor:
            place.append(self.source.anchor)
        fragment = " ".join(self.source.text.split())
        return f"{', '.join(place)}: «{fragment}»"


@dataclass(frozen=True)
class Exchange:
    """A question with its answer (either may be missing), and the answer's footnotes by its own number."""

    question: Message | None
    answer: Message | None
    notes: dict[int, Footnote]


def exchanges(messages: Sequence[Message]) -> list[Exchange]:
    """The chat as question/answer pairs, each answer's sources numbered through the chat."""
    out: list[Exchange] = []
    question: Message | None = None
    number = 0
    for msg in messages:
        if msg.role == "user":
            if question is not None:
                out.append(Exchange(question, None, {}))
            question = msg
            continue
        notes: dict[int, Footnote] = {}
        for i, src in enumerate(msg.sources or [], 1):
            number += 1
            notes[src.n or i] = Footnote(number, src)
        out.append(Exchange(question, msg, notes))
        question = None
    if question is not None:
        out.append(Exchange(question, None, {}))
    return out


def _pieces(text: str, notes: dict[int, Footnote]) -> Iterator[str | Footnote]:
    """The answer's text with its known citations replaced by their footnotes."""
    at = 0
    for m in _CITATION.finditer(text):
        cited = [int(n) for n in re.split(r"\s*,\s*", m.group(1))]
        if not all(n in notes for n in cited):
            continue  # «[2024]» or a number the answer has no source for: text as written
        yield text[at : m.start()]
        for n in cited:
            yield notes[n]
        at = m.end()
    yield text[at:]


def _uncited(text: str, notes: dict[int, Footnote]) -> list[Footnote]:
    cited = {p.number for p in _pieces(text, notes) if isinstance(p, Footnote)}
    return [f for f in notes.values() if f.number not in cited]


def answer_label(msg: Message) -> str:
    """«Ответ · gigachat · GigaChat-2-Max»: who answered."""
    return " · ".join(p for p in ("Ответ", msg.provider or "", msg.model or "") if p)


def _stamp(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")


def to_markdown(chat: Chat, messages: Sequence[Message], now: datetime | None = None) -> str:
    """The chat as Markdown, the sources as footnotes ``[^n]``."""
    lines = [f"# {chat.title}", "", f"_Экспорт чата, {_stamp(now)}_", ""]
    footnotes: list[Footnote] = []
    for i, ex in enumerate(exchanges(messages), 1):
        if ex.question is not None:
            lines += [f"## Вопрос {i}", "", ex.question.content, ""]
        if ex.answer is None:
            lines += ["_Ответа нет._", ""]
            continue
        text = "".join(
            p if isinstance(p, str) else f"[^{p.number}]" for p in _pieces(ex.answer.content, ex.notes)
        )
        rest = _uncited(ex.answer.content, ex.notes)
        lines += [f"### {answer_label(ex.answer)}", "", text]
        if rest:
            lines += ["", "Источники: " + " ".join(f"[^{f.number}]" for f in rest)]
        if ex.answer.error:
            lines += ["", f"_{ex.answer.error}_"]
        lines.append("")
        footnotes += ex.notes.values()
    lines += [f"[^{f.number}]: {f.text()}" for f in footnotes]
    return "\n".join(lines).rstrip() + "\n"


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _reference(paragraph: Paragraph, number: int) -> None:
    """A footnote's number in the text: Word's footnote reference, superscript."""
    run = paragraph.add_run()
    run._r.append(parse_xml(f'<w:rPr {nsdecls("w")}><w:vertAlign w:val="superscript"/></w:rPr>'))
    run._r.append(parse_xml(f'<w:footnoteReference {nsdecls("w")} w:id="{number}"/>'))


def _footnotes_part(notes: Sequence[Footnote]) -> bytes:
    """The ``footnotes.xml`` part: Word's two separators, then one footnote per source."""
    w = nsdecls("w")
    root = parse_xml(
        f'<w:footnotes {w}><w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r>'
        '</w:p></w:footnote><w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r>'
        "<w:continuationSeparator/></w:r></w:p></w:footnote></w:footnotes>"
    )
    for note in notes:
        xml = (
            f'<w:footnote {w} w:id="{note.number}"><w:p><w:r><w:rPr><w:vertAlign w:val="superscript"/>'
            '</w:rPr><w:footnoteRef/></w:r><w:r><w:t xml:space="preserve"> </w:t></w:r></w:p></w:footnote>'
        )
        element = parse_xml(xml)
        # The text is set as a value (never parsed), so nothing in it is read as markup.
        element.findall(f".//{qn('w:t')}")[-1].text = _clean(note.text())
        root.append(element)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True))


def to_docx(chat: Chat, messages: Sequence[Message], now: datetime | None = None) -> bytes:
    """The chat as a Word document with the sources as real footnotes."""
    doc = new_docx()
    doc.add_heading(_clean(chat.title), level=1)
    doc.add_paragraph().add_run(f"Экспорт чата, {_stamp(now)}").italic = True
    footnotes: list[Footnote] = []
    for i, ex in enumerate(exchanges(messages), 1):
        if ex.question is not None:
            doc.add_heading(f"Вопрос {i}", level=2)
            for line in ex.question.content.split("\n"):
                doc.add_paragraph(_clean(line))
        if ex.answer is None:
            doc.add_paragraph().add_run("Ответа нет.").italic = True
            continue
        doc.add_heading(_clean(answer_label(ex.answer)), level=3)
        paragraph = doc.add_paragraph()
        for piece in _pieces(ex.answer.content, ex.notes):
            if isinstance(piece, Footnote):
                _reference(paragraph, piece.number)
                continue
            for j, line in enumerate(piece.split("\n")):
                if j:
                    paragraph = doc.add_paragraph()
                if line:
                    paragraph.add_run(_clean(line))
        rest = _uncited(ex.answer.content, ex.notes)
        if rest:
            paragraph = doc.add_paragraph("Источники:")
            for note in rest:
                _reference(paragraph, note.number)
        if ex.answer.error:
            doc.add_paragraph().add_run(_clean(ex.answer.error)).italic = True
        footnotes += ex.notes.values()
    if footnotes:
        part = Part(
            PackURI("/word/footnotes.xml"), _FOOTNOTES_TYPE, _footnotes_part(footnotes), doc.part.package
        )
        doc.part.relate_to(part, RT.FOOTNOTES)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def export_chat(
    service: ChatService, chat_id: str, fmt: str, user: User | None = None, now: datetime | None = None
) -> bytes:
    """One of the user's chats as a file in ``fmt`` (md or docx); NotFoundError for anyone else's."""
    if fmt not in FORMATS:
        raise ValueError(f"Неизвестный формат «{fmt}»: доступны {', '.join(FORMATS)}.")
    chat = service.chat(chat_id, user)
    messages = service.messages(chat_id, user)
    if fmt == "md":
        return to_markdown(chat, messages, now).encode("utf-8")
    return to_docx(chat, messages, now)


def export_name(chat: Chat, fmt: str) -> str:
    """A file name for the export: the title's words, safe on every file system."""
    stem = re.sub(r"[^\w\-]+", "_", chat.title, flags=re.UNICODE).strip("_")[:60] or "chat"
    return f"{stem}.{fmt}"
