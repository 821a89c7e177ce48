"""The chat turn as a service: the page renders it, the CLI prints it, both store it the same way.

Nothing is lost: the question is stored before anything else; the answer's row is stored
before its first token (marked as cut off until it completes) and checkpointed while it
streams; an answer that fails, breaks off or is stopped keeps what arrived and the reason.

A turn goes through three steps, each driven by the caller::

    turn = service.ask(chat_id, question, choice)   # question stored, chat settings saved
    turn.prepare()                                   # retrieval, prompt, the answer's draft row
    for delta in turn.deltas(): ...                  # streaming, checkpoints, final save
    turn.stop()                                      # if the caller is interrupted mid-way

Before ``prepare`` has stored the draft, an interrupted turn leaves its question unanswered;
``pending_question`` finds it so that the next run can answer it (``resume``).

Every other change to a chat goes through this service too (rename, delete, clear, which
collections it searches, an admin clearing chats): each method takes the acting user and
treats another user's chat as not found, so a page never writes a chat row itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from names import clean_name
from providers import ChatMessage, GenerationParams, Provider, ProviderError
from providers.base import Completion
from rag.answer.pipeline import answer
from rag.identity.access import EVERYTHING, AccessControl, Forbidden, Scope
from rag.search.retrieve import Method, Retriever
from rag.search.rewrite import QueryRewriter
from storage import Chat, ChatRepo, Message, NotFoundError, Source
from storage.models import Collection, User


class Recalled(Protocol):
    """What a chat's memory adds to a question (``rag.chats.memory.Recall``)."""

    history: list[ChatMessage]
    anchor: str | None


class Memory(Protocol):
    """A chat's memory (``rag.chats.memory.ChatMemory``): kept here as a protocol, since the chats
    package builds on this one and not the reverse."""

    def remember(self, message: Message) -> None:
        """Embed and store one message."""
        ...

    def recall(self, chat_id: str, question: str, messages: Sequence[Message], recent: int) -> Recalled:
        """The earlier turns relevant to the question, and the question to search with."""
        ...


log = logging.getLogger(__name__)

NEW_TITLE = "Новый чат"
TITLE_CHARS = 48
# A title a person types (renaming) may be longer than one made from a question.
MAX_TITLE_CHARS = 120
NO_COLLECTIONS = (
    "Не выбрана ни одна коллекция: ответ не опирается на документы. "
    "Выберите коллекции в поле «Искать в коллекциях»."
)
STOPPED = "Генерация остановлена: показана полученная часть ответа."
CRASHED = "Ответ оборвался: приложение было остановлено во время генерации. Показана полученная часть."
INTERNAL = (
    "Внутренняя ошибка при подготовке ответа. Повторите запрос; если не поможет, сообщите администратору."
)
CHECKPOINT_S = 1.0


