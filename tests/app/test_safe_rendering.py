"""Markup in documents, file names, questions, answers and errors reaches the page as text.

The browser receives each element's type and body. ``st.text`` shows its body as it is; every
Markdown element (``st.markdown``, captions, alerts, expander labels, radio options) gets a
body in which markup is escaped, except that a model answer keeps its emphasis, lists and
code. HTML is enabled only on an answer whose [n] link to their sources, and those links are its
only HTML. The bodies below are asserted exactly; each is also
parsed by a CommonMark parser, which must find no link, image or HTML in it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from streamlit.testing.v1 import AppTest

from rag.library import open_library
from settings import Settings
from tests.app.conftest import make_app, upload
from tests.app.inert import live, without_citation_links
from ui.markup import WORD_JOINER as WJ

MARKUP = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> **жирный** "
    "[ссылка](javascript:alert(1)) ![](http://example.com/x.png)"
)
# As literal text: every character that could start markup is escaped.
MARKUP_LITERAL = (
    "\\<script\\>alert(1)\\</script\\> \\<img src=x onerror=alert(1)\\> \\*\\*жирный\\*\\* "
    f"\\[ссылка\\](javascript\\:alert(1)) !\\[\\](http{WJ}\\://example.com/x.png)"
)
# Inside a model answer: bold stays bold; tags, the link and the image are text.
MARKUP_IN_ANSWER = (
    "\\<script>alert(1)\\</script> \\<img src=x onerror=alert(1)> **жирный** "
    f"\\[ссылка\\](javascript\\:alert(1)) !\\[\\](http{WJ}://example.com/x.png)"
)
FILENAME = "<img src=x onerror=alert(1)> [x](javascript:alert(1)) **b** $x$.txt"
FILENAME_LITERAL = "\\<img src=x onerror=alert(1)\\> \\[x\\](javascript\\:alert(1)) \\*\\*b\\*\\* \\$x\\$.txt"
SENTENCE = f"Пропуск выдаёт охрана на первом этаже: {MARKUP} — так выглядит разметка в документе."
DOC = f"Памятка о пропусках.\n\n{SENTENCE}\n\nСрок действия пропуска один год."
QUESTION = "Кто выдаёт пропуск? <img src=x onerror=alert(1)>"  # 48 characters: the whole chat title
QUESTION_LITERAL = "Кто выдаёт пропуск? \\<img src=x onerror=alert(1)\\>"

# CommonMark plus GFM tables and strikethrough, as Streamlit's renderer reads Markdown.
PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LIVE = {"link_open", "image", "html_inline", "html_block"}


def _tokens(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        yield from _tokens(token.children or [])


def _live(body: str) -> list[str]:
    """What in this Markdown body a browser would turn into a link, an image or HTML."""
    return [t.type for t in _tokens(PARSER.parse(body)) if t.type in LIVE]


def _markdown_bodies(at) -> list[str]:  # type: ignore[no-untyped-def]
    """Every body on the page that Streamlit renders as Markdown; HTML must be off on each."""
    bodies = []
    for md in [*at.markdown, *at.caption]:
        bodies.append(without_citation_links(md.value, md.proto.allow_html))
    for alerts in (at.error, at.warning, at.info, at.success):
        bodies += [a.value for a in alerts]
    bodies += [e.label for e in at.expander]
    bodies += [option for radio in at.radio for option in radio.options]
    return bodies


def _assert_nothing_live(at) -> None:  # type: ignore[no-untyped-def]
    bodies = _markdown_bodies(at)
    assert bodies
    for body in bodies:
        assert _live(body) == [], body
        assert live(body, typography=False) == [], body  # Streamlit's own: autolinks, directives


def test_document_markup_is_text_in_answer_sources_title_and_names(data_dir: Path) -> None:
    at = make_app()
    at.run()
    upload(at, (FILENAME, DOC.encode(), "text/plain"))
    assert [s.value for s in at.sidebar.success] == [f"Проиндексирован: {FILENAME_LITERAL}"]

    # The offline provider quotes the document's sentence, markup and all.
    at.chat_input[0].set_value(QUESTION).run()
    assert not at.exception
    user, answer = at.chat_message
    assert [md.value for md in user.markdown] == [QUESTION_LITERAL]
    answer_body = answer.markdown[0].value
    # The offline answer quotes the document, so its markup is shown as the document's text.
    tokens = list(_tokens(PARSER.parse(answer_body)))
    shown = "".join(t.content for t in tokens if t.type == "text").replace(WJ, "")
    assert "Пропуск выдаёт охрана на первом этаже: <script>alert(1)</script>" in shown
    assert "**жирный** [ссылка](javascript:alert(1)) ![](http://example.com/x.png)" in shown
    assert shown.endswith("— так выглядит разметка в документе. [1]")
    # Its [1] opens the cited fragment's view in this tab; the markup it quotes stays text.
    anchors = [t.content for t in tokens if t.type == "html_inline"]
    assert len(anchors) == 2 and anchors[1] == "</a>", anchors
    assert anchors[0].startswith('<a class="rag-cite" href="source?chunk='), anchors
    assert 'target="_self"' in anchors[0]
    assert "strong_open" not in [t.type for t in tokens]

    sources = answer.expander[0]
    label = sources.markdown[0].value
    assert label.startswith(f"**\\[1\\] {FILENAME_LITERAL} · релевантность ")
    assert label.endswith("**")
    # The fragment is an st.text element: shown as it is in the document, never parsed.
    fragment = sources.text[0]
    assert fragment.proto.body == fragment.value
    assert SENTENCE in fragment.value

    # The chat title, made from the question, in the sidebar list and above the feed.
    assert at.sidebar.radio[0].options == [QUESTION_LITERAL]
    assert QUESTION_LITERAL in [c.value for c in at.caption]
    _assert_nothing_live(at)

    reloaded = make_app()  # what is rendered from the database is escaped the same way
    reloaded.run()
    assert [m.markdown[0].value for m in reloaded.chat_message] == [QUESTION_LITERAL, answer_body]
    _assert_nothing_live(reloaded)


def test_model_answer_and_server_error_markup_through_fake_server(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_openai = importlib.import_module("tests.contract.fake_openai")
    with fake_openai.make_case(data_dir.parent) as case:
        # Without the rewrite request, so the error below is the answer's (rewrites: test_rewrite.py).
        for key, value in {**case.env, "RAG_PROVIDER": "openai", "RAG_REWRITE": "false"}.items():
            monkeypatch.setenv(key, value)
        # Deltas cut through the markup: the page re-renders the whole text at each one.
        case.fake.deltas = [
            "Ответ: <scr",
            "ipt>alert(1)</script> <img src=x onerror=alert(1)> **жир",
            "ный** [ссыл",
            "ка](javascript:alert(1)) ![](http://exa",
            "mple.com/x.png)\n\n- пункт с `<b>[код](x)</b>`\n- цена $5 и $10 [1]",
        ]
        at = make_app()
        at.session_state["model"] = case.model
        at.run()
        at.chat_input[0].set_value("Покажи разметку").run()
        assert not at.exception
        answer = at.chat_message[-1]
        assert [md.value for md in answer.markdown] == [
            f"Ответ: {MARKUP_IN_ANSWER}\n\n- пункт с `<b>[код](x)</b>`\n- цена \\$5 и \\$10 [1]"
        ]
        tokens = [t.type for t in _tokens(PARSER.parse(answer.markdown[0].value))]
        assert {"strong_open", "bullet_list_open", "code_inline"} <= set(tokens)

        # A server's own error text is quoted in the message: it is shown as text too.
        case.fake.fail_next_with(
            422, {"error": {"message": MARKUP, "type": "invalid_request_error", "param": None, "code": None}}
        )
        at.chat_input[0].set_value("Ещё раз").run()
        assert not at.exception
        (error,) = [e.value for e in at.chat_message[-1].error]
        assert error.startswith("Сервер ") and error.endswith("проверьте модель и параметры генерации.")
        assert f"отклонил запрос (422\\: {MARKUP_LITERAL})" in error, error
        _assert_nothing_live(at)


def test_admin_page_shows_file_names_and_errors_as_text(data_dir: Path) -> None:
    lib = open_library(Settings().model_copy(update={"data_dir": data_dir}), recover=False)
    good = lib.ingest(FILENAME, DOC.encode())
    bad = lib.ingest("**пустой** <img src=x onerror=alert(1)>.txt", b"   ")
    assert good.status == "indexed" and bad.status == "failed"
    assert good.document is not None and bad.document is not None

    at = make_app("app_pages/admin.py")
    at.run()
    at.selectbox[0].set_value(good.document.id).run()
    assert not at.exception
    (preview,) = at.expander
    assert preview.label == f"Фрагменты «{FILENAME_LITERAL}» (1)"
    assert any(SENTENCE in t.value for t in preview.text)
    _assert_nothing_live(at)

    at.selectbox[0].set_value(bad.document.id).run()
    (error,) = at.error
    assert error.value.startswith("«\\*\\*пустой\\*\\* \\<img src=x onerror=alert(1)\\>.txt»")
    _assert_nothing_live(at)


def _stream_then_break() -> None:
    """A page that streams an answer which breaks off mid-markup (AppTest runs it as a script)."""
    import streamlit as st

    from providers import StreamInterruptedError
    from providers.base import Completion
    from ui.conversation import show_stream

    def deltas():  # type: ignore[no-untyped-def]  # the script has no imports of this module
        yield from ["Начало **жир", "ный** ![](http://exa", "mple.com/x.png) <scr", "ipt> [ссыл"]
        raise StreamInterruptedError(partial="")

    try:
        show_stream(Completion(deltas()))
    except StreamInterruptedError:
        st.caption("оборвалось")


def test_answer_is_safe_while_it_streams(data_dir: Path) -> None:
    # What the placeholder holds when the stream breaks is what the browser showed at that
    # moment; st.write_stream would have sent the raw image there, and the browser loaded it.
    at = AppTest.from_function(_stream_then_break, default_timeout=60)
    at.run()
    assert not at.exception
    assert [md.value for md in at.markdown] == [
        f"Начало **жирный** !\\[\\](http{WJ}://example.com/x.png) \\<script> \\[ссыл"
    ]
    assert at.caption[0].value == "оборвалось"
    _assert_nothing_live(at)
