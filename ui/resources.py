"""Process-wide resources for the pages: settings, the library, the providers and the services.

Domain objects are built by plain functions in rag/ and providers/; this module only caches
them with ``st.cache_resource`` so every browser session shares one library. Settings are
read once per script run (``begin_run``); the cached library is built from a copy without
any provider key, so the longest-lived object holds no secret.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import streamlit as st
from pydantic import SecretStr

from providers import Provider, build_providers
from providers.offline import embedder_similarity
from rag.answer.chat import ChatService
from rag.chats.memory import ChatMemory
from rag.chats.ratings import RatingService
from rag.chats.search import ChatSearch
from rag.identity.auth import AuthService, auth_service
from rag.identity.collections import CollectionService
from rag.jobs.local import IndexingQueue, Queue
from rag.library import Library, open_library
from rag.search.rewrite import rewriter_from
from settings import Settings
from storage.ratings import RatingRepo
from storage.turns import TurnVectorRepo

RUN_SETTINGS = "_run_settings"

log = logging.getLogger(__name__)


def _forget_stale_widget_metadata() -> None:
    """Make a session forget the widgets it no longer shows, not only their values.

    Streamlit 1.67 drops a stale widget's value at the end of a run but keeps its metadata (the
    deserializer, the callbacks, and whatever a ``format_func`` closes over) for the session's
    life. A widget without a key whose options change gets a new id each time, so a long
    session kept one per question and per chat, each with the namespace of the page run that
    made it: 4 sessions grew the app's RSS 26 % in 20 minutes (bench/README.md, "Issue 24:
    load"). After Streamlit's own cleanup, metadata goes with the last value of its widget; a
    widget shown again registers anew.
    """
    from streamlit.runtime.state.session_state import SessionState

    original = SessionState._remove_stale_widgets
    if getattr(original, "forgets_metadata", False):
        return

    def remove_stale_widgets(self: SessionState, active_widget_ids: frozenset[str]) -> None:
        original(self, active_widget_ids)
        widgets = self._new_widget_state
        kept = widgets.states.keys() | self._old_state.keys()
        widgets.widget_metadata = {k: m for k, m in widgets.widget_metadata.items() if k in kept}

    setattr(remove_stale_widgets, "forgets_metadata", True)  # noqa: B010 (a function attribute)
    setattr(SessionState, "_remove_stale_widgets", remove_stale_widgets)  # noqa: B010 (a method)


_forget_stale_widget_metadata()


def _secrets() -> dict[str, Any]:
    try:
        return {k: v for k, v in st.secrets.to_dict().items() if not isinstance(v, dict)}
    except Exception:  # no secrets.toml: environment and .env only
        return {}


def read_settings() -> Settings:
    """Settings with ``st.secrets`` taking precedence over the environment and ``.env``."""
    fields = {f.alias or name for name, f in Settings.model_fields.items()}
    overrides = {k: v for k, v in _secrets().items() if k in fields}
    return Settings(**overrides)


def begin_run() -> Settings:
    """Read the settings for this script run; every later ``get_settings`` in the run reuses them."""
    settings = read_settings()
    st.session_state[RUN_SETTINGS] = settings
    return settings


def get_settings() -> Settings:
    """This run's settings (read once per run; a page run on its own reads them on first use)."""
    settings = st.session_state.get(RUN_SETTINGS)
    return settings if isinstance(settings, Settings) else begin_run()


@st.cache_resource(show_spinner="Открываю базу документов…")
def _library(settings_json: str) -> Library:
    settings = Settings.model_validate_json(settings_json)
    return open_library(settings)


def _library_json(settings: Settings) -> str:
    return settings.without_secrets().model_dump_json()


def get_library() -> Library:
    """The shared library for the current settings (opened once per process)."""
    return _library(_library_json(get_settings()))


@st.cache_resource(show_spinner=False)
def _providers(_settings: Settings, fingerprint: str, _library: Library) -> dict[str, Provider]:
    # The offline provider picks sentences by meaning with the library's embedder (loaded on
    # first use); the library is process-wide too, and the fingerprint covers its settings.
    return build_providers(
        _settings, similarity=embedder_similarity(_library.embedder), glossary=_library.glossary
    )


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
    return _providers(settings, fingerprint, get_library())


@st.cache_resource(show_spinner=False)
def _indexing_queue(_library: Library, settings_json: str) -> Queue:
    if _library.settings.queue == "postgres":
        from rag.jobs.shared import SharedQueue

        return SharedQueue(_library)
    return IndexingQueue(_library)


def get_indexing_queue() -> Queue:
    """The process-wide background indexing queue of the shared library."""
    settings_json = _library_json(get_settings())
    return _indexing_queue(_library(settings_json), settings_json)


@st.cache_resource(show_spinner=False)
def _auth_service(_library: Library, settings_json: str, _settings: Settings) -> AuthService:
    # The full settings (with RAG_SECRET_KEY, RAG_ADMIN_PASSWORD): the library's copy has no secrets.
    service = auth_service(_library.users, _library.access, _settings)
    service.bootstrap(_settings)  # RAG_ADMIN_USER / RAG_ADMIN_PASSWORD, for unattended deploys
    return service


def get_auth_service() -> AuthService:
    """Sign-in, sessions and user management over the shared library (one per process)."""
    settings = get_settings()
    settings_json = _library_json(settings)
    return _auth_service(_library(settings_json), settings_json, settings)


def get_chat_service() -> ChatService:
    """The chat-turn service over the shared library and providers (cheap: built per run)."""
    library = get_library()
    return ChatService(
        library.chats,
        library.retriever,
        get_providers(),
        top_k=library.settings.top_k,
        history_turns=library.settings.history_turns,
        rewriter=rewriter_from(library.settings),
        actor=library.actor,
        scope=library.scope,
        access=library.access,
        memory=get_chat_memory(),
    )


def get_collection_service() -> CollectionService:
    """Creating, sharing and deleting collections over the shared library (cheap: built per run)."""
    return CollectionService(get_library().access)


def get_chat_search() -> ChatSearch:
    """Search over the acting user's chats (cheap: built per run)."""
    library = get_library()
    return ChatSearch(library.chats, library.actor)


def get_rating_service() -> RatingService:
    """Rating answers, and the admin's «Отзывы» (cheap: built per run)."""
    library = get_library()
    return RatingService(RatingRepo(library.engine), library.chats, library.actor, library.access)


def get_chat_memory() -> ChatMemory:
    """The chats' semantic memory over the shared library's main embedder (cheap: built per run)."""
    library = get_library()
    return ChatMemory(TurnVectorRepo(library.engine), library.embedder)