class TurnChoice(BaseModel):
    """What the person chose for this turn; it is saved on the chat as its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = "offline"
    model: str = ""
    temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=32768)
    system_prompt: str = ""
    use_documents: bool = True
    # An assistant's retrieval settings (rag.lab.assistants); the defaults are the sidebar's.
    # ``collection_ids`` narrows the chat's collections further (None: no narrowing).
    assistant_id: str | None = None
    assistant_name: str | None = None
    method: Method = "hybrid"
    top_k: int | None = Field(default=None, ge=1, le=50)
    rewrite: bool = True
    collection_ids: list[str] | None = None

    def params(self) -> GenerationParams:
        """The generation parameters of this choice."""
        return GenerationParams(temperature=self.temperature, max_tokens=self.max_tokens)

    def chat_fields(self) -> dict[str, Any]:
        """What a chat remembers of this choice (its columns)."""
        fields = ("provider", "model", "temperature", "max_tokens", "system_prompt", "use_documents")
        return {**{f: getattr(self, f) for f in fields}, "assistant_id": self.assistant_id}


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
    """A chat title from its first question (cleaned like every name: ``names.clean_name``)."""
    title = clean_name(question)
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1].rstrip() + "…"


def pending_question(messages: list[Message]) -> Message | None:
    """The last message if it is a question with no answer row (its turn was cut short)."""
    return messages[-1] if messages and messages[-1].role == "user" else None


def failed_answer(messages: list[Message]) -> Message | None:
    """The last message, if it is an answer that failed (not one the user stopped)."""
    if messages and messages[-1].role == "assistant" and messages[-1].error:
        last = messages[-1]
        return None if last.error == STOPPED else last
    return None


class Turn:
    """One exchange in progress: its question is stored; ``prepare`` and ``deltas`` answer it."""

    def __init__(
        self,
        service: ChatService,
        chat: Chat,
        question: Message,
        history: list[ChatMessage],
        choice: TurnChoice,
        scope: Scope = EVERYTHING,
        anchor: str | None = None,
    ) -> None:
        self.chat = chat
        # The earlier question the chat's memory found most relevant (what a follow-up searches with).
        self.anchor = anchor
        self.scope = scope
        self.question = question
        self.choice = choice
        self.sources: list[Source] = []
        self.error: str | None = None
        self.answer: Message | None = None  # the answer's row, once stored
        self._service = service
        self._history = history
        self._completion: Completion | None = None
        self._started = time.perf_counter()
        self._finished = False

    @property
    def text(self) -> str:
        """The answer's text so far."""
        return self._completion.text if self._completion is not None else ""

    @property
    def finished(self) -> bool:
        """True once the answer is stored in its final form (complete, failed or stopped)."""
        return self._finished

    def prepare(self) -> None:
        """Retrieve, build the prompt, open the stream and store the answer's draft row.

        A provider that is not configured, or any failure here, ends the turn with an error
        answer stored; nothing is raised.
        """
        service = self._service
        try:
            provider = service.provider(self.choice.provider)
            status = provider.status()
            if not status.available:
                raise ProviderError(f"{provider.label}: {status.reason}.", provider=provider.name)
            prepared = answer(
                service.retriever,
                provider,
                self.question.content,
                self.choice.model,
                self.choice.params(),
                history=self._history,
                top_k=self.choice.top_k or service.top_k,
                use_documents=self.choice.use_documents,
                extra_system=self.choice.system_prompt,
                rewriter=service.rewriter if self.choice.rewrite else None,
                scope=self.scope,
                method=self.choice.method,
                anchor=self.anchor,
            )
        except ProviderError as exc:
            self._end(exc.user_message)
            return
        except Exception:
            log.exception("preparing an answer failed")
            self._end(INTERNAL)
            return
        self.sources = prepared.sources
        self._completion = prepared.completion
        # Stored before the first token and marked as cut off until it completes: if the
        # process dies mid-answer, the question, its sources and the text so far remain.
        self.answer = service.chats.add_message(
            self.chat.id,
            "assistant",
            "",
            provider=self.choice.provider,
            model=self.choice.model,
            error=CRASHED,
            sources=self.sources,
        )

    def deltas(self) -> Iterator[str]:
        """The answer's text as it arrives; checkpoints it and stores the final answer at the end."""
        completion = self._completion
        if completion is None or self._finished:
            return
        answer_row = self.answer
        assert answer_row is not None
        clock = self._service.clock
        saved_at = clock()
        error: str | None = None
        try:
            for delta in completion:
                if clock() - saved_at >= CHECKPOINT_S:
                    self._service.chats.update_message(answer_row.id, content=completion.text, reindex=False)
                    saved_at = clock()
                yield delta
        except ProviderError as exc:  # a broken stream keeps its partial text
            error = exc.user_message
        except Exception:
            log.exception("answer failed")
            error = INTERNAL
        self._end(error)

    def run(self) -> str:
        """Prepare and stream to the end; the final text."""
        self.prepare()
        for _ in self.deltas():
            pass
        return self.text

    def stop(self) -> None:
        """The caller was interrupted: keep what arrived, marked as stopped by the user.

        Before the draft exists nothing is stored, so the question stays pending.
        """
        if self._finished or self.answer is None:
            return
        self._end(STOPPED)
        if self._completion is not None:
            self._completion.close()

    def _end(self, error: str | None) -> None:
        self.error = error
        completion = self._completion
        usage = completion.usage if completion is not None else None
        fields: dict[str, Any] = dict(
            provider=self.choice.provider,
            model=self.choice.model,
            temperature=self.choice.temperature,
            max_tokens=self.choice.max_tokens,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            latency_ms=round((time.perf_counter() - self._started) * 1000, 1),
            error=error,
            sources=self.sources,
            # Everything it was made with, as it was then: a later edit of the assistant
            # changes new answers, never this record.
            settings=self.choice.model_dump(mode="json"),
        )
        chats = self._service.chats
        if self.answer is not None:
            self.answer = chats.update_message(self.answer.id, content=self.text, **fields)
        else:
            self.answer = chats.add_message(self.chat.id, "assistant", self.text, **fields)
        self._finished = True
        if self._service.memory is not None and error is None:
            self._service.memory.remember(self.answer)


