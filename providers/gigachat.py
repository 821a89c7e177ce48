"""GigaChat (Sber): catalogue and configuration."""

from __future__ import annotations

from providers.base import ModelInfo
from providers.remote import RemoteProvider
from settings import Settings

MODELS = (
    ModelInfo("GigaChat-2", "GigaChat 2 Lite", 131072),
    ModelInfo("GigaChat-2-Pro", "GigaChat 2 Pro", 131072),
    ModelInfo("GigaChat-2-Max", "GigaChat 2 Max", 131072),
    ModelInfo("GigaChat", "GigaChat", 32768),
    ModelInfo("GigaChat-Pro", "GigaChat Pro", 32768),
    ModelInfo("GigaChat-Max", "GigaChat Max", 32768),
)


class GigaChatProvider(RemoteProvider):
    """GigaChat through the official SDK."""

    name = "gigachat"
    label = "GigaChat"
    _models = MODELS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def missing(self) -> str:
        """The authorization key is required."""
        if self.settings.gigachat_credentials:
            return ""
        return (
            "укажите ключ авторизации GIGACHAT_CREDENTIALS (и при необходимости GIGACHAT_SCOPE) "
            "в .streamlit/secrets.toml или в переменных окружения"
        )
