"""Assistants: saved setups of a model and how it searches, personal or published by an admin.

Access lives here, not in the pages: a member sees their own assistants and the published
ones; another member's personal assistant does not exist for them (NotFoundError, as for
chats). Only an admin publishes. An assistant never widens anyone's search: its collections
are intersected with what the asking user may read, and those dropped are named in a note.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, or_, select

from names import clean_name
from providers import Provider, ProviderError
from rag.answer.chat import TurnChoice
from rag.identity.access import AccessControl, Forbidden
from rag.search.retrieve import Method
from storage import NotFoundError
from storage.models import Assistant, User, utcnow
from storage.repos import add_row, get_row, update_row

NAME_CHARS = 80


class AssistantSpec(BaseModel):
    """What an assistant is made of (what a form or the CLI gives)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    provider: str = "offline"
    model: str = ""
    temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=32768)
    system_prompt: str = ""
    collection_ids: list[str] | None = None
    method: Method = "hybrid"
    top_k: int = Field(default=5, ge=1, le=50)
    use_documents: bool = True
    rewrite: bool = True


def settings_of(assistant: Assistant) -> dict[str, Any]:
    """The assistant's settings as plain JSON (what ``--json`` and the pages show)."""
    return {
        "id": assistant.id,
        "name": assistant.name,
        "description": assistant.description,
        "published": assistant.published,
        "provider": assistant.provider,
        "model": assistant.model,
        "temperature": assistant.temperature,
        "max_tokens": assistant.max_tokens,
        "system_prompt": assistant.system_prompt,
        "collection_ids": assistant.collection_ids,
        "method": assistant.method,
        "top_k": assistant.top_k,
        "use_documents": assistant.use_documents,
        "rewrite": assistant.rewrite,
    }


def skipped_note(names: list[str]) -> str:
    """The visible note about an assistant's collections the user may not read."""
    listed = ", ".join(f"«{n}»" for n in names)
    return f"Ассистент настроен искать и в коллекциях, недоступных вам ({listed}): они пропущены."


