"""Chats beyond the turn itself (issue 22): search over one's chats, export, ratings and memory.

Every service here takes the acting user like ``ChatService`` does and treats another user's
chat as not found; without an ``actor`` it is single-user (tests, scripts).
"""

from __future__ import annotations

from collections.abc import Callable

from storage.models import User

Actor = Callable[[User | None], User]


def owner_id_of(actor: Actor | None, user: User | None) -> str | None:
    """The id whose chats the user may see: None only for a single-user service with no user."""
    acting = actor(user) if actor is not None else user
    return acting.id if acting is not None else None
