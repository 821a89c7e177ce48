"""ui.markup: literal text stays literal; answers keep formatting but nothing in them goes live.

Outputs are checked by an independent CommonMark parser (markdown-it-py, with GFM tables and
strikethrough): it must find no link, image or HTML, on chosen cases and on random markup soup.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from tests.app.inert import live, shown
from ui.markup import WORD_JOINER, answer_markdown, literal, plain

WJ = WORD_JOINER

PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
LIVE = {"link_open", "image", "html_inline", "html_block"}
TEXT_ONLY = {"paragraph_open", "paragraph_close", "inline", "text", "softbreak", "hardbreak"}

# Pieces of hostile or merely awkward Markdown, glued at random by the property tests.
ATOMS = [
    *"[]()!<>`\\|-~$*_#&=+:\t ",
    "``",
    "```",
    "~~~",
    "\n",
    "\n\n",
    "    ",
    "1.",
    "2025)",
    "[1]",
    "[^1]",
    "](",
    "a",
    "я",
    "---",
    "|---|",
    "> ",
    "\n```\n",
    "\n  ```",
    "\n- ",
    "\n1. ",
    "\n| a | b |\n|---|---|\n",
    "[1]: javascript:alert(1)\n",
    "[x](javascript:alert(1))",
    "![](http://example.com/x.png)",
    "<javascript:alert(1)>",
    "<img src=x onerror=alert(1)>",
    "&lt;",
    ":red[",
    "`[",
    "]`",
    "\\`",
    # Streamlit's own: bare addresses, directives, icons, the logo, typography, emoji.
    "https://evil.example/x",
    "http://",
    "www.",
    "www.evil.example",
    "a@evil.example",
    "@",
    ":small[",
    ":material/lock:",
    ":streamlit:",
    ":smile:",
    " -> ",
    " -- ",
    " >= ",
    ":",
]


def _tokens(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        yield from _tokens(token.children or [])


def _types(markdown: str) -> list[str]:
    return [t.type for t in _tokens(PARSER.parse(markdown))]


def _shown_text(markdown: str) -> str:
    """The text a reader sees, line by line, when ``markdown`` has only paragraphs of text."""
    parts = []
    for token in _tokens(PARSER.parse(markdown)):
        if token.type == "text":
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak", "paragraph_close"):
            parts.append("\n")
    return "".join(parts).replace(WJ, "")


def _soup(seed: int, n: int) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(ATOMS) for _ in range(rnd.randint(1, 30))) for _ in range(n)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dogovor.txt", "dogovor.txt"),
        ("GIGACHAT_CREDENTIALS в .streamlit/secrets.toml", "GIGACHAT_CREDENTIALS в .streamlit/secrets.toml"),
        ("_курсив_ и **жирный**", "\\_курсив\\_ и \\*\\*жирный\\*\\*"),
        ("<script>alert(1)</script>", "\\<script\\>alert(1)\\</script\\>"),
        ("![](http://example.com/x.png)", f"!\\[\\](http{WJ}\\://example.com/x.png)"),
        ("[ссылка](javascript:alert(1))", "\\[ссылка\\](javascript\\:alert(1))"),
        ("цена $5 и $10", "цена \\$5 и \\$10"),
        ("# Заголовок", "\\# Заголовок"),
        ("- пункт", "\\- пункт"),
        ("2025. год", "2025\\. год"),
        ("версия 2.5", "версия 2.5"),
        ("a | b", "a \\| b"),
        ("первая\nвторая", "первая  \nвторая"),
        ("    отступ", "отступ"),
        ("a\n:-", "a  \n\\:-"),
        # Streamlit's own extensions: bare addresses, directives, icons, the logo, typography.
        ("см. https://evil.example/a", f"см. https{WJ}\\://evil.example/a"),
        ("WWW.evil.example и a@evil.example", f"WWW{WJ}.evil.example и a@{WJ}evil.example"),
        (":red[красный] :small[x]", "\\:red\\[красный\\] \\:small\\[x\\]"),
        (":material/lock: :smile:", "\\:material\\/lock\\: \\:smile\\:"),
        (":streamlit:", f"\\:streamlit{WJ}\\:"),
        ("a -> b -- c >= d", f"a -{WJ}\\> b -{WJ}- c \\>{WJ}= d"),
        ("время 10:30, ключ:значение", "время 10\\:30, ключ\\:значение"),
    ],
)
def test_literal_escapes_exactly_what_is_needed(text: str, expected: str) -> None:
    assert literal(text) == expected


def test_literal_shows_random_markup_as_its_text() -> None:
    for text in _soup(seed=1, n=3000):
        out = literal(text)
        assert set(_types(out)) <= TEXT_ONLY, (text, out)
        assert live(out) == [], (text, out)
        seen = [line.rstrip(" \t") for line in _shown_text(out).split("\n") if line.strip()]
        typed = [line.strip(" \t") for line in text.split("\n") if line.strip()]
        assert seen == typed, (text, out)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Срок аренды одиннадцать месяцев [1].", "Срок аренды одиннадцать месяцев [1]."),
        ("См. [1, 2] и [3–5].", "См. [1, 2] и [3–5]."),
        ("**жирный** и _курсив_", "**жирный** и _курсив_"),
        ("<script>alert(1)</script>", "\\<script>alert(1)\\</script>"),
        ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert(1)>"),
        ("[ссылка](javascript:alert(1))", "\\[ссылка\\](javascript\\:alert(1))"),
        ("![](http://example.com/x.png)", f"!\\[\\](http{WJ}://example.com/x.png)"),
        ("![x][1]", "!\\[x\\][1]"),  # the bare [1] cannot be a reference: none is defined
        ("[1]: javascript:alert(1)", "\\[1\\]: javascript\\:alert(1)"),
        ("[1](javascript:alert(1))", "\\[1\\](javascript\\:alert(1))"),
        ("[^1]", "\\[^1\\]"),
        (":red[1]", "\\:red\\[1\\]"),
        ("<javascript:alert(1)>", "\\<javascript\\:alert(1)>"),
        # Streamlit's own extensions, outside code only; an answer keeps its typography.
        (
            "см. https://evil.example и www.evil.example",
            f"см. https{WJ}://evil.example и www{WJ}.evil.example",
        ),
        ("пишите a@evil.example", f"пишите a@{WJ}evil.example"),
        (
            ":material/lock: :streamlit: -> `https://x.example`",
            f"\\:material\\/lock: \\:streamlit{WJ}: -> `https://x.example`",
        ),
        ("Итог: да", "Итог: да"),
        ("цена $5 и $10", "цена \\$5 и \\$10"),
        ("код `a[0] <b>` здесь", "код `a[0] <b>` здесь"),
        ("незакрытый `[x](y)", "незакрытый \\`\\[x\\](y)"),
        ("| `a | b` |", "| \\`a | b\\` |"),
        ("```html\n<b>[x](y)</b>\n```\n[z](w)", "```html\n<b>[x](y)</b>\n```\n\\[z\\](w)"),
        ("- пункт\n  ```\n  [x](y)", "- пункт\n  \\`\\`\\`\n  \\[x\\](y)"),
        ("| a |\n|---|\n```\n[x](y)", "| a |\n|---|\n\\`\\`\\`\n\\[x\\](y)"),
        ("\\[уже экранировано\\]", "\\[уже экранировано\\]"),
        ("\\\\[x](y)", "\\\\\\[x\\](y)"),
    ],
)
def test_answer_markdown_neutralises_links_images_html(text: str, expected: str) -> None:
    assert answer_markdown(text) == expected


def test_answer_markdown_keeps_formatting() -> None:
    text = (
        "# Итог\n\n**Срок**: _одиннадцать_ месяцев [1].\n\n- первый\n- второй\n\n1. раз\n2. два\n\n"
        "> цитата\n\n| Поле | Значение |\n|---|---|\n| срок | 11 |\n\n~~старое~~ `x < y`\n\n"
        "```python\nprint('<b>[x](y)</b>')\n```"
    )
    out = answer_markdown(text)
    assert out == text  # nothing here needed escaping
    types = set(_types(out))
    expected = {"heading_open", "strong_open", "em_open", "bullet_list_open", "ordered_list_open"}
    expected |= {"blockquote_open", "table_open", "s_open", "code_inline", "fence"}
    assert expected <= types
    assert not types & LIVE


def test_answer_markdown_leaves_nothing_live_in_random_markup() -> None:
    for text in _soup(seed=2, n=3000):
        out = answer_markdown(text)
        assert not set(_types(out)) & LIVE, (text, out)
        assert live(out, typography=False) == [], (text, out)


def test_every_prefix_of_a_streamed_answer_is_safe() -> None:
    # The page re-renders the answer at each delta: every prefix must be safe on its own.
    answer = (
        "Ответ: <script>alert(1)</script> `код [x](y)` **жирный** [ссылка](javascript:alert(1))\n\n"
        "```\n<b>[x](y)</b>\n```\n![](http://example.com/x.png) <http://example.com> [1]"
    )
    for end in range(len(answer) + 1):
        out = answer_markdown(answer[:end])
        assert not set(_types(out)) & LIVE, (end, out)


def test_verbatim_answer_shows_quoted_sentences_as_written() -> None:
    # The offline answer quotes documents: «2. Срок аренды…» is a contract's clause, not a list.
    answer = "По документам:\n\n2. Срок аренды 11 месяцев. [1]\n\n3. СРОК АРЕНДЫ 2.1. [2, 3]"
    out = answer_markdown(answer, verbatim=True)
    types = set(_types(out))
    assert not types & {"ordered_list_open", "bullet_list_open", "heading_open"}, out
    shown = _shown_text(out)
    assert "2. Срок аренды 11 месяцев. [1]" in shown and "3. СРОК АРЕНДЫ 2.1. [2, 3]" in shown
    assert "[1]" in out and "[2, 3]" in out  # citations keep their brackets in the source too
    # Without ``verbatim`` the same text becomes a numbered list, which is what the bug was.
    assert "ordered_list_open" in _types(answer_markdown(answer))


def test_verbatim_answer_leaves_nothing_live_in_random_markup() -> None:
    for text in _soup(seed=3, n=2000):
        out = answer_markdown(text, verbatim=True)
        assert not set(_types(out)) & LIVE, (text, out)
        assert live(out) == [], (text, out)


LINKS = {1: "source?chunk=ab12&chat=cd34", 2: "source?chunk=ef56"}


@pytest.mark.parametrize("verbatim", [False, True])
def test_citations_link_to_their_sources_and_nothing_else_is_html(verbatim: bool) -> None:
    answer = (
        "Срок аренды 11 месяцев [1]. Оплата [1, 2], неизвестный [7].\n\n"
        'Код `[1]` и «<a class="rag-cite" href="javascript:alert(1)">[2]</a>»'
    )
    out = answer_markdown(answer, verbatim=verbatim, links=LINKS)
    html = [t.content for t in _tokens(PARSER.parse(out)) if t.type in {"html_inline", "html_block"}]
    opened = [h for h in html if h != "</a>"]
    # [1] whole, then 1 and 2 inside [1, 2]; [7] has no source; the code span stays text, and so
    # does the answer's own anchor (text a model could write) around a [2] that is linked.
    first = '<a class="rag-cite" href="source?chunk=ab12&amp;chat=cd34" target="_self">'
    second = '<a class="rag-cite" href="source?chunk=ef56" target="_self">'
    # A quoted document has no code: there the backticks are characters and their [1] is linked.
    assert opened == [first, first, second, *([first] if verbatim else []), second], out
    assert html.count("</a>") == len(opened)
    text = _shown_text(out)
    assert "Срок аренды 11 месяцев [1]. Оплата [1, 2], неизвестный [7]." in text
    assert 'href="javascript:alert(1)"' in text  # shown as the characters it is


def test_random_markup_with_citation_links_holds_no_other_html() -> None:
    for verbatim in (False, True):
        for text in _soup(seed=4, n=1500):
            out = answer_markdown(f"{text} [1] {text} [2]", verbatim=verbatim, links=LINKS)
            for token in _tokens(PARSER.parse(out)):
                if token.type in {"html_inline", "html_block"}:
                    assert token.type == "html_inline" and (
                        token.content == "</a>"
                        or token.content.startswith('<a class="rag-cite" href="source?chunk=')
                    ), (text, out)
                assert token.type not in {"link_open", "image"}, (text, out)


@pytest.mark.parametrize(
    "text",
    [
        "см. https://evil.example/a, www.evil.example и a@evil.example",
        ":red[красный] :blue-background[фон] :material/lock: :streamlit: :smile:",
        "ключ:значение{x=1} и :unknown[метка]",
        "a -> b <- c <-> d -- e >= f <= g ~= h",
        "![u](http://evil.example/user.png)**x**",
    ],
)
def test_literal_is_inert_in_streamlit_and_shows_the_same_text(text: str) -> None:
    out = literal(text)
    assert live(out) == [], out
    assert shown(out) == text


def test_plain_text_has_no_escapes_and_nothing_invisible() -> None:
    assert plain("<img src=x>.txt") == "<img src=x>.txt"
    assert plain("счёт\u202efdp.txt") == "счётfdp.txt"
    assert plain("две\nстроки\u200b") == "две строки"


def test_answer_keeps_no_directive_of_any_script() -> None:
    # «ключ:значение{x=1}» lost its braces in the browser: a Cyrillic name starts a directive too.
    assert answer_markdown("ключ:значение{x=1}") == "ключ\\:значение{x=1}"
