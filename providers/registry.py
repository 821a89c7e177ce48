"""The provider registry: names used in configuration, the CLI and the UI."""

from __future__ import annotations

from providers.base import Provider
from providers.gigachat import GigaChatProvider
from providers.offline import OfflineProvider
from providers.openai_compat import OpenAICompatProvider
from providers.yandexgpt import YandexGPTProvider
from settings import Settings

PROVIDER_NAMES = ("offline", "yandexgpt", "gigachat", "openai")


def build_providers(settings: Settings) -> dict[str, Provider]:
    """Every provider, keyed by name, in the order the selector shows them."""
    providers: list[Provider] = [
        OfflineProvider(),
        YandexGPTProvider(settings),
        GigaChatProvider(settings),
        OpenAICompatProvider(settings),
    ]
    return {p.name: p for p in providers}
