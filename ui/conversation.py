"""The chat flow: save the question, stream the answer, save it with sources, usage and errors.

Nothing is lost: the question is stored before generation starts; an answer that fails,
breaks off or is stopped is stored with what arrived and the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from itertools import pairwise

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
CRASHED = "Ответ оборвался: приложение было остановлено во время генерации. Показана полученная часть."
CHECKPOINT_S = 1.0
# Session-state keys: questions submitted but not yet handled, and the stored question whose
# answer has not been stored yet.
QUEUE = "question_queue"
INPUT = "question_input"
UNANSWERED = "unanswered_question"
INTERNAL = (
    "Внутренняя ошибка при подготовке ответа. Повторите запрос; если не поможет, сообщите администратору."
)


def history_for_prompt(messages: list[Message], turns: int) -> list[ChatMessage]:
    """The last ``turns`` answered question/answer pairs; failed or unanswered turns are left out."""
    # Only whole pairs: a question whose answer failed would otherwise put two user turns in a
    # row, which some APIs refuse and every model reads as a question still open.
    pairs = [
        (q, a)
        for q, a in pairwise(messages)
        if q.role == "user" and a.role == "assistant" and q.content and a.content and not a.error
    ]
    recent = pairs[-turns:] if turns else []
    return [
        ChatMessage(role=role, content=m.content)
        for q, a in recent
        for role, m in (("user", q), ("assistant", a))
    ]


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


def queue_question() -> None:
    """``st.chat_input`` callback: keep the question even if this run is cut short.

    Callbacks run before the script, so a question sent while another rerun is pending (an
    upload finishing, a fragment, a second click) is queued rather than lost with its trigger.
    """
    text = st.session_state.get(INPUT)
    if isinstance(text, str) and text.strip():
        st.session_state.setdefault(QUEUE, []).append(text.strip())


def answer_again(question: Message) -> None:
    """Have this stored question answered again by the next ``take_turn``."""
    st.session_state[UNANSWERED] = question.id


def take_turn(
    library: Library,
    chat: Chat | None,
    chat_for_question: Callable[[], Chat],
    provider: Provider,
    model: str,
    params: GenerationParams,
    use_documents: bool,
    system_prompt: str,
) -> bool:
    """Answer this session's unanswered or oldest queued question; True if one was handled.

    Runs under the session's generation lock: with fast reruns a run cut short and its
    successor overlap, and only one of them may take a question, or it is lost or doubled.
    A question leaves the queue only once it is stored (``respond``).
    """
    with _generation_lock():
        if chat is not None:
            # Read again under the lock: the page's copy predates a run that stored and died.
            stored = unanswered(library.chats.messages(chat.id))
            if stored is not None:
                respond(
                    library, chat, provider, model, params, stored, use_documents, system_prompt, retry=True
                )
                return True
        queue: list[str] = st.session_state.get(QUEUE, [])
        if not queue:
            return False
        respond(library, chat_for_question(), provider, model, params, queue[0], use_documents, system_prompt)
        return True


def unanswered(messages: list[Message]) -> str | None:
    """This session's stored question that never got an answer (its run was cut short)."""
    wanted = st.session_state.get(UNANSWERED)
    if wanted and messages and messages[-1].role == "user" and messages[-1].id == wanted:
        return messages[-1].content
    return None


def failed_answer(messages: list[Message]) -> Message | None:
    """The last message, if it is an answer that failed (not one the user stopped)."""
    if messages and messages[-1].role == "assistant" and messages[-1].error:
        last = messages[-1]
        return None if last.error == STOPPED else last
    return None


def show_stream(completion: Completion, checkpoint: Callable[[str], object] | None = None) -> None:
    """Render an answer as it streams in, made safe by ``answer_markdown`` at every delta.

    ``checkpoint`` gets the text so far about once a second, so a crash loses little of it.
    """
    # Not st.write_stream: it renders the raw text as Markdown (and completes unclosed syntax
    # while streaming), so an image in the answer would load before the page reruns. The whole
    # text is made safe again at each delta, since whether a backtick opens code depends on
    # what follows it.
    placeholder = st.empty()
    saved_at = time.monotonic()
    for _ in completion:
        placeholder.markdown(answer_markdown(completion.text))
        if checkpoint is not None and time.monotonic() - saved_at >= CHECKPOINT_S:
            checkpoint(completion.text)
            saved_at = time.monotonic()


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
    """Render and persist one exchange (``retry``: the question is already stored and shown).

    The caller holds the session's generation lock (``take_turn``).
    """
    repo = library.chats
    previous = repo.messages(chat.id)
    pending: Message | None = None
    if retry and previous and previous[-1].role == "user":
        pending, previous = previous[-1], previous[:-1]
    history = history_for_prompt(previous, library.settings.history_turns)
    if not retry:
        pending = repo.add_message(chat.id, "user", question)
        queue: list[str] = st.session_state.get(QUEUE, [])
        if queue and queue[0] == question:
            queue.pop(0)
    if pending is not None:
        # Until its answer is stored the question is this session's to answer: a rerun that
        # cuts this run short before any answer text exists makes the page answer it again.
        st.session_state[UNANSWERED] = pending.id
    if not retry:
        if not previous and chat.title in ("", "Новый чат"):
            repo.update(chat.id, title=title_from(question))
        with st.chat_message("user"):
            st.markdown(literal(question))
    with st.chat_message("assistant"):
        started = time.perf_counter()
        sources: list[dict[str, object]] = []
        completion: Completion | None = None
        error: str | None = None

        draft: Message | None = None

        def save(text: str, error: str | None) -> None:
            st.session_state.pop(UNANSWERED, None)
            usage = completion.usage if completion else None
            fields = dict(
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
            if draft is not None:
                repo.update_message(draft.id, content=text, **fields)
            else:
                repo.add_message(chat.id, "assistant", text, **fields)

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
            # Stored before the first token and marked as cut off until it completes: if the
            # process dies mid-answer, the question, its sources and the text so far remain.
            draft = repo.add_message(
                chat.id, "assistant", "", provider=provider.name, model=model, error=CRASHED, sources=sources
            )
            st.session_state.pop(UNANSWERED, None)
            # Any click (this button included) makes Streamlit stop this run and rerun the page;
            # the BaseException handler below stores what had arrived, marked as stopped.
            stop = st.empty()
            stop.button("Остановить", icon=":material/stop_circle:", key="stop_generation")
            draft_id = draft.id
            show_stream(completion, lambda text: repo.update_message(draft_id, content=text))
            stop.empty()
        except StreamInterruptedError as exc:
            error = exc.user_message
        except ProviderError as exc:
            error = exc.user_message
        except Exception:
            log.exception("answer failed")
            error = INTERNAL
        except BaseException:  # Streamlit's stop/rerun: the user stopped or left the page
            # Before the Stop button exists (completion is None) no user stopped anything: some
            # other rerun cut in, and the question stays unanswered for the next run to answer.
            if completion is not None:
                save(completion.text, STOPPED)
                completion.close()
            raise
        text = completion.text if completion else ""
        if error:
            st.error(literal(error))
        render_sources(sources)
        save(text, error)
