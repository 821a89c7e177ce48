"""rag.identity.collections: collections are managed through a service that checks the acting user."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rag import RagError
from rag.identity.access import PERSONAL_COLLECTION, Forbidden
from rag.identity.collections import CollectionService
from rag.library import Library
from storage import NotFoundError
from storage.models import Access, Role

NOTE = "Пропуск выдаёт охрана на первом этаже. Срок действия пропуска один год."


def test_only_the_owner_or_an_admin_manages_a_collection(make_library: Callable[..., Library]) -> None:
    lib = make_library(RAG_AUTH="password")
    boss = lib.users.create("boss", role=Role.ADMIN)
    alice = lib.users.create("alice")
    bob = lib.users.create("bob")
    service = CollectionService(lib.access)

    private = service.create(alice, "Черновики")
    shared = service.create(alice, "Отдел", everyone=Access.READ)
    # bob cannot see the private one at all, and may only read the shared one.
    for attempt in (
        lambda: service.share(bob, private.id, Access.WRITE),
        lambda: service.rename(bob, private.id, "моё"),
        lambda: service.delete(bob, private.id),
        lambda: service.grant(bob, private.id, "bob", Access.WRITE),
    ):
        with pytest.raises(NotFoundError):
            attempt()
    for attempt in (
        lambda: service.share(bob, shared.id, Access.WRITE),
        lambda: service.grant(bob, shared.id, "bob", Access.WRITE),
        lambda: service.delete(bob, shared.id),
    ):
        with pytest.raises(Forbidden):
            attempt()
    assert lib.collections.get(shared.id).everyone == Access.READ
    assert lib.collections.grants_of(bob.id) == {}
    assert not {c.id for c in lib.access.writable(bob)} & {private.id, shared.id}

    # The owner shares and grants; an admin may too.
    service.grant(alice, private.id, "BOB", Access.READ)
    assert private.id in {c.id for c in lib.access.readable(bob)}
    assert service.share(boss, shared.id, Access.WRITE).everyone == Access.WRITE
    with pytest.raises(RagError, match="не найден"):
        service.grant(alice, private.id, "nobody", Access.READ)


def test_names_are_cleaned_and_unique_per_owner(make_library: Callable[..., Library]) -> None:
    lib = make_library(RAG_AUTH="password")
    alice = lib.users.create("alice")
    service = CollectionService(lib.access)
    coll = service.create(alice, "  Отчёты\u202e\u200b  ")
    assert coll.name == "Отчёты"
    with pytest.raises(RagError, match="уже есть"):
        service.create(alice, "Отчёты\u2066")
    assert service.create(alice, "\u200b").name == "без имени"
    assert service.rename(alice, coll.id, "Итоги\x07").name == "Итоги"


def test_a_collection_with_documents_or_the_personal_one_is_not_deleted(
    make_library: Callable[..., Library],
) -> None:
    lib = make_library(RAG_AUTH="password")
    alice = lib.users.create("alice")
    service = CollectionService(lib.access)
    coll = service.create(alice, "Пропуска")
    assert lib.ingest("note.txt", NOTE.encode(), user=alice, collection_id=coll.id).status == "indexed"
    with pytest.raises(RagError, match="есть документы"):
        service.delete(alice, coll.id)
    personal = lib.access.personal_collection(alice)
    with pytest.raises(RagError, match=PERSONAL_COLLECTION):
        service.delete(alice, personal.id)
    empty = service.create(alice, "Пустая")
    service.delete(alice, empty.id)
    assert empty.id not in {c.id for c in lib.access.readable(alice)}
