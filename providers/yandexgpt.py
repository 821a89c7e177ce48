"""YandexGPT (Yandex AI Studio): catalogue and configuration."""

from __future__ import annotations

from providers.base import ModelInfo
from providers.remote import RemoteProvider
from settings import Settings

# The seed's five, then current models from the AI Studio documentation.
MODELS = (
    ModelInfo("yandexgpt-lite/latest", "YandexGPT Lite Latest", 32768),
    ModelInfo("yandexgpt-lite/rc", "YandexGPT Lite RC", 32768),
    ModelInfo("yandexgpt/latest", "YandexGPT Pro Latest", 32768),
    ModelInfo("yandexgpt/rc", "YandexGPT Pro RC", 32768),
    ModelInfo("yandexgpt-32k/rc", "YandexGPT Pro 32k RC", 32768),
    ModelInfo("aliceai-llm/latest", "Alice AI LLM", 32768),
)


def model_uri(folder_id: str, model: str) -> str:
    """``gpt://<folder>/<name>/<version>`` for ``name/version``; full URIs pass through."""
    if model.startswith("gpt://"):
        return model
    name, _, version = model.partition("/")
    return f"gpt://{folder_id}/{name}/{version or 'latest'}"


class YandexGPTProvider(RemoteProvider):
    """YandexGPT through Yandex AI Studio."""

    name = "yandexgpt"
    label = "YandexGPT"
    _models = MODELS

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def missing(self) -> str:
        """Folder id and one credential are required."""
        s = self.settings
        need = []
        if not s.yc_folder_id:
            need.append("YC_FOLDER_ID")
        if not (s.yc_api_key or s.yc_iam_token or s.yc_oauth_token):
            need.append("YC_API_KEY (или YC_IAM_TOKEN / YC_OAUTH_TOKEN)")
        if not need:
            return ""
        return "укажите " + " и ".join(need) + " в .streamlit/secrets.toml или в переменных окружения"
