"""The Russian system prompt and the message list sent to a provider, trimmed to fit."""

from __future__ import annotations

from collections.abc import Sequence

from language import estimate_tokens
from providers.base import ChatMessage, Fragment

SYSTEM_PROMPT = (
    "Ты — ассистент, который отвечает на вопросы по документам пользователя. "
    "Отвечай только на основе приведённых ниже фрагментов. После каждого утверждения "
    "ставь ссылку на фрагмент в квадратных скобках, например [1] или [2]. "
    "Если во фрагментах нет ответа, прямо скажи, что в документах этого нет, и не выдумывай. "
    "Отвечай на языке вопроса."
)
NO_DOCUMENTS_PROMPT = "Ты — полезный ассистент. Отвечай на языке вопроса."


def format_fragment(f: Fragment) -> str:
    """One fragment as the model sees it."""
    where = f"{f.file}, стр. {f.page}" if f.page else f.file
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
    for m in reversed(history):
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