class AssistantService:
    """Assistants over the database, with the access rules of ``rag.identity.access``."""

    def __init__(
        self,
        engine: Engine,
        access: AccessControl,
        actor: Callable[[User | None], User],
    ) -> None:
        self.engine = engine
        self.access = access
        self._actor = actor

    def who(self, user: User | None) -> User:
        """The acting user (the local admin when sign-in is off)."""
        return self._actor(user)

    # -- reading ------------------------------------------------------------------------------

    def list_for(self, user: User | None = None) -> list[Assistant]:
        """The user's own assistants, then the published ones, each by name."""
        me = self._actor(user)
        with Session(self.engine) as s:
            rows = s.exec(
                select(Assistant).where(or_(col(Assistant.owner_id) == me.id, col(Assistant.published)))
            ).all()
        return sorted(rows, key=lambda a: (a.owner_id != me.id, a.name.casefold()))

    def get(self, assistant_id: str, user: User | None = None) -> Assistant:
        """One assistant the user may use; NotFoundError for anyone else's personal one."""
        me = self._actor(user)
        try:
            found = get_row(self.engine, Assistant, assistant_id)
        except NotFoundError:
            raise NotFoundError(assistant_id) from None
        if found.owner_id != me.id and not found.published:
            raise NotFoundError(assistant_id)
        return found

    def by_name(self, name: str, user: User | None = None) -> Assistant:
        """An assistant by name: the user's own first, then a published one."""
        wanted = clean_name(name, NAME_CHARS).casefold()
        for a in self.list_for(user):
            if a.name.casefold() == wanted:
                return a
        raise NotFoundError(f"Ассистент «{name}» не найден.")

    # -- changing -----------------------------------------------------------------------------

    def create(self, spec: AssistantSpec, user: User | None = None, publish: bool = False) -> Assistant:
        """A new assistant owned by the user; only an admin may publish it to everyone."""
        me = self._actor(user)
        if publish:
            self.access.require_admin(me)
        fields = self._clean(spec, me)
        if any(
            a.owner_id == me.id and a.name.casefold() == fields["name"].casefold() for a in self.list_for(me)
        ):
            raise Forbidden(f"У вас уже есть ассистент «{fields['name']}».")
        return add_row(self.engine, Assistant(**fields, owner_id=me.id, published=publish))

    def update(self, assistant_id: str, spec: AssistantSpec, user: User | None = None) -> Assistant:
        """Change an assistant: its owner, or an admin for a published one. New answers only."""
        found = self._editable(assistant_id, user)
        fields = self._clean(spec, self._actor(user))
        return update_row(self.engine, Assistant, found.id, {**fields, "updated_at": utcnow()})

    def publish(self, assistant_id: str, published: bool, user: User | None = None) -> Assistant:
        """An admin publishes an assistant to everyone, or takes it back."""
        me = self._actor(user)
        self.access.require_admin(me)
        found = self.get(assistant_id, me)
        return update_row(self.engine, Assistant, found.id, {"published": published})

    def delete(self, assistant_id: str, user: User | None = None) -> None:
        """Delete an assistant (its owner, or an admin for a published one); chats keep their answers."""
        found = self._editable(assistant_id, user)
        with Session(self.engine) as s:
            row = s.get(Assistant, found.id)
            if row is not None:
                s.delete(row)
                s.commit()

    # -- using --------------------------------------------------------------------------------

    def readable_collections(
        self, assistant: Assistant, user: User | None = None
    ) -> tuple[list[str] | None, list[str]]:
        """The assistant's collections the user may read (None: all they may read), and the names skipped."""
        me = self._actor(user)
        if assistant.collection_ids is None:
            return None, []
        readable = {c.id for c in self.access.readable(me)}
        kept = [c for c in assistant.collection_ids if c in readable]
        skipped = [c for c in assistant.collection_ids if c not in readable]
        names: list[str] = []
        for cid in skipped:
            # The name of a collection one cannot read is not theirs to learn from an id alone;
            # the assistant's owner (or an admin) chose it and published it, so it is shown.
            try:
                names.append(self.access.collections.get(cid).name)
            except NotFoundError:
                continue  # deleted since: nothing to skip
        return kept, names

    def choice(self, assistant: Assistant, user: User | None = None) -> tuple[TurnChoice, str | None]:
        """The turn settings of an assistant for this user, and the note about skipped collections."""
        kept, skipped = self.readable_collections(assistant, user)
        choice = TurnChoice(
            provider=assistant.provider,
            model=assistant.model,
            temperature=assistant.temperature,
            max_tokens=assistant.max_tokens,
            system_prompt=assistant.system_prompt,
            use_documents=assistant.use_documents,
            assistant_id=assistant.id,
            assistant_name=assistant.name,
            method=assistant.method,
            top_k=assistant.top_k,
            rewrite=assistant.rewrite,
            collection_ids=kept,
        )
        return choice, skipped_note(skipped) if skipped else None

    # -- helpers ------------------------------------------------------------------------------

    def _editable(self, assistant_id: str, user: User | None) -> Assistant:
        me = self._actor(user)
        found = self.get(assistant_id, me)
        if found.owner_id == me.id:
            return found
        # A published assistant somebody else made: visible to all, changed by admins only.
        self.access.require_admin(me)
        return found

    def _clean(self, spec: AssistantSpec, me: User) -> dict[str, Any]:
        if not spec.name.strip():
            raise Forbidden("Название ассистента не может быть пустым.")
        name = clean_name(spec.name, NAME_CHARS)
        fields = spec.model_dump()
        fields["name"] = name
        if spec.collection_ids is not None:
            # Only collections the author may read can be chosen: an id typed in is checked here.
            readable = {c.id for c in self.access.readable(me)}
            unknown = [c for c in spec.collection_ids if c not in readable]
            if unknown:
                raise NotFoundError(f"Коллекция {unknown[0]} не найдена.")
            fields["collection_ids"] = list(dict.fromkeys(spec.collection_ids))
        return fields


def ready_provider(provider: Provider | None, choice: TurnChoice) -> tuple[Provider, str]:
    """The choice's provider, checked usable, and the model to ask (the provider's first by default)."""
    if provider is None:
        raise ProviderError(f"Провайдер «{choice.provider}» не найден.")
    status = provider.status()
    if not status.available:
        raise ProviderError(f"{provider.label}: {status.reason}.", provider=provider.name)
    return provider, choice.model or provider.models()[0].id
