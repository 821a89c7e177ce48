"""A chat's semantic memory: earlier turns like the new question join the prompt, and lead retrieval.

Every question and answer is embedded when it is stored, with the library's main embedder, into
``turnvector`` rows beside the messages (so they follow the configured database, embedded or
server, and go with the chat when it is cleared or deleted). Messages stored before this existed,
or under another model, are embedded lazily (the questions, the first time their chat is asked
something) or all at once by ``rag reembed``.

On a new question, each earlier answered turn is scored by the cosine of the question's vector and
its question's (both embedded as e5 queries: a symmetric comparison). A turn counts as relevant
when it scores at least ``FLOOR`` and stands out from the chat's other turns by ``MARGIN`` over
their median: e5's cosines are compressed (unrelated Russian questions score 0.74–0.84, related
ones 0.85–0.95; bench/README.md «Issue 22: chat memory»), so a fixed floor alone lets in whatever
happens to be near. Answers are embedded too, but scoring on them added noise (an unrelated
answer scored as high as a related one) and is not used for the choice.

The relevant turns older than the recent window join the prompt before the recent ones (so the
conversation reads in order, and the prompt's trimming drops them first), within ``TOKENS`` and
``TURNS``. The most relevant turn of all, recent or not, is what a short follow-up is searched
with («а для второго склада?» after a question about the first one, asked an hour ago).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from language import estimate_tokens
from providers import ChatMessage
from rag.search.embedding import Embedder
from storage import Message
from storage.turns import TurnVectorRepo

log = logging.getLogger(__name__)

FLOOR = 0.84
MARGIN = 0.03
# The median is only a fair picture of "unrelated" with a few turns to take it over.
MARGIN_FROM = 4
TOKENS = 1200
TURNS = 2


@dataclass
class Recall:
    """What memory adds to a question: earlier turns for the prompt, and the question to search with."""

    history: list[ChatMessage] = field(default_factory=list)
    # The question of the most relevant earlier turn (recent or not); None: nothing relevant.
    anchor: str | None = None
    turns: list[tuple[Message, Message, float]] = field(default_factory=list)  # (question, answer, score)


def answered_pairs(messages: Sequence[Message]) -> list[tuple[Message, Message]]:
    """The question/answer pairs whose answer completed (as ``history_for_prompt`` takes them)."""
    return [
        (q, a)
        for q, a in pairwise(messages)
        if q.role == "user" and a.role == "assistant" and q.content and a.content and not a.error
    ]


class ChatMemory:
    """Embeds a chat's messages and recalls the earlier turns a new question is about."""

    def __init__(
        self,
        vectors: TurnVectorRepo,
        embedder: Callable[[], Embedder],
        *,
        floor: float = FLOOR,
        margin: float = MARGIN,
        tokens: int = TOKENS,
        turns: int = TURNS,
    ) -> None:
        self.vectors = vectors
        self._embedder = embedder
        self.floor = floor
        self.margin = margin
        self.tokens = tokens
        self.turns = turns

    def _embed(self, embedder: Embedder, messages: Sequence[Message]) -> dict[str, np.ndarray]:
        """Vectors for these messages: questions as e5 queries, answers as passages."""
        out: dict[str, np.ndarray] = {}
        answers = [m for m in messages if m.role != "user"]
        for m in messages:
            if m.role == "user":
                out[m.id] = np.asarray(embedder.embed_query(m.content), dtype=np.float32).reshape(-1)
        if answers:
            rows = np.asarray(embedder.embed_documents([m.content for m in answers]), dtype=np.float32)
            for m, row in zip(answers, rows, strict=True):
                out[m.id] = row.reshape(-1)
        return out

    def remember(self, message: Message) -> None:
        """Embed and store one message (a question when asked, an answer when it completes).

        Memory is an aid: an embedder that fails is logged, the chat goes on, and the message
        is embedded lazily later.
        """
        if not message.content.strip():
            return
        try:
            embedder = self._embedder()
            for message_id, vector in self._embed(embedder, [message]).items():
                self.vectors.put(message_id, message.chat_id, embedder.name, vector)
        except Exception:
            log.exception("embedding a chat message failed")

    def embed_chat(self, chat_id: str, messages: Sequence[Message]) -> dict[str, np.ndarray]:
        """The chat's message vectors, embedding (and storing) those it lacks."""
        embedder = self._embedder()
        have = self.vectors.of_chat(chat_id, embedder.name)
        lacking = [m for m in messages if m.id not in have and m.content.strip()]
        if lacking:
            for message_id, vector in self._embed(embedder, lacking).items():
                self.vectors.put(message_id, chat_id, embedder.name, vector)
                have[message_id] = vector
        return have

    def recall(self, chat_id: str, question: str, messages: Sequence[Message], recent: int) -> Recall:
        """The earlier turns relevant to the question (those before the last ``recent``), and the anchor."""
        pairs = answered_pairs(messages)
        if not pairs or not question.strip():
            return Recall()
        try:
            # Only the questions are scored: an old chat's answers wait for `rag reembed` (embedding
            # them here made the first question in a 200-turn chat take 28 s; bench/README.md).
            have = self.embed_chat(chat_id, [q for q, _ in pairs])
            query = np.asarray(self._embedder().embed_query(question), dtype=np.float32).reshape(-1)
        except Exception:
            log.exception("chat memory is unavailable for this question")
            return Recall()
        scores = [float(have[q.id] @ query) if q.id in have else -1.0 for q, _ in pairs]
        bar = self.floor
        if len(scores) >= MARGIN_FROM:
            bar = max(bar, statistics.median(scores) + self.margin)
        relevant = [i for i, s in enumerate(scores) if s >= bar]
        anchor = pairs[max(relevant, key=lambda i: scores[i])][0].content if relevant else None
        older = len(pairs) - recent if recent else len(pairs)
        chosen: list[int] = []
        budget = self.tokens
        for i in sorted((i for i in relevant if i < older), key=lambda i: -scores[i]):
            cost = estimate_tokens(pairs[i][0].content) + estimate_tokens(pairs[i][1].content)
            if len(chosen) >= self.turns or cost > budget:
                continue
            chosen.append(i)
            budget -= cost
        chosen.sort()
        history = [
            ChatMessage(role=role, content=m.content)
            for i in chosen
            for role, m in (("user", pairs[i][0]), ("assistant", pairs[i][1]))
        ]
        return Recall(history, anchor, [(pairs[i][0], pairs[i][1], scores[i]) for i in chosen])

    def embed_missing(self, progress: Callable[[int, int], None] | None = None, batch: int = 64) -> int:
        """Embed every stored message that has no vector of the current model; how many were embedded."""
        embedder = self._embedder()
        total = self.vectors.count_missing(embedder.name)
        done = 0
        while done < total:
            messages = self.vectors.missing(embedder.name, limit=batch)
            if not messages:
                break
            for message_id, vector in self._embed(embedder, messages).items():
                chat_id = next(m.chat_id for m in messages if m.id == message_id)
                self.vectors.put(message_id, chat_id, embedder.name, vector)
            done += len(messages)
            if progress is not None:
                progress(min(done, total), total)
        return done
