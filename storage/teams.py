"""Users and collections: who exists, which knowledge bases there are, who may use them.

Rows only; the rules (who may read or write what) live in ``rag.identity.access``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import case, delete, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from names import clean_name, clean_text
from storage.models import (
    Access,
    AddressFailures,
    Chat,
    Collection,
    CollectionDocument,
    CollectionGrant,
    Document,
    LibraryFlag,
    Role,
    SignInFailures,
    User,
    utcnow,
)
from storage.repos import NotFoundError, StorageError, get_row, update_row

# Set when the library first has an admin who can sign in with a password; never cleared.
HAD_ADMIN = "had_admin"
# Any constant shared by every process of the app (storage.migrate's lock is ...01).
_ADMIN_LOCK_KEY = 0x52414702


class AlreadyExists(StorageError):
    """A user or collection with that name exists already."""


class LastAdmin(StorageError):
    """The change would leave no admin who can sign in; nothing was changed."""


@contextmanager
def exclusive(engine: Any) -> Iterator[Session]:
    """A session whose transaction holds the library-wide lock on accounts until it ends.

    A database lock, so replicas wait for each other too: an advisory lock on PostgreSQL, the
    write lock (BEGIN IMMEDIATE) on SQLite. Checks such as «is this the last admin» and the
    change they guard run inside it, so two admins demoting each other at once leave one.
    """
    with Session(engine, expire_on_commit=False) as s:
        conn = s.connection()
        if conn.dialect.name == "sqlite":
            # pysqlite begins transactions lazily, at the first write: take the lock now instead,
            # before anything is read (as storage.migrate does).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADMIN_LOCK_KEY})
        yield s


def _insert(s: Session) -> Any:
    """The INSERT construct of the session's dialect (both know ON CONFLICT)."""
    return postgresql.insert if s.connection().dialect.name == "postgresql" else sqlite.insert