class ChatService:
    """Chat turns over a chat store, a retriever and the providers (and a question rewriter)."""

    def __init__(
        self,
        chats: ChatRepo,
        retriever: Retriever,
        providers: Mapping[str, Provider],
        *,
        top_k: int = 5,
        history_turns: int = 3,
        clock: Callable[[], float] = time.monotonic,
        rewriter: QueryRewriter | None = None,
        actor: Callable[[User | None], User] | None = None,
        scope: Callable[[User, list[str] | None], Scope] | None = None,
        access: AccessControl | None = None,
        memory: Memory | None = None,
    ) -> None:
        self.chats = chats
        # Earlier turns relevant to a new question (rag.chats.memory); None: the recent turns only.
        self.memory = memory
        # Collections a chat may search, and who is an admin; without it: single-user.
        self._access = access
        # Who acts and what they may read (``Library.actor``, ``Library.scope``); without them
        # the service is single-user: every chat, every document.
        self._actor = actor
        self._scope = scope
        self.retriever = retriever
        self.providers = providers
        self.top_k = top_k
        self.history_turns = history_turns
        self.clock = clock
        self.rewriter = rewriter  # None: questions are searched as asked

    def provider(self, name: str) -> Provider:
        """A provider by name, or a Russian error naming the known ones."""
        try:
            return self.providers[name]
        except KeyError:
            known = ", ".join(self.providers)
            raise ProviderError(f"Провайдер «{name}» не найден: выберите один из {known}.") from None

    def start_chat(self, choice: TurnChoice, user: User | None = None) -> Chat:
        """A new, empty chat with these settings, owned by the user."""
        owner = self._who(user)
        return self.chats.create(**choice.chat_fields(), owner_id=owner.id if owner else None)

    def chats_of(self, user: User | None = None) -> list[Chat]:
        """The user's chats, most recently active first."""
        owner = self._who(user)
        return self.chats.list_all(owner_id=owner.id if owner else None)

    def chat(self, chat_id: str, user: User | None = None) -> Chat:
        """One of the user's chats; NotFoundError for anyone else's."""
        chat = self.chats.get(chat_id)
        owner = self._who(user)
        if owner is not None and chat.owner_id != owner.id:
            raise NotFoundError(chat_id)
        return chat

    def ask(self, chat_id: str | None, question: str, choice: TurnChoice, user: User | None = None) -> Turn:
        """Store a new question (in a new chat when ``chat_id`` is None) and return its turn."""
        chat = self._chat_with(chat_id, choice, user)
        previous = self.chats.messages(chat.id)
        stored = self.chats.add_message(chat.id, "user", question)
        if not previous and chat.title in ("", NEW_TITLE):
            chat = self.chats.update(chat.id, title=title_from(question))
        history = history_for_prompt(previous, self.history_turns)
        return self._turn(chat, stored, previous, history, choice, user)

    def resume(
        self, chat_id: str, question_id: str, choice: TurnChoice, user: User | None = None
    ) -> Turn | None:
        """The turn of a stored question that has no answer yet, or None if it has one now."""
        chat = self._chat_with(chat_id, choice, user)
        messages = self.chats.messages(chat.id)
        pending = pending_question(messages)
        if pending is None or pending.id != question_id:
            return None
        history = history_for_prompt(messages[:-1], self.history_turns)
        return self._turn(chat, pending, messages[:-1], history, choice, user)

    def _turn(
        self,
        chat: Chat,
        question: Message,
        previous: list[Message],
        history: list[ChatMessage],
        choice: TurnChoice,
        user: User | None,
    ) -> Turn:
        """The question's turn, with the earlier turns memory recalls before the recent ones."""
        anchor = None
        if self.memory is not None:
            recall = self.memory.recall(chat.id, question.content, previous, self.history_turns)
            history, anchor = recall.history + history, recall.anchor
            self.memory.remember(question)
        return Turn(self, chat, question, history, choice, self._scope_of(chat, user, choice), anchor)

    def discard_failed(self, chat_id: str, answer_id: str, user: User | None = None) -> Message | None:
        """Remove a failed last answer so its question can be asked again; that question."""
        try:
            self.chat(chat_id, user)
        except NotFoundError:
            return None
        messages = self.chats.messages(chat_id)
        failed = failed_answer(messages)
        if failed is None or failed.id != answer_id:
            return None
        self.chats.delete_message(failed.id)
        return pending_question(messages[:-1])

    # -- managing chats -------------------------------------------------------------------------

    def rename(self, chat_id: str, title: str, user: User | None = None) -> Chat:
        """Give one of the user's chats a new (cleaned) title."""
        self.chat(chat_id, user)
        return self.chats.update(chat_id, title=clean_name(title, MAX_TITLE_CHARS))

    def delete(self, chat_id: str, user: User | None = None) -> None:
        """Delete one of the user's chats with its messages."""
        self.chat(chat_id, user)
        self.chats.delete(chat_id)

    def clear(self, chat_id: str, user: User | None = None) -> None:
        """Remove every message of one of the user's chats, keeping the chat."""
        self.chat(chat_id, user)
        self.chats.clear_messages(chat_id)

    def messages(self, chat_id: str, user: User | None = None) -> list[Message]:
        """The messages of one of the user's chats, in order."""
        self.chat(chat_id, user)
        return self.chats.messages(chat_id)

    def searchable_collections(self, user: User | None = None) -> list[Collection]:
        """The collections the user's chats may search (every readable one)."""
        owner = self._who(user)
        if self._access is None or owner is None:
            return []
        return self._access.readable(owner)

    def choose_collections(
        self, chat_id: str, collection_ids: list[str] | None, user: User | None = None
    ) -> Chat:
        """Set which collections a chat searches: None every readable one, [] none at all.

        Ids the user may not read are dropped (they do not exist for them), so an empty choice
        stays empty: nothing is searched, it never widens to «all».
        """
        self.chat(chat_id, user)
        if collection_ids is not None:
            readable = {c.id for c in self.searchable_collections(user)}
            collection_ids = [c for c in dict.fromkeys(collection_ids) if c in readable]
        return self.chats.update(chat_id, collection_ids=collection_ids)

    @staticmethod
    def searches_nothing(chat: Chat | None) -> bool:
        """Whether every collection was deselected in this chat (its answers use no document)."""
        return chat is not None and chat.collection_ids is not None and not chat.collection_ids

    def clear_chats_of(self, owner_id: str, user: User | None = None) -> int:
        """An admin deletes every chat of one user; how many were deleted."""
        self._require_admin(user)
        return self.chats.delete_all(owner_id=owner_id)

    def clear_all(self, user: User | None = None) -> int:
        """An admin deletes every chat of every user; how many were deleted."""
        self._require_admin(user)
        return self.chats.delete_all()

    def _require_admin(self, user: User | None) -> None:
        acting = self._who(user)
        if acting is None:
            return  # single-user service (tests, scripts): nobody else's chats exist
        if self._access is None:
            raise Forbidden("Это действие доступно только администратору.")
        self._access.require_admin(acting)

    def _who(self, user: User | None) -> User | None:
        return self._actor(user) if self._actor is not None else user

    def _scope_of(self, chat: Chat, user: User | None, choice: TurnChoice | None = None) -> Scope:
        owner = self._who(user)
        if self._scope is None or owner is None:
            return EVERYTHING
        wanted = chat.collection_ids
        if choice is not None and choice.collection_ids is not None:
            # An assistant's collections narrow the chat's, never widen them; what the user may
            # not read is dropped by the scope itself.
            narrowed = choice.collection_ids
            wanted = narrowed if wanted is None else [c for c in wanted if c in set(narrowed)]
        return self._scope(owner, wanted)

    def _chat_with(self, chat_id: str | None, choice: TurnChoice, user: User | None) -> Chat:
        """The chat with this turn's settings saved on it (so a reload shows what answered)."""
        if chat_id is not None:
            try:
                self.chat(chat_id, user)
                return self.chats.update(chat_id, **choice.chat_fields())
            except NotFoundError:  # deleted meanwhile, or someone else's: start a new one
                pass
        return self.start_chat(choice, user)
