"""The Russian system prompt and the message list sent to a provider, trimmed to fit."""

from __future__ import annotations

import re
from collections.abc import Sequence

from language import estimate_tokens
from providers.base import ChatMessage, Fragment

SYSTEM_PROMPT = (
    "Ты — ассистент, который отвечает на вопросы по документам пользователя. "
    "Отвечай только на основе фрагментов документов, приведённых ниже: у каждого фрагмента есть "
    "номер и имя файла (и пункт документа и страница, если они известны). "
    "После каждого утверждения ставь ссылку на номер фрагмента в квадратных скобках, "
    "например [1] или [2]. "
    "Если во фрагментах нет ответа, прямо скажи, что в документах этого нет, и не выдумывай; "
    "если ответ есть лишь частично, ответь на то, что есть, и скажи, чего не хватает. "
    "Предыдущие сообщения диалога нужны только для того, чтобы понять вопрос: факты бери "
    "только из фрагментов ниже. "
    "Отвечай на языке вопроса, даже если фрагменты написаны на другом языке."
)
NO_DOCUMENTS_PROMPT = "Ты — полезный ассистент. Отвечай на языке вопроса."


# Citation markers of an earlier answer ("[1]", "[2, 3]", "[1][2]"): they point at that turn's
# fragments, and the same numbers now name other ones.
_CITATION = re.compile(r"[ \t]*\[\d+(?:\s*[,;–-]\s*\d+)*\]")


def past_message(m: ChatMessage) -> ChatMessage:
    """An earlier message as the model sees it again: an answer without its old citation numbers."""
    if m.role != "assistant":
        return m
    # An answer that was nothing but citations keeps them rather than become empty.
    return ChatMessage(role="assistant", content=_CITATION.sub("", m.content).strip() or m.content)


def format_fragment(f: Fragment) -> str:
    """One fragment as the model sees it."""
    # The clause goes with the file, so that a model can cite «п. 2.1 договора».
    where = ", ".join([f.file, *([f.anchor] if f.anchor else []), *([f"стр. {f.page}"] if f.page else [])])
    return f"[{f.n}] ({where})\n{f.text}"


def build_messages(
    question: str,
    fragments: Sequence[Fragment],
    history: Sequence[ChatMessage] = (),
    extra_system: str = "",
    use_documents: bool = True,
    context_tokens: int = 8192,
    answer_tokens: int = 1024,
) -> tuple[list[ChatMessage], list[Fragment]]:
    """System prompt with fragments, recent history, the question; trimmed to the window.

    The system prompt is built anew for every question, with this question's fragments: the
    history brings only earlier questions and answers (no system prompt, no old citation
    numbers), so a follow-up is grounded exactly as a first question is.
    Returns the messages and the fragments that fit (their numbers stay as cited).
    """
    base = SYSTEM_PROMPT if use_documents else NO_DOCUMENTS_PROMPT
    if extra_system.strip():
        base += "\n\n" + extra_system.strip()
    budget = max(256, context_tokens - answer_tokens - estimate_tokens(base) - estimate_tokens(question))
    kept: list[Fragment] = []
    # Fragments first (they ground the answer), best first; then as much history as fits.
    for f in fragments:
        cost = estimate_tokens(format_fragment(f))
        if cost > budget and kept:
            break
        kept.append(f)
        budget -= cost
    recent: list[ChatMessage] = []
    past = [past_message(m) for m in history if m.role != "system"]
    for m in reversed(past):
        cost = estimate_tokens(m.content)
        if cost > budget:
            break
        recent.insert(0, m)
        budget -= cost
    system = base
    if use_documents:
        body = "\n\n".join(format_fragment(f) for f in kept) if kept else "(подходящих фрагментов нет)"
        system += "\n\nФрагменты документов:\n\n" + body
    messages = [ChatMessage(role="system", content=system), *recent]
    messages.append(ChatMessage(role="user", content=question))
    return messages, kept
