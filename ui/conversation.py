"""The chat flow: save the question, stream the answer, save it with sources, usage and errors.

Nothing is lost: the question is stored before generation starts; an answer that fails,
breaks off or is stopped is stored with what arrived and the reason.
"""

from __future__ import annotations

import logging
import threading
import time

import streamlit as st

from providers import ChatMessage, GenerationParams, Provider, ProviderError, StreamInterruptedError
from providers.base import Completion
from rag.library import Library
from rag.pipeline import answer
from storage import Chat, Message
from ui.components import render_sources
from ui.markup import answer_markdown, literal

log = logging.getLogger(__name__)

TITLE_CHARS = 48
STOPPED = "Генерация остановлена: показана полученная часть ответа."
INTERNAL = (
    "Внутренняя ошибка при подготовке ответа. Повторите запрос; если не поможет, сообщите администратору."
)


def history_for_prompt(messages: list[Message], turns: int) -> list[ChatMessage]:
    """The last ``turns`` question/answer pairs, skipping failed answers."""
    usable = [m for m in messages if m.role in ("user", "assistant") and m.content and not m.error]
    recent = usable[-2 * turns :] if turns else []
    return [ChatMessage(role="user" if m.role == "user" else "assistant", content=m.content) for m in recent]


def title_from(question: str) -> str:
    """A chat title from its first question."""
    title = " ".join(question.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def _generation_lock() -> threading.Lock:
    if "generation_lock" not in st.session_state:
        st.session_state["generation_lock"] = threading.Lock()
    lock: threading.Lock = st.session_state["generation_lock"]
    return lock


def wait_for_previous_answer(timeout: float = 30.0) -> None:
    """Let a stopped answer finish saving before the page reads the chat.

    Streamlit starts the new run at once when the user clicks during generation (fast
    reruns); the old run notices only at its next delta and then stores the partial text.
    """
    lock = _generation_lock()
    if lock.locked():
        with st.spinner("Сохраняю остановленный ответ…"):
            if lock.acquire(timeout=timeout):
                lock.release()


def failed_answer(messages: list[Message]) -> Message | None:
    """The last message, if it is an answer that failed (not one the user stopped)."""
    if messages and messages[-1].role == "assistant" and messages[-1].error:
        last = messages[-1]
        return None if last.error == STOPPED else last
    return None


def show_stream(completion: Completion) -> None:
    """Render an answer as it streams in, made safe by ``answer_markdown`` at every delta."""
    # Not st.write_stream: it renders the raw text as Markdown (and completes unclosed syntax
    # while streaming), so an image in the answer would load before the page reruns. The whole
    # text is made safe again at each delta, since whether a backtick opens code depends on
    # what follows it.
    placeholder = st.empty()
    for _ in completion:
        placeholder.markdown(answer_markdown(completion.text))


def respond(
    library: Library,
    chat: Chat,
    provider: Provider,
    model: str,
    params: GenerationParams,
    question: str,
    use_documents: bool,
    system_prompt: str,
    retry: bool = False,
) -> None:
    """Render and persist one exchange (``retry``: the question is already stored and shown)."""
    repo = library.chats
    previous = repo.messages(chat.id)
    if retry and previous and previous[-1].role == "user":
        previous = previous[:-1]
    history = history_for_prompt(previous, library.settings.history_turns)
    if not retry:
        repo.add_message(chat.id, "user", question)
        if not previous and chat.title in ("", "Новый чат"):
            repo.update(chat.id, title=title_from(question))
        with st.chat_message("user"):
            st.markdown(literal(question))
    with _generation_lock(), st.chat_message("assistant"):
        started = time.perf_counter()
        sources: list[dict[str, object]] = []
        completion: Completion | None = None
        error: str | None = None

        def save(text: str, error: str | None) -> None:
            usage = completion.usage if completion else None
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
            completion = prepared.completion
            # Any click (this button included) makes Streamlit stop this run and rerun the page;
            # the BaseException handler below stores what had arrived, marked as stopped.
            stop = st.empty()
            stop.button("Остановить", icon=":material/stop_circle:", key="stop_generation")
            show_stream(completion)
            stop.empty()
        except StreamInterruptedError as exc:
            error = exc.user_message
        except ProviderError as exc:
            error = exc.user_message
        except Exception:
            log.exception("answer failed")
            error = INTERNAL
        except BaseException:  # Streamlit's stop/rerun: the user stopped or left the page
            save(completion.text if completion else "", STOPPED)
            if completion is not None:
                completion.close()
            raise
        text = completion.text if completion else ""
        if error:
            st.error(literal(error))
        render_sources(sources)
        save(text, error)
