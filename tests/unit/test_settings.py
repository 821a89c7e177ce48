"""Configuration precedence: secrets.toml, then environment, then .env, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from providers import build_providers
from settings import Settings


def test_secrets_toml_beats_environment_which_beats_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('GIGACHAT_CREDENTIALS = "from-secrets"\n[other_app]\nkey = 1\n', encoding="utf-8")
    dotenv = tmp_path / ".env"
    dotenv.write_text("GIGACHAT_CREDENTIALS=from-dotenv\nGIGACHAT_SCOPE=GIGACHAT_API_CORP\nRAG_TOP_K=9\n")
    monkeypatch.setenv("RAG_SECRETS_FILE", str(secrets))
    monkeypatch.setenv("GIGACHAT_CREDENTIALS", "from-env")
    monkeypatch.setenv("GIGACHAT_SCOPE", "GIGACHAT_API_B2B")
    s = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert s.gigachat_credentials is not None
    assert s.gigachat_credentials.get_secret_value() == "from-secrets"
    assert s.gigachat_scope == "GIGACHAT_API_B2B"  # environment over .env
    assert s.top_k == 9  # .env over the default
    assert s.history_turns == 3  # the default


def test_streamlits_auth_table_in_the_secrets_file_is_not_a_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One secrets file serves Streamlit ([auth] for st.login) and us (RAG_AUTH): they must not clash.
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        'RAG_AUTH = "oidc"\n[auth]\nredirect_uri = "http://localhost:8501/oauth2callback"\n'
        'client_id = "rag"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("RAG_SECRETS_FILE", str(secrets))
    assert Settings(_env_file=None).auth_mode == "oidc"  # type: ignore[call-arg]


def test_keys_are_hidden_in_repr_and_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YC_API_KEY", "AQVN-very-secret")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert "AQVN-very-secret" not in repr(s)
    assert "AQVN-very-secret" not in s.model_dump_json()
    assert s.yc_api_key is not None and s.yc_api_key.get_secret_value() == "AQVN-very-secret"


def test_long_lived_objects_hold_only_the_keys_they_use(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {
        "GIGACHAT_CREDENTIALS": "giga-secret",
        "YC_API_KEY": "yc-secret",
        "YC_FOLDER_ID": "b1g",
        "OPENAI_API_KEY": "openai-secret",
    }
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    # The cached library is built from this copy: no key at all, everything else kept.
    bare = s.without_secrets()
    assert all(getattr(bare, f) is None for f in ("gigachat_credentials", "yc_api_key", "openai_api_key"))
    assert bare.yc_folder_id == "b1g" and bare.data_dir == s.data_dir
    providers = build_providers(s)
    held = {
        name: {v.get_secret_value() for _, v in p.settings if isinstance(v, SecretStr)}
        if hasattr(p, "settings")
        else set()
        for name, p in providers.items()
    }
    assert held == {
        "offline": set(),
        "yandexgpt": {"yc-secret"},
        "gigachat": {"giga-secret"},
        "openai": {"openai-secret"},
    }
    assert all(p.status().available for p in providers.values())
