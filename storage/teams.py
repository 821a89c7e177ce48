"""Users and collections: who exists, which knowledge bases there are, who may use them.

Rows only; the rules (who may read or write what) live in ``rag.access``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.models import (
    Access,
    Chat,
    Collection,
    CollectionDocument,
    CollectionGrant,
    Document,
    Role,
    SignInFailures,
    User,
    utcnow,
)
from storage.repos import StorageError, get_row, update_row


class AlreadyExists(StorageError):
    """A user or collection with that name exists already."""


def normalise_name(name: str) -> str:
    """The form a user name is stored and looked up in: trimmed, lowercased."""
    return name.strip().lower()


class UserRepo:
    """Users."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def create(self, name: str, role: Role = Role.MEMBER, **fields: Any) -> User:
        """Add a user; raise AlreadyExists when the name is taken."""
        user = User(name=normalise_name(name), role=role, **fields)
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                s.add(user)
                s.commit()
        except IntegrityError as exc:
            raise AlreadyExists(name) from exc
        return user

    def get(self, user_id: str) -> User:
        """Return a user or raise NotFoundError."""
        return get_row(self.engine, User, user_id)

    def by_name(self, name: str) -> User | None:
        """The user with this name (any case), if any."""
        with Session(self.engine, expire_on_commit=False) as s:
            return s.exec(select(User).where(col(User.name) == normalise_name(name))).first()

    def by_oidc(self, issuer: str, subject: str) -> User | None:
        """The user an OpenID Connect provider's person (``iss``, ``sub``) is bound to, if any."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(User).where(col(User.oidc_issuer) == issuer, col(User.oidc_subject) == subject)
            return s.exec(stmt).first()

    def bind_oidc(self, user_id: str, issuer: str, subject: str) -> bool:
        """Bind a user without an identity to one; False when they got one meanwhile (or it is taken)."""
        stmt = (
            update(User)
            .where(col(User.id) == user_id, col(User.oidc_subject).is_(None))
            .values(oidc_issuer=issuer, oidc_subject=subject)
        )
        try:
            with Session(self.engine) as s:
                # One conditional UPDATE: two replicas binding the same account cannot both win.
                bound = s.exec(stmt).rowcount == 1
                s.commit()
        except IntegrityError:  # the identity was bound to (or created as) another user meanwhile
            return False
        return bound

    def list_all(self) -> list[User]:
        """Every user, by name."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(User).order_by(col(User.name))))

    def update(self, user_id: str, **fields: Any) -> User:
        """Change a user's fields."""
        return update_row(self.engine, User, user_id, fields)

    def admins(self) -> list[User]:
        """Active admins, oldest first."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = (
                select(User)
                .where(col(User.role) == Role.ADMIN, col(User.active).is_(True))
                .order_by(col(User.created_at))
            )
            return list(s.exec(stmt))

    def claim_unowned(self, user_id: str) -> None:
        """Give chats, documents and collections without an owner (an older release's) to a user."""
        with Session(self.engine) as s:
            for table in (Chat, Document, Collection):
                s.exec(update(table).where(col(table.owner_id).is_(None)).values(owner_id=user_id))
            s.commit()

    def failures(self, name: str) -> SignInFailures:
        """The sign-in failures of a normalised name (none recorded: zero)."""
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(SignInFailures, name) or SignInFailures(name=name)

    def set_failures(self, name: str, failures: int, until: float) -> None:
        """Record a name's failures in a row and the time before which it is refused."""
        with Session(self.engine) as s:
            if failures == 0:
                s.exec(delete(SignInFailures).where(col(SignInFailures.name) == name))
            else:
                s.merge(SignInFailures(name=name, failures=failures, until=until))
            s.commit()

    def forget_failures(self, before: float) -> None:
        """Drop the records of names whose wait ended before this time."""
        with Session(self.engine) as s:
            s.exec(delete(SignInFailures).where(col(SignInFailures.until) < before))
            s.commit()


class CollectionRepo:
    """Collections, the rights on them and the documents in them."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def create(self, name: str, owner_id: str | None, everyone: Access = Access.NONE) -> Collection:
        """Add a collection; raise AlreadyExists when its owner has one by that name."""
        name = name.strip()
        if self.by_name(name, owner_id) is not None:
            raise AlreadyExists(name)
        coll = Collection(name=name, owner_id=owner_id, everyone=everyone)
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                s.add(coll)
                s.commit()
        except IntegrityError as exc:
            raise AlreadyExists(name) from exc
        return coll

    def get(self, collection_id: str) -> Collection:
        """Return a collection or raise NotFoundError."""
        return get_row(self.engine, Collection, collection_id)

    def by_name(self, name: str, owner_id: str | None) -> Collection | None:
        """A user's collection of this name."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Collection).where(
                col(Collection.name) == name.strip(), col(Collection.owner_id) == owner_id
            )
            return s.exec(stmt).first()

    def list_all(self) -> list[Collection]:
        """Every collection, by name."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(Collection).order_by(col(Collection.name))))

    def update(self, collection_id: str, **fields: Any) -> Collection:
        """Change a collection's fields (name, everyone)."""
        return update_row(self.engine, Collection, collection_id, fields)

    def delete(self, collection_id: str) -> None:
        """Remove a collection with its grants and links (documents stay)."""
        with Session(self.engine) as s:
            for model in (CollectionGrant, CollectionDocument):
                for row in s.exec(select(model).where(col(model.collection_id) == collection_id)):
                    s.delete(row)
            coll = s.get(Collection, collection_id)
            if coll is not None:
                s.delete(coll)
            s.commit()

    # -- rights -----------------------------------------------------------------------------

    def grant(self, collection_id: str, user_id: str, access: Access) -> None:
        """Give (or, with Access.NONE, take back) a named user's right on a collection."""
        with Session(self.engine) as s:
            row = s.get(CollectionGrant, (collection_id, user_id))
            if access == Access.NONE:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(CollectionGrant(collection_id=collection_id, user_id=user_id, access=access))
            else:
                row.access = access
                s.add(row)
            s.commit()

    def grants(self) -> list[CollectionGrant]:
        """Every named right."""
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(CollectionGrant)))

    def grants_of(self, user_id: str) -> dict[str, Access]:
        """A user's named rights, by collection id."""
        with Session(self.engine, expire_on_commit=False) as s:
            rows = s.exec(select(CollectionGrant).where(col(CollectionGrant.user_id) == user_id))
            return {r.collection_id: r.access for r in rows}

    # -- documents --------------------------------------------------------------------------

    def link(self, collection_id: str, document_id: str, filename: str, added_by: str | None) -> bool:
        """Put a document into a collection under a name; False if it was there already."""
        with Session(self.engine) as s:
            if s.get(CollectionDocument, (collection_id, document_id)) is not None:
                return False
            s.add(
                CollectionDocument(
                    collection_id=collection_id,
                    document_id=document_id,
                    filename=filename,
                    added_by=added_by,
                    added_at=utcnow(),
                )
            )
            s.commit()
        return True

    def unlink(self, collection_id: str, document_id: str) -> None:
        """Take a document out of a collection."""
        with Session(self.engine) as s:
            row = s.get(CollectionDocument, (collection_id, document_id))
            if row is not None:
                s.delete(row)
                s.commit()

    def links(self, collection_ids: Iterable[str] | None = None) -> list[CollectionDocument]:
        """Documents' places in the given collections (every collection when None)."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(CollectionDocument).order_by(col(CollectionDocument.added_at))
            if collection_ids is not None:
                stmt = stmt.where(col(CollectionDocument.collection_id).in_(list(collection_ids)))
            return list(s.exec(stmt))

    def links_of_document(self, document_id: str) -> list[CollectionDocument]:
        """The collections a document is in."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(CollectionDocument).where(col(CollectionDocument.document_id) == document_id)
            return list(s.exec(stmt))
