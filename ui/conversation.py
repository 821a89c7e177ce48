"""The chat page's side of a turn: the session's question queue, and rendering ``rag.answer.chat`` turns.

What is stored, when, and with which settings is ``rag.answer.chat``'s business; this module keeps
the session's bookkeeping (questions sent but not yet stored, the stored question whose
answer has not been stored yet) and draws the turn while it streams.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import streamlit as st

from rag.answer.chat import ChatService, Turn, TurnChoice
from storage import Chat, Message
from ui.auth import current_user
from ui.markup import answer_markdown, literal
from ui.messages import VERBATIM_PROVIDER, render_sources

# Session-state keys: questions submitted but not yet handled, and the stored question whose
# answer has not been stored yet.
QUEUE = "question_queue"
INPUT = "question_input"
UNANSWERED = "unanswered_question"


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
    service: ChatService, chat: Chat | None, choice: TurnChoice, on_new_chat: Callable[[Chat], None]
) -> bool:
    """Answer this session's unanswered or oldest queued question; True if one was handled.

    Runs under the session's generation lock: with fast reruns a run cut short and its
    successor overlap, and only one of them may take a question, or it is lost or doubled.
    A question leaves the queue only once it is stored.
    """
    with _generation_lock():
        wanted = st.session_state.get(UNANSWERED)
        if chat is not None and wanted:
            # The service reads the chat again under this lock: the page's copy may predate a
            # run that stored the question and died.
            turn = service.resume(chat.id, wanted, choice, user=current_user())
            if turn is not None:
                _render(turn)
                return True
            st.session_state.pop(UNANSWERED, None)
        queue: list[str] = st.session_state.get(QUEUE, [])
        if not queue:
            return False
        turn = service.ask(chat.id if chat is not None else None, queue[0], choice, user=current_user())
        queue.pop(0)
        if chat is None or turn.chat.id != chat.id:
            on_new_chat(turn.chat)
        # Until its answer is stored the question is this session's to answer: a rerun that
        # cuts this run short before any answer text exists makes the page answer it again.
        st.session_state[UNANSWERED] = turn.question.id
        with st.chat_message("user"):
            st.markdown(literal(turn.question.content))
        _render(turn)
        return True


def _render(turn: Turn) -> None:
    """Draw one turn while it is prepared and streamed; store what arrived if cut short."""
    with st.chat_message("assistant"):
        try:
            with st.spinner("Ищу в документах…"):
                turn.prepare()
            # The answer's row exists now (a draft, or the error): the question is answered.
            st.session_state.pop(UNANSWERED, None)
            if not turn.finished:
                # Any click (this button included) makes Streamlit stop this run and rerun the
                # page; the handler below stores what had arrived, marked as stopped.
                stop = st.empty()
                stop.button("Остановить", icon=":material/stop_circle:", key="stop_generation")
                show_stream(turn.deltas(), verbatim=turn.choice.provider == VERBATIM_PROVIDER)
                stop.empty()
        except BaseException:  # Streamlit's stop/rerun: the user stopped or left the page
            # Before the draft exists no user stopped anything: some other rerun cut in, and
            # the question stays unanswered for the next run to answer.
            turn.stop()
            raise
        if turn.error:
            st.error(literal(turn.error))
        render_sources(turn.sources, turn.chat.id)


def show_stream(deltas: Iterable[str], verbatim: bool = False) -> None:
    """Render an answer as it streams in, made safe by ``answer_markdown`` at every delta."""
    # Not st.write_stream: it renders the raw text as Markdown (and completes unclosed syntax
    # while streaming), so an image in the answer would load before the page reruns. The whole
    # text is made safe again at each delta, since whether a backtick opens code depends on
    # what follows it.
    placeholder = st.empty()
    text = ""
    for delta in deltas:
        text += delta
        placeholder.markdown(answer_markdown(text, verbatim=verbatim))
