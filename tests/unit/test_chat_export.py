"""A chat's export (rag.chats.export): Markdown and DOCX with every question, answer and footnote;
the DOCX read back with python-docx and rendered by LibreOffice to a PDF whose text is checked."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from docx import Document as open_docx
from docx.opc.constants import RELATIONSHIP_TYPE as RT
from docx.oxml.ns import qn
from lxml import etree

from providers import ChatMessage, Usage
from providers.offline import MODEL_ID, OfflineProvider
from rag.answer.chat import ChatService, TurnChoice
from rag.chats.export import Footnote, exchanges, export_chat, export_name, to_markdown
from rag.library import Library
from storage import Chat, Message, NotFoundError, Source
from storage.models import User
from tests.backends import unavailable
from tests.stand_in import StandInModel

fpdf = pytest.importorskip("fpdf")
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
PAGES = [
    ["ДОГОВОР АРЕНДЫ СКЛАДА № 7", "2.1. Срок аренды составляет одиннадцать месяцев."],
    ["3. ПЛАТЕЖИ", "3.1. Арендная плата составляет 45 000 рублей в месяц."],
]
ANSWER = "Срок аренды — одиннадцать месяцев [1], плата — 45 000 рублей в месяц [1, 2]."
Q1 = "Какой срок аренды и какая плата?"
Q2 = "Сколько составляет арендная плата?"


class Lawyer(StandInModel):
    """A remote model's stand-in that cites the fragments by number, as the prompt asks."""

    name = "lawyer"

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        yield ANSWER
        yield Usage(prompt_tokens=100, completion_tokens=20)


def _pdf() -> bytes:
    pdf = fpdf.FPDF()
    pdf.add_font("DejaVu", fname=str(FONT))
    pdf.set_font("DejaVu", size=12)
    for lines in PAGES:
        pdf.add_page()
        for k, line in enumerate(lines):
            pdf.text(20, 40 + 12 * k, line)
    return bytes(pdf.output())


def _service(lib: Library) -> ChatService:
    providers = {"offline": OfflineProvider(), "lawyer": Lawyer()}
    return ChatService(
        lib.chats,
        lib.retriever,
        providers,
        top_k=2,
        actor=lib.actor,
        scope=lib.scope,  # type: ignore[arg-type]
    )


@pytest.fixture
def chat_with_pdf(library: Library) -> tuple[Library, ChatService, Chat, User]:
    alice = library.users.create("alice")
    assert library.ingest("dogovor.pdf", _pdf(), user=alice).status == "indexed"
    service = _service(library)
    first = service.ask(None, Q1, TurnChoice(provider="lawyer", model="s-1"), alice)
    first.run()
    second = service.ask(first.chat.id, Q2, TurnChoice(provider="offline", model=MODEL_ID), alice)
    second.run()
    assert not first.error and not second.error
    return library, service, service.chat(first.chat.id, alice), alice


def _footnoted(text: str, notes: dict[int, Footnote]) -> str:
    return re.sub(r"\[(\d+)\]", lambda m: f"[^{notes[int(m.group(1))].number}]", text)


def _footnote_texts(part_blob: bytes) -> dict[int, str]:
    root = etree.fromstring(part_blob)
    out = {}
    for note in root.iter(qn("w:footnote")):
        number = int(note.get(qn("w:id")))
        if number > 0:
            out[number] = "".join(t.text or "" for t in note.iter(qn("w:t"))).strip()
    return out


def test_markdown_has_every_question_answer_model_and_footnote(
    chat_with_pdf: tuple[Library, ChatService, Chat, User],
) -> None:
    _library, service, chat, alice = chat_with_pdf
    messages = service.messages(chat.id, alice)
    notes = [n for ex in exchanges(messages) for n in ex.notes.values()]
    assert [n.number for n in notes] == [1, 2, 3, 4]  # two sources per answer, numbered through the chat
    assert {n.source.page for n in notes} == {1, 2}

    md = export_chat(service, chat.id, "md", alice).decode("utf-8")

    assert md.startswith(f"# {chat.title}\n")
    assert f"## Вопрос 1\n\n{Q1}" in md and f"## Вопрос 2\n\n{Q2}" in md
    # The answer's own citations became the chat's footnotes.
    assert "Срок аренды — одиннадцать месяцев [^1], плата — 45 000 рублей в месяц [^1][^2]." in md
    assert "### Ответ · lawyer · s-1" in md and f"### Ответ · offline · {MODEL_ID}" in md
    # The offline answer quotes with its own numbers: those become footnotes 3 and 4, and a
    # source it does not cite is listed after it.
    second = exchanges(messages)[1]
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", messages[3].content)]
    assert cited and set(cited) <= set(second.notes)
    assert _footnoted(messages[3].content, second.notes) in md
    rest = [note.number for n, note in second.notes.items() if n not in cited]
    assert ("Источники: " + " ".join(f"[^{r}]" for r in rest) in md) == bool(rest)
    for note in notes:
        src = note.source
        line = next(x for x in md.splitlines() if x.startswith(f"[^{note.number}]: "))
        assert line.startswith(f"[^{note.number}]: dogovor.pdf, стр. {src.page}")
        assert " ".join(src.text.split()) in line
    assert any(src.anchor == "п. 2.1" for src in (n.source for n in notes))
    assert "стр. 1, п. 2.1: «" in md


