"""Who may see and change what, enforced below every page: the library, the retriever, the chat
service and the CLI all ask this module.

- An admin reads and changes everything.
- A member reads a collection they own, one shared with everyone, or one shared with them by
  name; they write into their own and into those shared with write rights.
- A document is readable when it is in a readable collection, and is known to each reader by
  the name it was uploaded under there: the same bytes uploaded by two people are indexed once,
  but one never learns the other's file name.

What a member may not read does not exist for them: the errors say «не найден», never
«нет доступа», so an id typed into a URL reveals nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rag import RagError
from storage import NotFoundError
from storage.models import Access, Collection, CollectionDocument, Role, User
from storage.teams import CollectionRepo, UserRepo

# The single user of the no-sign-in mode (RAG_AUTH=none): an admin.
LOCAL_USER = "local"
PERSONAL_COLLECTION = "Мои документы"
SHARED_COLLECTION = "Общие документы"


class Forbidden(RagError):
    """The user may see the thing but not do this to it; the message is a Russian reason."""


@dataclass(frozen=True)
class Scope:
    """What a search may draw on, and the name each reader knows each document by.

    Either the documents of some collections (``collections``: what ``AccessControl.scope``
    gives, searched through a subquery however many documents they hold), or named documents
    (``names``: id to name). Neither means every document under its own name (an admin
    searching everything).
    """

    names: dict[str, str] | None = None
    collections: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        """Whether nothing is filtered out."""
        return self.names is None and self.collections is None

    @property
    def empty(self) -> bool:
        """Whether nothing at all may be searched."""
        return self.names == {} or self.collections == frozenset()

    def allows(self, document_id: str) -> bool:
        """Whether a document named in the scope may be searched and shown (``names`` scopes)."""
        if self.collections is not None:
            raise TypeError("a scope of collections is checked by the retriever, in the database")
        return self.names is None or document_id in self.names

    def name(self, document_id: str, default: str) -> str:
        """The name to show for a document (``names`` scopes)."""
        return default if self.names is None else self.names.get(document_id, default)


EVERYTHING = Scope()


class AccessControl:
    """The rules over users and collections."""

    def __init__(self, users: UserRepo, collections: CollectionRepo) -> None:
        self.users = users
        self.collections = collections

    # -- users --------------------------------------------------------------------------------

    def local_user(self) -> User:
        """The single admin of the no-sign-in mode; created, with what older releases left, on first use."""
        user = self.users.by_name(LOCAL_USER)
        if user is None:
            # Several first visits at once (sessions, replicas) make one row: the others take it.
            user, created = self.users.get_or_create(LOCAL_USER, role=Role.ADMIN)
            if created:
                # What a release without users left (migrated chats, documents, «Общие документы»).
                self.users.claim_unowned(user.id)
        if user.role != Role.ADMIN or not user.active:
            # Without sign-in this is the only person there is: a lock-out would close the app.
            user = self.users.update(user.id, role=Role.ADMIN, active=True)
        return user

    @staticmethod
    def is_admin(user: User) -> bool:
        """Whether the user is an active admin."""
        return user.role == Role.ADMIN and user.active

    def require_admin(self, user: User) -> None:
        """Raise Forbidden unless the user is an admin."""
        if not self.is_admin(user):
            raise Forbidden("Это действие доступно только администратору.")

    # -- collections --------------------------------------------------------------------------

    def access_to(self, user: User, coll: Collection, grants: dict[str, Access] | None = None) -> Access:
        """The user's right on a collection."""
        if not user.active:
            return Access.NONE
        if self.is_admin(user) or coll.owner_id == user.id:
            return Access.WRITE
        named = (grants if grants is not None else self.collections.grants_of(user.id)).get(coll.id)
        rights = {coll.everyone, named or Access.NONE}
        if Access.WRITE in rights:
            return Access.WRITE
        return Access.READ if Access.READ in rights else Access.NONE

    def readable(self, user: User) -> list[Collection]:
        """Collections the user may search and list."""
        grants = self.collections.grants_of(user.id)
        return [c for c in self.collections.list_all() if self.access_to(user, c, grants) != Access.NONE]

    def writable(self, user: User) -> list[Collection]:
        """Collections the user may upload into."""
        grants = self.collections.grants_of(user.id)
        return [c for c in self.collections.list_all() if self.access_to(user, c, grants) == Access.WRITE]

    def collection(self, user: User, collection_id: str) -> Collection:
        """A collection the user may read; NotFoundError otherwise."""
        try:
            coll = self.collections.get(collection_id)
        except NotFoundError:
            raise NotFoundError(collection_id) from None
        if self.access_to(user, coll) == Access.NONE:
            raise NotFoundError(collection_id)
        return coll

    def writable_collection(self, user: User, collection_id: str) -> Collection:
        """A collection the user may write into; NotFoundError or Forbidden otherwise."""
        coll = self.collection(user, collection_id)
        if self.access_to(user, coll) != Access.WRITE:
            raise Forbidden(f"В коллекцию «{coll.name}» у вас нет права загружать документы.")
        return coll

    def personal_collection(self, user: User) -> Collection:
        """The user's own «Мои документы», created on first use."""
        coll = self.collections.by_name(PERSONAL_COLLECTION, user.id)
        # Made in one statement that yields to a concurrent first use (another tab, a replica).
        return coll or self.collections.get_or_create(PERSONAL_COLLECTION, user.id)

    # -- documents ----------------------------------------------------------------------------

    def readable_links(
        self, user: User, collection_ids: Iterable[str] | None = None
    ) -> list[CollectionDocument]:
        """The places of readable documents, in the given collections (all readable when None)."""
        allowed = {c.id for c in self.readable(user)}
        if collection_ids is not None:
            allowed &= set(collection_ids)
        return self.collections.links(allowed)

    def scope(self, user: User, collection_ids: Iterable[str] | None = None) -> Scope:
        """What a search by this user, over these collections (every readable one when None), sees."""
        if self.is_admin(user) and collection_ids is None:
            return EVERYTHING
        allowed = {c.id for c in self.readable(user)}
        if collection_ids is not None:
            allowed &= set(collection_ids)
        # The collections, not their documents: a member may read tens of thousands of them.
        return Scope(collections=frozenset(allowed)) if allowed else Scope(names={})

    def known_name(self, user: User, document_id: str) -> str | None:
        """The name the user knows a document by, or None when they may not read it."""
        links = self.collections.links_of_document(document_id)
        if not links:
            return None
        if not self.is_admin(user):
            readable = {c.id for c in self.readable(user)}
            links = [link for link in links if link.collection_id in readable]
        return min(links, key=lambda link: link.added_at).filename if links else None

    def document_name(self, user: User, document_id: str, own_name: str) -> str:
        """The name the user knows a document by; NotFoundError if they may not read it."""
        if self.is_admin(user):
            return own_name
        name = self.known_name(user, document_id)
        if name is None:
            raise NotFoundError(document_id)
        return name
