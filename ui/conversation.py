"""The chat flow: save the question, stream the answer, save it with sources, usage and errors."""

from __future__ import annotations

import logging
import time

import streamlit as st

from providers import ChatMessage, GenerationParams, Provider, ProviderError, StreamInterruptedError
from rag.library import Library
from rag.pipeline import answer
from storage import Chat, Message
from ui.components import render_sources

log = logging.getLogger(__name__)

TITLE_CHARS = 48


def history_for_prompt(messages: list[Message], turns: int) -> list[ChatMessage]:
    """The last ``turns`` question/answer pairs, skipping failed answers."""
    usable = [m for m in messages if m.role in ("user", "assistant") and m.content and not m.error]
    recent = usable[-2 * turns :] if turns else []
    return [ChatMessage(role="user" if m.role == "user" else "assistant", content=m.content) for m in recent]


def title_from(question: str) -> str:
    """A chat title from its first question."""
    title = " ".join(question.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def respond(
    library: Library,
    chat: Chat,
    provider: Provider,
    model: str,
    params: GenerationParams,
    question: str,
    use_documents: bool,
    system_prompt: str,
) -> None:
    """Render and persist one exchange; failures are stored with the error, never lost."""
    repo = library.chats
    previous = repo.messages(chat.id)
    history = history_for_prompt(previous, library.settings.history_turns)
    repo.add_message(chat.id, "user", question)
    if not previous and chat.title in ("", "Новый чат"):
        repo.update(chat.id, title=title_from(question))
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        started = time.perf_counter()
        sources: list[dict[str, object]] = []
        text, error = "", None
        usage = None
        try:
            status = provider.status()
            if not status.available:
                raise ProviderError(f"{provider.label}: {status.reason}.", provider=provider.name)
            with st.spinner("Ищу в документах…"):
                prepared = answer(
                    library,
                    provider,
                    question,
                    model,
                    params,
                    history=history,
                    top_k=library.settings.top_k,
                    use_documents=use_documents,
                    extra_system=system_prompt,
                )
            sources = prepared.sources
            try:
                written = st.write_stream(prepared.completion)
                text = written if isinstance(written, str) else prepared.completion.text
            finally:
                text = text or prepared.completion.text
            usage = prepared.completion.usage
        except StreamInterruptedError as exc:
            text = text or exc.partial
            error = exc.user_message
        except ProviderError as exc:
            error = exc.user_message
        except Exception:
            log.exception("answer failed")
            error = (
                "Внутренняя ошибка при подготовке ответа. Повторите запрос; "
                "если не поможет, сообщите администратору."
            )
        if error:
            st.error(error)
        render_sources(sources)
        repo.add_message(
            chat.id,
            "assistant",
            text,
            provider=provider.name,
            model=model,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            error=error,
            sources=sources,
        )
