"""Turn vectors: each chat message's embedding, the chat's semantic memory (storage.models.TurnVector)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, func, select

from storage.models import Chat, Message, TurnVector


class TurnVectorRepo:
    """Message vectors, written one by one as messages are stored and read a chat at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put(self, message_id: str, chat_id: str, model: str, vector: np.ndarray) -> None:
        """Store (or replace) a message's vector."""
        data = np.asarray(vector, dtype=np.float32).reshape(-1).tobytes()
        with Session(self.engine) as s:
            row = s.get(TurnVector, message_id)
            if row is None:
                row = TurnVector(message_id=message_id, chat_id=chat_id, model=model, vector=data)
            else:
                row.model, row.vector = model, data
            s.add(row)
            s.commit()

    def of_chat(self, chat_id: str, model: str) -> dict[str, np.ndarray]:
        """The chat's vectors made by this model, by message id."""
        with Session(self.engine) as s:
            stmt = select(TurnVector).where(
                col(TurnVector.chat_id) == chat_id, col(TurnVector.model) == model
            )
            return {r.message_id: np.frombuffer(r.vector, dtype=np.float32) for r in s.exec(stmt)}

    def count(self, chat_ids: Sequence[str] | None = None) -> int:
        """How many vectors (of these chats) are stored."""
        with Session(self.engine) as s:
            stmt = select(func.count()).select_from(TurnVector)
            if chat_ids is not None:
                stmt = stmt.where(col(TurnVector.chat_id).in_(list(chat_ids)))
            return int(s.exec(stmt).one())

    def missing(self, model: str, limit: int = 500) -> list[Message]:
        """Messages with text but without a vector of this model (stored before memory, or another model)."""
        with Session(self.engine, expire_on_commit=False) as s:
            have = select(TurnVector.message_id).where(col(TurnVector.model) == model)
            stmt = (
                select(Message)
                .join(Chat, col(Chat.id) == col(Message.chat_id))
                .where(col(Message.content) != "", col(Message.id).not_in(have))
                .order_by(col(Message.id))
                .limit(limit)
            )
            return list(s.exec(stmt))

    def count_missing(self, model: str) -> int:
        """How many messages with text have no vector of this model."""
        with Session(self.engine) as s:
            have = select(TurnVector.message_id).where(col(TurnVector.model) == model)
            stmt = (
                select(func.count())
                .select_from(Message)
                .where(col(Message.content) != "", col(Message.id).not_in(have))
            )
            return int(s.exec(stmt).one())

    def delete_chat(self, chat_id: str) -> None:
        """Drop a chat's vectors (the chat repository also does, with its messages)."""
        with Session(self.engine) as s:
            s.exec(delete(TurnVector).where(col(TurnVector.chat_id) == chat_id))
            s.commit()
