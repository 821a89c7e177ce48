"""Managing collections as a service: create, rename, share, grant, delete, each for an acting user.

Pages and the CLI call these methods instead of writing collection rows: every method checks
the right of the user who acts. The owner of a collection and admins manage it; anyone else
who can read it gets Forbidden (a Russian reason), and someone who cannot even read it gets
NotFoundError, as if it did not exist (``rag.identity.access``).
"""

from __future__ import annotations

from names import clean_name
from rag import RagError
from rag.identity.access import PERSONAL_COLLECTION, AccessControl, Forbidden
from storage.models import Access, Collection, User
from storage.teams import AlreadyExists, CollectionRepo

MAX_NAME_CHARS = 80


class CollectionService:
    """Collections and the rights on them, changed only by their owner or an admin."""

    def __init__(self, access: AccessControl) -> None:
        self.access = access
        self.collections: CollectionRepo = access.collections

    def create(self, user: User, name: str, everyone: Access = Access.NONE) -> Collection:
        """A new collection owned by the user; a Russian RagError when they have one by that name."""
        self._active(user)
        clean = clean_name(name, MAX_NAME_CHARS)
        try:
            return self.collections.create(clean, user.id, everyone=everyone)
        except AlreadyExists:
            raise RagError(f"Коллекция «{clean}» у вас уже есть: выберите другое название.") from None

    def rename(self, user: User, collection_id: str, name: str) -> Collection:
        """Give a collection the user manages a new (cleaned) name."""
        coll = self.managed(user, collection_id)
        clean = clean_name(name, MAX_NAME_CHARS)
        if clean != coll.name and self.collections.by_name(clean, coll.owner_id) is not None:
            raise RagError(f"Коллекция «{clean}» уже есть: выберите другое название.")
        return self.collections.update(coll.id, name=clean)

    def share(self, user: User, collection_id: str, everyone: Access) -> Collection:
        """Open a collection the user manages to every user (read or write), or close it (NONE)."""
        coll = self.managed(user, collection_id)
        return self.collections.update(coll.id, everyone=everyone)

    def grant(self, user: User, collection_id: str, user_name: str, access: Access) -> None:
        """Give one named user a right on a collection the user manages (NONE takes it back)."""
        coll = self.managed(user, collection_id)
        target = self.access.users.by_name(user_name)
        if target is None:
            raise RagError(f"Пользователь «{user_name.strip()}» не найден: проверьте имя.")
        if target.id == coll.owner_id:
            raise RagError("Владелец и так может всё в своей коллекции.")
        self.collections.grant(coll.id, target.id, access)

    def delete(self, user: User, collection_id: str) -> None:
        """Delete an empty collection the user manages (documents are never dropped with it)."""
        coll = self.managed(user, collection_id)
        if coll.name == PERSONAL_COLLECTION and coll.owner_id == user.id:
            raise RagError(f"«{PERSONAL_COLLECTION}» удалить нельзя: это ваша личная коллекция.")
        if self.collections.links([coll.id]):
            raise RagError(
                f"В коллекции «{coll.name}» есть документы: сначала удалите их или переместите "
                "в другую коллекцию."
            )
        self.collections.delete(coll.id)

    def managed(self, user: User, collection_id: str) -> Collection:
        """A collection the user owns (or any, for an admin); NotFoundError or Forbidden otherwise."""
        self._active(user)
        coll = self.access.collection(user, collection_id)  # NotFoundError when unreadable
        if coll.owner_id != user.id and not self.access.is_admin(user):
            raise Forbidden(f"Коллекцией «{coll.name}» управляет её владелец или администратор.")
        return coll

    def managed_by(self, user: User) -> list[Collection]:
        """The collections this user may manage."""
        if self.access.is_admin(user):
            return self.collections.list_all()
        return [c for c in self.collections.list_all() if c.owner_id == user.id]

    @staticmethod
    def _active(user: User) -> None:
        if not user.active:
            raise Forbidden(f"Учётная запись «{user.name}» отключена: обратитесь к администратору.")