def _insert_ignore(s: Session, model: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING in one statement; whether the row was new."""
    # RETURNING, not rowcount: psycopg reports no row count for this statement on PostgreSQL.
    key = next(iter(model.__table__.primary_key.columns))
    result = s.execute(_insert(s)(model).values(**values).on_conflict_do_nothing().returning(key))
    return result.first() is not None


def _can_sign_in_with_password(user: User) -> bool:
    return user.role == Role.ADMIN and bool(user.password_hash)


def normalise_name(name: str) -> str:
    """The form a user name is stored and looked up in: cleaned (``names.clean_text``), lowercased."""
    return clean_text(name).lower()


def collection_name(name: str) -> str:
    """The form a collection name is stored and looked up in (``names.clean_name``)."""
    return clean_name(name)


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
                if _can_sign_in_with_password(user):
                    _insert_ignore(s, LibraryFlag, {"name": HAD_ADMIN, "set_at": utcnow()})
                s.commit()
        except IntegrityError as exc:
            raise AlreadyExists(name) from exc
        return user

    def get_or_create(self, name: str, **fields: Any) -> tuple[User, bool]:
        """The user of this name, made now if missing (in one statement: two replicas make one).

        The second value says whether this call made it.
        """
        fresh = User(name=normalise_name(name), **fields)
        with Session(self.engine, expire_on_commit=False) as s:
            created = _insert_ignore(s, User, fresh.model_dump())
            if created and _can_sign_in_with_password(fresh):
                _insert_ignore(s, LibraryFlag, {"name": HAD_ADMIN, "set_at": utcnow()})
            s.commit()
        user = self.by_name(name)
        if user is None:  # the conflict was on something else than the name
            raise AlreadyExists(name)
        return user, created

    def had_admin(self) -> bool:
        """Whether the library has ever had an admin who could sign in with a password."""
        with Session(self.engine) as s:
            return s.get(LibraryFlag, HAD_ADMIN) is not None

    def create_first_admin(self, name: str, password_hash: str) -> User | None:
        """Create the first admin unless the library has (or had) one: None then.

        Under the accounts lock, so two replicas on a fresh database make one admin at most.
        """
        user = User(name=normalise_name(name), role=Role.ADMIN, password_hash=password_hash)
        try:
            with exclusive(self.engine) as s:
                if s.get(LibraryFlag, HAD_ADMIN) is not None:
                    return None
                admins = s.exec(select(User).where(col(User.role) == Role.ADMIN, col(User.active).is_(True)))
                if any(_can_sign_in_with_password(a) for a in admins):
                    return None
                s.add(user)
                s.add(LibraryFlag(name=HAD_ADMIN))
                s.commit()
        except IntegrityError as exc:
            raise AlreadyExists(name) from exc
        return user

    def update_keeping_admin(
        self,
        user_id: str,
        can_sign_in: Callable[[User], bool],
        fields: dict[str, Any],
        end_sessions: bool = False,
    ) -> User:
        """Change a user unless that leaves no active admin who ``can_sign_in``: LastAdmin then.

        With ``end_sessions`` the user's session version goes up as well.
        """
        with exclusive(self.engine) as s:
            if s.get(User, user_id) is None:
                raise NotFoundError(user_id)
            active_admins = select(User).where(col(User.role) == Role.ADMIN, col(User.active).is_(True))
            before = [u.id for u in s.exec(active_admins) if can_sign_in(u)]
            values = dict(fields)
            if end_sessions:
                values["session_version"] = col(User.session_version) + 1
            s.exec(update(User).where(col(User.id) == user_id).values(**values))
            s.expire_all()
            after = [u.id for u in s.exec(active_admins) if can_sign_in(u)]
            if before and not after:
                s.rollback()
                raise LastAdmin(user_id)
            s.commit()
            user = s.get(User, user_id)
            assert user is not None
            return user

    def end_sessions(self, user_id: str, **fields: Any) -> User:
        """Raise the user's session version (ending every session of theirs), setting fields too."""
        stmt = (
            update(User)
            .where(col(User.id) == user_id)
            .values(session_version=col(User.session_version) + 1, **fields)
        )
        with Session(self.engine, expire_on_commit=False) as s:
            if s.exec(stmt).rowcount != 1:
                raise NotFoundError(user_id)
            s.commit()
        return self.get(user_id)

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
        user = update_row(self.engine, User, user_id, fields)
        if user.active and _can_sign_in_with_password(user):
            self._mark_had_admin()
        return user

    def _mark_had_admin(self) -> None:
        with Session(self.engine) as s:
            _insert_ignore(s, LibraryFlag, {"name": HAD_ADMIN, "set_at": utcnow()})
            s.commit()

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

    def count_failure(self, name: str) -> int:
        """Add one failure to a name's record in one statement (replicas' failures all count); the total."""
        with Session(self.engine) as s:
            stmt = (
                _insert(s)(SignInFailures)
                .values(name=name, failures=1, until=0.0)
                .on_conflict_do_update(
                    index_elements=["name"], set_={"failures": col(SignInFailures.failures) + 1}
                )
                .returning(col(SignInFailures.failures))
            )
            total = int(s.execute(stmt).scalar_one())
            s.commit()
        return total

    def hold(self, name: str, until: float) -> None:
        """Refuse a name's attempts until this time (a later hold already there stays)."""
        with Session(self.engine) as s:
            s.exec(
                update(SignInFailures)
                .where(col(SignInFailures.name) == name, col(SignInFailures.until) < until)
                .values(until=until)
            )
            s.commit()

    def address_failures(self, address: str) -> AddressFailures:
        """The failed sign-ins from a client address (none recorded: zero)."""
        with Session(self.engine, expire_on_commit=False) as s:
            return s.get(AddressFailures, address) or AddressFailures(address=address)

    def count_address_failure(self, address: str, now: float, fresh_after: float) -> int:
        """Add one failure to an address in one statement; one quiet since ``fresh_after`` starts anew."""
        table = AddressFailures
        stale = col(table.last_at) < fresh_after
        with Session(self.engine) as s:
            stmt = (
                _insert(s)(table)
                .values(address=address, failures=1, until=0.0, last_at=now)
                .on_conflict_do_update(
                    index_elements=["address"],
                    set_={
                        "failures": case((stale, 1), else_=col(table.failures) + 1),
                        "until": case((stale, 0.0), else_=col(table.until)),
                        "last_at": now,
                    },
                )
                .returning(col(table.failures))
            )
            total = int(s.execute(stmt).scalar_one())
            s.commit()
        return total

    def hold_address(self, address: str, until: float) -> None:
        """Refuse attempts from an address until this time."""
        with Session(self.engine) as s:
            s.exec(
                update(AddressFailures)
                .where(col(AddressFailures.address) == address, col(AddressFailures.until) < until)
                .values(until=until)
            )
            s.commit()

    def forget_failures(self, before: float) -> None:
        """Drop the records of names and addresses whose wait ended before this time."""
        with Session(self.engine) as s:
            s.exec(delete(SignInFailures).where(col(SignInFailures.until) < before))
            s.exec(
                delete(AddressFailures).where(
                    col(AddressFailures.until) < before, col(AddressFailures.last_at) < before
                )
            )
            s.commit()


class CollectionRepo:
    """Collections, the rights on them and the documents in them."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def create(self, name: str, owner_id: str | None, everyone: Access = Access.NONE) -> Collection:
        """Add a collection; raise AlreadyExists when its owner has one by that name."""
        name = collection_name(name)
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

    def get_or_create(self, name: str, owner_id: str, everyone: Access = Access.NONE) -> Collection:
        """An owner's collection of this name, made now if missing (in one statement: made once)."""
        fresh = Collection(name=collection_name(name), owner_id=owner_id, everyone=everyone)
        with Session(self.engine) as s:
            _insert_ignore(s, Collection, fresh.model_dump())
            s.commit()
        found = self.by_name(name, owner_id)
        if found is None:
            raise AlreadyExists(name)
        return found

    def get(self, collection_id: str) -> Collection:
        """Return a collection or raise NotFoundError."""
        return get_row(self.engine, Collection, collection_id)

    def by_name(self, name: str, owner_id: str | None) -> Collection | None:
        """A user's collection of this name."""
        with Session(self.engine, expire_on_commit=False) as s:
            stmt = select(Collection).where(
                col(Collection.name) == collection_name(name), col(Collection.owner_id) == owner_id
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
