"""Chatting through each remote provider in the app, each pointed at its fake server."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.conftest import ROOT, make_app, upload
from tests.app.test_chat_page import CONTRACT
from tests.contract.harness import DEFAULT_DELTAS, is_rewrite

REMOTE = ("gigachat", "yandexgpt", "openai")


@pytest.mark.parametrize("name", REMOTE)
def test_chat_through_provider_then_401(name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_module = importlib.import_module(f"tests.contract.fake_{name}")
    with fake_module.make_case(data_dir.parent) as case:
        for key, value in case.env.items():
            monkeypatch.setenv(key, value)
        at = make_app()
        at.run()
        upload(at, ("dogovor.txt", CONTRACT.encode("cp1251"), "text/plain"))
        provider = at.sidebar.selectbox(key="provider")
        provider.set_value(name).run()
        assert not any("не настроен" in w.value for w in at.sidebar.warning)
        at.sidebar.selectbox(key="model").set_value(case.model).run()
        at.chat_input[0].set_value("Какой срок аренды?").run()
        assert not at.exception
        answer = at.chat_message[-1]
        body = answer.markdown[0].value
        # The answer as streamed, its [1] a same-tab link to the cited fragment's view.
        assert re.sub(
            r'<a class="rag-cite" href="source\?chunk=[0-9a-f]+&amp;chat=[0-9a-f]+" target="_self">(\[\d+\])'
            "</a>",
            r"\1",
            body,
        ) == "".join(DEFAULT_DELTAS)
        assert body != "".join(DEFAULT_DELTAS) and answer.markdown[0].proto.allow_html
        sources = answer.expander[0]
        assert "dogovor.txt" in sources.markdown[0].value
        # The fragment really went to the model.
        prompt = "\n".join(text for _, text in case.fake.requests[-1].messages)
        assert "одиннадцать месяцев" in prompt
        # Before it, the same model rewrote the question for search (RAG_REWRITE is on by default).
        assert is_rewrite(case.fake.requests[-2].messages)
        assert not is_rewrite(case.fake.requests[-1].messages)

        case.fake.fail_next(401, times=5)
        at.chat_input[0].set_value("А какая арендная плата?").run()
        assert not at.exception
        errors = [e.value for e in at.error]
        assert errors, "a refused key must be explained on the page"
        assert any(word in errors[-1] for word in ("ключ", "токен", "авториз"))
        for secret in case.secrets:
            assert all(secret not in e for e in errors)
            assert secret not in str(at)


def test_cli_ask_through_fake_gigachat(tmp_path: Path) -> None:
    from tests.contract.fake_gigachat import make_case

    data = tmp_path / "data"
    doc = tmp_path / "dogovor.txt"
    doc.write_bytes(CONTRACT.encode("cp1251"))
    with make_case(tmp_path) as case:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("GIGACHAT_", "YC_", "OPENAI_", "RAG_"))
        }
        env.update(case.env)
        run = [sys.executable, "-m", "rag"]
        subprocess.run([*run, "ingest", str(doc), "--data-dir", str(data)], env=env, cwd=ROOT, check=True)
        out = subprocess.run(
            [
                *run,
                "ask",
                "Какой срок аренды?",
                "--provider",
                "gigachat",
                "--model",
                "GigaChat-2",
                "--json",
                "--data-dir",
                str(data),
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["answer"] == "".join(DEFAULT_DELTAS)
        assert result["provider"] == "gigachat" and result["model"] == "GigaChat-2"
        assert result["sources"][0]["filename"] == "dogovor.txt"
        assert "одиннадцать месяцев" in result["sources"][0]["text"]
