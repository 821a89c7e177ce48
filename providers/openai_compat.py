"""OpenAI-compatible servers (OpenAI, Ollama, vLLM, Yandex's compatible endpoint): configuration."""

from __future__ import annotations

from providers.base import ModelInfo
from providers.remote import RemoteProvider
from settings import Settings


class OpenAICompatProvider(RemoteProvider):
    """Any server speaking the OpenAI chat completions API."""

    name = "openai"
    label = "OpenAI-совместимый"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        names = [m.strip() for m in settings.openai_models.split(",") if m.strip()]
        self._models = tuple(ModelInfo(n, n, 8192) for n in names) or (
            ModelInfo("gpt-4o-mini", "gpt-4o-mini", 128000),
        )

    def missing(self) -> str:
        """A base URL or a key is required."""
        if self.settings.openai_base_url or self.settings.openai_api_key:
            return ""
        return "укажите OPENAI_BASE_URL и OPENAI_API_KEY (и OPENAI_MODELS) в .streamlit/secrets.toml"
