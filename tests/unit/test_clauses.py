"""Clause anchors (issue 19): every numbered clause of the dev set's contracts and regulations is
found and named as a lawyer cites it, and each fragment records the clause it stands in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.chunking import chunk_pages
from rag.ingest import Page, extract
from rag.ingest.clauses import anchor, outline

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / ".." / "shared" / "eval" / "ru-docs-dev" / "docs"
EXPECTED = json.loads((ROOT / "tests" / "fixtures" / "clause_anchors.json").read_text(encoding="utf-8"))
NAMES = sorted(k for k in EXPECTED if not k.startswith("_"))


def _text(name: str) -> tuple[list[Page], bool]:
    path = DOCS / name
    if not path.exists():
        pytest.skip(f"{DOCS} is missing (the development set lives in ../shared/eval next to the repo)")
    extracted = extract(path.read_bytes(), name)
    return extracted.pages, extracted.has_headings


@pytest.mark.parametrize("name", NAMES)
def test_every_numbered_clause_is_found_and_named(name: str) -> None:
    pages, _ = _text(name)
    text = "\n\n".join(p.text for p in pages)
    found = outline(text)
    assert [c.label for c in found] == [label for label, _ in EXPECTED[name]]
    for clause, (label, begins) in zip(found, EXPECTED[name], strict=True):
        assert clause.title.startswith(begins), (label, clause.title)
        # A fragment that starts inside the clause's own text is anchored to it.
        body = text.index(clause.title, clause.start) + len(clause.title) // 2
        if not clause.heading:
            assert anchor(found, body, body + 10) == label


@pytest.mark.parametrize("name", NAMES)
def test_each_fragment_names_the_clauses_it_holds(name: str) -> None:
    pages, markdown = _text(name)
    drafts = chunk_pages(pages, markdown=markdown)
    text = pages[0].text
    labels = [label for label, _ in EXPECTED[name]]
    for d in drafts:
        inside = [label for label, begins in EXPECTED[name] if begins in text[d.start : d.end]]
        items = [x for x in inside if x.startswith("п. ")]
        if not items or d.anchor is None:
            continue
        # The anchor names the first item the fragment holds (or the one it begins inside), and
        # a range ends at its last one.
        assert d.anchor.startswith(("п. ", "пп. ")), d.anchor
        first = d.anchor.removeprefix("пп. ").removeprefix("п. ").split("–")[0]
        assert labels.index(f"п. {first}") <= labels.index(items[0])
        if d.anchor.startswith("пп. "):
            assert f"п. {d.anchor.split('–')[1]}" == items[-1]
    # Only what comes before the first clause (a title, the parties) stands outside every one.
    first_clause = min(text.index(begins) for _, begins in EXPECTED[name])
    assert all(d.anchor is not None for d in drafts if d.start >= first_clause)


def test_section_heading_is_kept_with_its_fragments() -> None:
    pages, markdown = _text("KSK_dogovor_khraneniya_24-085.txt")
    drafts = chunk_pages(pages, markdown=markdown)
    text = pages[0].text
    storage = next(d for d in drafts if text[d.start :].startswith("2.1."))
    assert storage.anchor is not None and storage.anchor.split("–")[0] in ("п. 2.1", "пп. 2.1")
    assert storage.heading == "2. УСЛОВИЯ ХРАНЕНИЯ"


def test_named_parts_and_what_is_no_clause() -> None:
    text = (
        "ПОЛОЖЕНИЕ\n\n10 января 2024 г.\n\nРаздел 3. Общие правила\n\nСтатья 5. Сроки\n\n"
        "Срок — 1 500 000 рублей.\n05.03.2024 подписан.\n\n2.1. Срок аренды 11 месяцев.\n\n"
        "ПРИЛОЖЕНИЕ № 1\n\nФорма акта.\n"
    )
    found = outline(text)
    assert [c.label for c in found] == ["Раздел 3", "Статья 5", "п. 2.1", "Приложение 1"]
    at = text.index("Срок аренды")
    assert anchor(found, at, at + 5) == "п. 2.1"
    assert anchor(found, text.index("Форма"), len(text)) == "Приложение 1"
    # The appendix is outside «Раздел 3»: a part of a higher rank closes it.
    assert found[0].end == text.index("ПРИЛОЖЕНИЕ")


def test_a_fragment_over_several_clauses_names_the_range() -> None:
    text = "1. ПРЕДМЕТ\n\n1.1. Первое.\n\n1.2. Второе.\n\n1.3. Третье.\n"
    found = outline(text)
    assert anchor(found, 0, len(text)) == "пп. 1.1–1.3"
    assert anchor(found, 0, text.index("1.1.")) == "Раздел 1"  # the title alone
    assert anchor(found, text.index("Второе"), text.index("1.3.")) == "п. 1.2"
