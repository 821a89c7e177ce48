"""Shared shape of the remote providers until their SDK clients land (issue 3).

They are listed with their catalogues so the selector shows them; until the client code
exists, ``status()`` says plainly what is missing and ``stream()`` refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from providers.base import (
    ChatMessage,
    Completion,
    ConfigurationError,
    Fragment,
    GenerationParams,
    ModelInfo,
    ProviderStatus,
)

NOT_CONNECTED = "ключи найдены, но подключение к этому провайдеру появится в следующей версии"


class RemoteProvider:
    """A provider known by catalogue and configuration, without a client yet."""

    name = ""
    label = ""
    _models: tuple[ModelInfo, ...] = ()

    def missing(self) -> str:
        """What must be configured, or an empty string when everything is set."""
        return ""

    def status(self) -> ProviderStatus:
        """Not configured (with the keys to set) or not yet connected."""
        missing = self.missing()
        if missing:
            return ProviderStatus(False, f"не настроен: {missing}")
        return ProviderStatus(False, NOT_CONNECTED)

    def models(self) -> list[ModelInfo]:
        """The static catalogue."""
        return list(self._models)

    def stream(
        self,
        messages: Sequence[ChatMessage],
        model: str,
        params: GenerationParams,
        fragments: Sequence[Fragment] = (),
    ) -> Completion:
        """Refuse with the configuration hint."""
        raise ConfigurationError(f"{self.label}: {self.status().reason}.", provider=self.name)
