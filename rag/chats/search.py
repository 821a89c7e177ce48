"""Search over one's own chats: the stems of questions and answers, as document search stems them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from language import query_terms, stems
from rag.chats import Actor, owner_id_of
from storage import ChatRepo
from storage.models import User

LINE_CHARS = 160
# A line of a message: a paragraph line, or a sentence of a long one.
_LINES = re.compile(r"[^\n.!?…]+[.!?…]*")


@dataclass(frozen=True)
class ChatHit:
    """A message that matched: its chat, its role and the line that matched."""

    chat_id: str
    title: str
    message_id: str
    role: str
    line: str
    score: float


def matching_line(content: str, terms: list[str]) -> str:
    """The line (or sentence) of a message with the most of the searched stems, shortened."""
    wanted = set(terms)
    best, best_hits = "", -1
    for m in _LINES.finditer(content):
        line = m.group(0).strip()
        if not line:
            continue
        hits = len(wanted & set(stems(line)))
        if hits > best_hits:
            best, best_hits = line, hits
    if len(best) > LINE_CHARS:
        best = best[: LINE_CHARS - 1].rstrip() + "…"
    return best


class ChatSearch:
    """Finds the acting user's chats by words in their questions and answers."""

    def __init__(self, chats: ChatRepo, actor: Actor | None = None) -> None:
        self.chats = chats
        self._actor = actor

    def search(self, query: str, user: User | None = None, limit: int = 20) -> list[ChatHit]:
        """The user's messages matching the query's stems, best first (never another user's)."""
        terms = query_terms(query)
        if not terms:
            return []
        owner = owner_id_of(self._actor, user)
        found = self.chats.search_messages(terms, owner, limit)
        return [
            ChatHit(chat.id, chat.title, msg.id, msg.role, matching_line(msg.content, terms), score)
            for msg, chat, score in found
        ]