def test_docx_reads_back_and_libreoffice_renders_it(
    chat_with_pdf: tuple[Library, ChatService, Chat, User], tmp_path: Path
) -> None:
    _library, service, chat, alice = chat_with_pdf
    messages = service.messages(chat.id, alice)
    notes = [n for ex in exchanges(messages) for n in ex.notes.values()]

    data = export_chat(service, chat.id, "docx", alice)

    doc = open_docx(io.BytesIO(data))
    body = "\n".join(p.text for p in doc.paragraphs)
    for msg in messages:
        if msg.role == "user":
            assert msg.content in body
    assert "Срок аренды — одиннадцать месяцев , плата — 45 000 рублей в месяц ." in body.replace("  ", " ")
    assert messages[3].content.split("\n")[0] in body
    assert "Ответ · lawyer · s-1" in body
    refs = [int(r.get(qn("w:id"))) for r in doc.element.body.iter(qn("w:footnoteReference"))]
    second = exchanges(messages)[1]
    cited = [int(n) for n in re.findall(r"\[(\d+)\]", messages[3].content)]
    rest = [note.number for n, note in second.notes.items() if n not in cited]
    assert refs == [1, 1, 2, *(second.notes[n].number for n in cited), *rest]
    footnotes = next(r.target_part for r in doc.part.rels.values() if r.reltype == RT.FOOTNOTES)
    texts = _footnote_texts(footnotes.blob)
    assert sorted(texts) == [1, 2, 3, 4]
    for note in notes:
        assert texts[note.number] == note.text()
        assert " ".join(note.source.text.split()) in texts[note.number]

    soffice = shutil.which("soffice")
    if soffice is None:
        unavailable("LibreOffice (packages-dev.txt: apt-get install libreoffice-writer-nogui)")
    path = tmp_path / export_name(chat, "docx")
    path.write_bytes(data)
    done = subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{tmp_path}/lo-profile",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path / "out"),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    pdf_path = tmp_path / "out" / path.with_suffix(".pdf").name
    assert done.returncode == 0 and pdf_path.exists(), done.stderr
    pdf = pdfium.PdfDocument(str(pdf_path))
    text = " ".join(" ".join(page.get_textpage().get_text_range().split()) for page in pdf)
    # Russian text intact, and the footnotes are where LibreOffice put them (on the page).
    assert Q1 in text and Q2 in text
    assert "Срок аренды — одиннадцать месяцев" in text
    for note in notes:
        assert " ".join(note.source.text.split()) in text


def test_another_users_chat_cannot_be_exported(
    chat_with_pdf: tuple[Library, ChatService, Chat, User],
) -> None:
    library, service, chat, _alice = chat_with_pdf
    bob = library.users.create("bob")
    for fmt in ("md", "docx"):
        with pytest.raises(NotFoundError):
            export_chat(service, chat.id, fmt, bob)


def test_unknown_citations_and_unanswered_questions_stay_as_written() -> None:
    chat = Chat(title="Проверка")
    src = Source(n=1, chunk_id="c", document_id="d", filename="a.txt", text="Текст фрагмента.")
    src2 = Source(n=2, chunk_id="e", document_id="d", filename="b.pdf", page=4, anchor="п. 5", text="Второй.")
    messages = [
        Message(chat_id=chat.id, role="user", content="Вопрос [2024]?"),
        Message(chat_id=chat.id, role="assistant", content="По ст. [2024] и [1].", sources=[src]),
        Message(chat_id=chat.id, role="user", content="Ещё вопрос"),
        Message(chat_id=chat.id, role="assistant", content="Цитата без номера.", sources=[src, src2]),
        Message(chat_id=chat.id, role="user", content="Без ответа"),
    ]
    md = to_markdown(chat, messages)
    assert "Цитата без номера.\n\nИсточники: [^2] [^3]" in md
    rest = "[^2]: a.txt: «Текст фрагмента.»\n[^3]: b.pdf, стр. 4, п. 5: «Второй.»\n"
    assert "По ст. [2024] и [^1]." in md and "Вопрос [2024]?" in md
    assert md.endswith(
        "## Вопрос 3\n\nБез ответа\n\n_Ответа нет._\n\n[^1]: a.txt: «Текст фрагмента.»\n" + rest
    )
    assert "[^1]: a.txt: «Текст фрагмента.»" in md
    assert export_name(Chat(title="Аренда: срок / плата?"), "docx") == "Аренда_срок_плата.docx"
