"""Process-wide resources for the pages: settings, the library and the providers.

Domain objects are built by plain functions in rag/ and providers/; this module only caches
them with ``st.cache_resource`` so every browser session shares one library.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import streamlit as st
from pydantic import SecretStr

from providers import Provider, build_providers
from rag.library import Library, open_library
from settings import Settings
from ui.jobs import IndexingQueue

log = logging.getLogger(__name__)


def _secrets() -> dict[str, Any]:
    try:
        return {k: v for k, v in st.secrets.to_dict().items() if not isinstance(v, dict)}
    except Exception:  # no secrets.toml: environment and .env only
        return {}


def get_settings() -> Settings:
    """Settings with ``st.secrets`` taking precedence over the environment and ``.env``."""
    fields = {f.alias or name for name, f in Settings.model_fields.items()}
    overrides = {k: v for k, v in _secrets().items() if k in fields}
    return Settings(**overrides)


@st.cache_resource(show_spinner="Открываю базу документов…")
def _library(settings_json: str) -> Library:
    settings = Settings.model_validate_json(settings_json)
    return open_library(settings)


def get_library() -> Library:
    """The shared library for the current settings (opened once per process)."""
    return _library(get_settings().model_dump_json())


@st.cache_resource(show_spinner=False)
def _providers(_settings: Settings, fingerprint: str) -> dict[str, Provider]:
    return build_providers(_settings)


def get_providers() -> dict[str, Provider]:
    """Every provider, built once per configuration and shared by all sessions.

    Sharing matters: GigaChat's OAuth token lives in its client and is reused, not fetched
    per message. The cache key is a digest, so no key is kept in a readable form.
    """
    settings = get_settings()
    revealed = {
        k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in settings.model_dump().items()
    }
    fingerprint = hashlib.sha256(json.dumps(revealed, sort_keys=True, default=str).encode()).hexdigest()
    return _providers(settings, fingerprint)


@st.cache_resource(show_spinner=False)
def _indexing_queue(_library: Library, settings_json: str) -> IndexingQueue:
    return IndexingQueue(_library)


def get_indexing_queue() -> IndexingQueue:
    """The process-wide background indexing queue of the shared library."""
    settings_json = get_settings().model_dump_json()
    return _indexing_queue(_library(settings_json), settings_json)
