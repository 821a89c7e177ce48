"""The provider registry: names used in configuration, the CLI and the UI."""

from __future__ import annotations

from providers.base import Provider
from providers.gigachat import GigaChatProvider
from providers.offline import Glossary, OfflineProvider, Similarity
from providers.openai_compat import OpenAICompatProvider
from providers.yandexgpt import YandexGPTProvider
from settings import Settings

PROVIDER_NAMES = ("offline", "yandexgpt", "gigachat", "openai")


def build_providers(
    settings: Settings, similarity: Similarity | None = None, glossary: Glossary | None = None
) -> dict[str, Provider]:
    """Every provider, keyed by name, in the order the selector shows them.

    ``similarity`` lets the offline provider choose sentences by meaning (see
    ``providers.offline.embedder_similarity``); without it, it goes by words alone.
    ``glossary`` (``Library.glossary``) lets it name a key word's translation in a quote.
    """
    # Each provider holds its own keys only: a long-lived object keeps no secret it does not use.
    providers: list[Provider] = [
        OfflineProvider(similarity, glossary),
        YandexGPTProvider(settings.without_secrets(keep="yc_")),
        GigaChatProvider(settings.without_secrets(keep="gigachat_")),
        OpenAICompatProvider(settings.without_secrets(keep="openai_")),
    ]
    return {p.name: p for p in providers}
