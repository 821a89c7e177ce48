"""A signed-in team for the lab's tests: an admin, alice (who owns a lease) and bob (a recipe)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from providers import Provider, ProviderError, Usage
from providers.base import ChatMessage
from providers.offline import OfflineProvider
from rag.answer.chat import ChatService
from rag.lab.services import Lab, open_lab
from rag.library import Library
from storage.models import Role, User
from tests.stand_in import StandInModel

LEASE = (
    "Договор аренды нежилого помещения. Срок аренды составляет 11 месяцев с момента подписания. "
    "Арендная плата составляет 45 000 рублей в месяц. Залог равен двум месячным платежам. "
    "Арендатор оплачивает коммунальные услуги отдельно. Договор можно продлить по соглашению сторон."
)
RECIPE = "Рецепт борща. Бульон из говядины варят два часа на медленном огне. Свёклу тушат отдельно."


class Broken(StandInModel):
    """A remote model whose server refuses every request."""

    name = "broken"
    label = "Сломанный"

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        raise ProviderError("Сервер модели вернул ошибку 500: попробуйте позже.", provider=self.name)
        yield ""  # a generator, as a stream is


class Echo(StandInModel):
    """A remote model that answers with a fixed sentence and reports usage."""

    name = "echo"
    label = "Эхо"

    def deltas(self, messages: list[ChatMessage]) -> Iterator[str | Usage]:
        yield "Срок аренды — "
        yield "11 месяцев."
        yield Usage(prompt_tokens=1000, completion_tokens=500)


@dataclass
class Team:
    lib: Library
    lab: Lab
    chats: ChatService
    boss: User
    alice: User
    bob: User


def make_team(
    make_library: Callable[..., Library], extra: Mapping[str, Provider] | None = None, **overrides: Any
) -> Team:
    lib = make_library(RAG_AUTH="password", **overrides)
    boss = lib.users.create("boss", role=Role.ADMIN)
    alice = lib.users.create("alice")
    bob = lib.users.create("bob")
    assert lib.ingest("dogovor.txt", LEASE.encode(), user=alice).status == "indexed"
    assert lib.ingest("borsch.txt", RECIPE.encode(), user=bob).status == "indexed"
    providers: dict[str, Provider] = {"offline": OfflineProvider(), **(extra or {})}
    chats = ChatService(
        lib.chats, lib.retriever, providers, actor=lib.actor, scope=lib.scope, access=lib.access
    )
    return Team(lib, open_lab(lib, providers), chats, boss, alice, bob)
