"""Ratings of answers (👍 / 👎 with a comment): the person who asked rates, an admin reads them all.

A rating keeps a copy of what was rated (the question, the answer, its sources, provider, model and
settings), so «Отзывы» and a test set built from the 👍 answers (``rated_answers``) read what the
person saw, even after the chat is cleared or deleted.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rag.chats import Actor, owner_id_of
from rag.identity.access import AccessControl, Forbidden
from storage import ChatRepo, NotFoundError
from storage.models import Rating, User
from storage.ratings import RatingRepo

UP, DOWN = 1, 0  # st.feedback("thumbs"): 1 is 👍, 0 is 👎
MAX_COMMENT = 2000
CSV_COLUMNS = (
    "created_at",
    "user",
    "rating",
    "comment",
    "provider",
    "model",
    "question",
    "answer",
    "sources",
    "settings",
    "chat_id",
    "message_id",
)


class RatingService:
    """Rating one's own answers; reading, filtering and exporting every rating for an admin."""

    def __init__(
        self,
        ratings: RatingRepo,
        chats: ChatRepo,
        actor: Actor | None = None,
        access: AccessControl | None = None,
    ) -> None:
        self.ratings = ratings
        self.chats = chats
        self._actor = actor
        self._access = access

    def rate(self, message_id: str, value: int, comment: str = "", user: User | None = None) -> Rating:
        """Rate an answer in one of the user's chats (again: the rating changes); NotFoundError otherwise."""
        if value not in (UP, DOWN):
            raise ValueError("Оценка — 👍 или 👎.")
        owner = owner_id_of(self._actor, user)
        chat_id = self._chat_of(message_id)
        chat = self.chats.get(chat_id)
        if owner is not None and chat.owner_id != owner:
            raise NotFoundError(message_id)
        messages = self.chats.messages(chat_id)
        at = next(i for i, m in enumerate(messages) if m.id == message_id)
        answer = messages[at]
        if answer.role != "assistant":
            raise NotFoundError(message_id)
        question = next((m.content for m in reversed(messages[:at]) if m.role == "user"), "")
        # Every setting the answer was made with, as recorded with it (assistants, issue 21); an
        # answer stored before that carries its chat's settings.
        settings: dict[str, Any] = dict(answer.settings or {}) or {
            "temperature": answer.temperature,
            "max_tokens": answer.max_tokens,
            "system_prompt": chat.system_prompt,
            "use_documents": chat.use_documents,
            "collection_ids": chat.collection_ids,
        }
        return self.ratings.put(
            message_id,
            chat_id=chat_id,
            user_id=owner,
            value=value,
            comment=comment.strip()[:MAX_COMMENT],
            question=question,
            answer=answer.content,
            sources=list(answer.sources or []),
            provider=answer.provider,
            model=answer.model,
            settings=settings,
        )

    def ratings_in(self, chat_id: str, user: User | None = None) -> dict[str, Rating]:
        """The ratings of one of the user's chats, by answer id (for its feed)."""
        owner = owner_id_of(self._actor, user)
        chat = self.chats.get(chat_id)
        if owner is not None and chat.owner_id != owner:
            raise NotFoundError(chat_id)
        return self.ratings.of_messages([m.id for m in self.chats.messages(chat_id) if m.role == "assistant"])

    def recent(
        self,
        user: User | None = None,
        *,
        value: int | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[Rating]:
        """Every user's ratings, newest first, filtered: for an admin only (Forbidden otherwise)."""
        self._require_admin(user)
        return self.ratings.find(value=value, model=model, since=since, until=until, limit=limit)

    def rated_models(self, user: User | None = None) -> list[str]:
        """The models that have ratings (the admin's filter)."""
        self._require_admin(user)
        return self.ratings.models()

    def rated_answers(self, user: User | None = None, value: int = UP, limit: int = 500) -> list[Rating]:
        """Rated answers with their questions (a test set's candidates): an admin's all, a member's own."""
        owner = owner_id_of(self._actor, user)
        acting = self._actor(user) if self._actor is not None else user
        if acting is not None and self._access is not None and self._access.is_admin(acting):
            owner = None
        return self.ratings.find(value=value, user_id=owner, limit=limit)

    def user_names(self, ids: Sequence[str | None], user: User | None = None) -> dict[str, str]:
        """Names of the users who rated (admin only)."""
        self._require_admin(user)
        if self._access is None:
            return {}
        return {u.id: u.name for u in self._access.users.list_all() if u.id in set(ids)}

    def _chat_of(self, message_id: str) -> str:
        message = self.chats.message(message_id)
        return message.chat_id

    def _require_admin(self, user: User | None) -> None:
        acting = self._actor(user) if self._actor is not None else user
        if acting is None:
            return  # single-user service (tests, scripts)
        if self._access is None:
            raise Forbidden("Это действие доступно только администратору.")
        self._access.require_admin(acting)


def ratings_csv(ratings: Sequence[Rating], names: dict[str, str] | None = None) -> str:
    """The ratings as CSV (UTF-8 with a BOM, so Excel reads the Cyrillic), one row each."""
    names = names or {}
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in ratings:
        sources = "; ".join(
            f"[{s.n}] {s.filename}"
            + (f", стр. {s.page}" if s.page else "")
            + (f", {s.anchor}" if s.anchor else "")
            for s in r.sources
        )
        writer.writerow(
            (
                r.created_at.isoformat(),
                names.get(r.user_id or "", r.user_id or ""),
                "👍" if r.value == UP else "👎",
                r.comment,
                r.provider or "",
                r.model or "",
                r.question,
                r.answer,
                sources,
                json.dumps(r.settings, ensure_ascii=False),
                r.chat_id,
                r.message_id,
            )
        )
    return out.getvalue()
