"""The sentence chunker: size limits, whole sentences, small overlap, headings, pages, spans."""

from __future__ import annotations

import itertools
import random

import pytest

from rag.chunking import ChunkDraft, chunk_pages
from rag.ingest import Page

POOL = (
    "аренда помещение договор стороны оплата срок месяц арендатор арендодатель обязан вносить "
    "плату ежемесячно склад ремонт здание этаж площадь метров акт передачи услуги коммунальные"
).split()


def make_sentences(count: int, seed: int, tag: str = "п", max_len: int = 30) -> list[str]:
    """Distinct sentences of 5..max_len words; the second word is a unique tag."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        words = [rng.choice(POOL) for _ in range(rng.randint(4, max_len - 1))]
        words.insert(1, f"{tag}{i}")
        out.append(" ".join(words).capitalize() + ".")
    return out


def ranges(chunks: list[ChunkDraft], sentences: list[str]) -> list[tuple[int, int]]:
    """For each chunk, the [a, b) run of sentences it is made of (fails if it is not whole)."""
    out = []
    for c in chunks:
        body = c.text.split("\n", 1)[-1]
        first = next(i for i, s in enumerate(sentences) if body.startswith(s))
        b = first + 1
        while " ".join(sentences[first:b]) != body:
            b += 1
            assert b <= len(sentences), f"chunk is not a run of whole sentences: {body[:80]!r}"
        out.append((first, b))
    return out


def norm(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("max_words", "overlap"), [(20, 0), (60, 1), (100, 1), (100, 2), (200, 3)])
def test_chunks_are_runs_of_whole_sentences_within_the_limit(max_words: int, overlap: int) -> None:
    sentences = make_sentences(60, seed=max_words + overlap, max_len=min(30, max_words))
    chunks = chunk_pages([Page(None, " ".join(sentences))], max_words=max_words, overlap=overlap)
    assert all(len(c.text.split()) <= max_words for c in chunks)
    spans = ranges(chunks, sentences)
    # Everything is covered, in order, and each chunk moves forward.
    assert spans[0][0] == 0 and spans[-1][1] == len(sentences)
    for (a1, b1), (a2, b2) in itertools.pairwise(spans):
        assert a1 < a2 <= b1 < b2
        repeated = sentences[a2:b1]
        assert len(repeated) <= overlap
        assert sum(len(s.split()) for s in repeated) <= max_words // 3


def test_without_overlap_chunks_partition_the_text() -> None:
    sentences = make_sentences(50, seed=3)
    chunks = chunk_pages([Page(None, " ".join(sentences))], max_words=80, overlap=0)
    spans = ranges(chunks, sentences)
    assert [a for a, _ in spans[1:]] == [b for _, b in spans[:-1]]


def test_overlap_repeats_the_last_sentence_when_it_is_short() -> None:
    sentences = [f"Короткое предложение номер {i} про аренду склада." for i in range(30)]
    chunks = chunk_pages([Page(None, " ".join(sentences))], max_words=40, overlap=1)
    spans = ranges(chunks, sentences)
    assert len(spans) > 3
    # A fact on a chunk boundary is whole in at least one chunk: the next one starts with it.
    assert all(a2 == b1 - 1 for (_, b1), (a2, _) in itertools.pairwise(spans))


def test_a_sentence_longer_than_the_limit_is_split_without_losing_words() -> None:
    words = [f"слово{i}" for i in range(350)]
    giant = " ".join(words)  # no punctuation: one "sentence" (a table row, a run-on list)
    before = "Первое предложение перед таблицей."
    after = "Последнее предложение после таблицы."
    chunks = chunk_pages([Page(None, f"{before} {giant} {after}")], max_words=100, overlap=1)
    assert len(chunks) >= 4
    assert all(len(c.text.split()) <= 100 for c in chunks)
    inside = [w for c in chunks for w in c.text.split() if w.startswith("слово")]
    assert inside == words  # every word once, in order (word windows do not overlap)
    assert chunks[0].text.startswith(before)
    assert chunks[-1].text.endswith(after)


def test_markdown_headings_are_prefixed_to_their_sections() -> None:
    rent = make_sentences(12, seed=1, tag="р")
    pay = make_sentences(12, seed=2, tag="о")
    text = (
        "# Договор аренды\n\n## Срок аренды\n\n"
        + " ".join(rent)
        + "\n\n## Порядок оплаты ##\n\n"
        + " ".join(pay)
        + "\n"
    )
    max_words = 50
    chunks = chunk_pages([Page(None, text)], max_words=max_words, overlap=1, markdown=True)
    headings = [c.text.split("\n", 1)[0] for c in chunks]
    # Each chunk carries its heading path; the empty top section gives no chunk of its own.
    assert set(headings) == {"Договор аренды › Срок аренды", "Договор аренды › Порядок оплаты"}
    for c in chunks:
        heading, body = c.text.split("\n", 1)
        assert "#" not in c.text
        assert len(body.split()) <= max_words - len(heading.split())
        tags = {w for w in body.split() if w[:1] in "ро" and w[1:].isdigit()}
        assert tags, body
        assert {t[0] for t in tags} == {"р" if heading.endswith("Срок аренды") else "о"}
    rent_chunks = [c for c in chunks if c.text.startswith("Договор аренды › Срок")]
    pay_chunks = [c for c in chunks if c.text.startswith("Договор аренды › Порядок")]
    assert ranges(rent_chunks, rent)[-1][1] == len(rent)
    assert ranges(pay_chunks, pay)[-1][1] == len(pay)


def test_plain_text_keeps_hash_lines_as_text() -> None:
    chunks = chunk_pages([Page(None, "# не заголовок\n\nТекст договора.")], markdown=False)
    assert len(chunks) == 1
    assert chunks[0].text.startswith("# не заголовок")


def test_pages_are_kept_and_never_crossed() -> None:
    pages = [Page(n, " ".join(make_sentences(15, seed=n, tag=f"с{n}_"))) for n in (1, 2, 3)]
    chunks = chunk_pages(pages, max_words=60, overlap=1)
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)
    assert {c.page for c in chunks} == {1, 2, 3}
    for c in chunks:
        tags = {w.split("_")[0] for w in c.text.split() if w.startswith("с") and "_" in w}
        assert tags == {f"с{c.page}"}, c.text


def test_spans_point_at_the_chunk_text() -> None:
    page1 = "Договор аренды.\n\n" + " ".join(make_sentences(20, seed=5)) + "\n"
    page2 = "  " + "\n".join(make_sentences(20, seed=6)) + "\n\n\nКонец."
    pages = [Page(1, page1), Page(2, page2)]
    chunks = chunk_pages(pages, max_words=45, overlap=1)
    by_number = {p.number: p.text for p in pages}
    for c in chunks:
        source = by_number[c.page]
        assert 0 <= c.start < c.end <= len(source)
        assert norm(source[c.start : c.end]) == norm(c.text)


def test_spans_skip_the_heading_in_markdown() -> None:
    text = "# Оплата\n\nАрендная плата вносится ежемесячно. Размер платы 45 тысяч рублей.\n"
    [chunk] = chunk_pages([Page(None, text)], markdown=True)
    assert chunk.text.startswith("Оплата\n")
    assert norm(text[chunk.start : chunk.end]) == norm(chunk.text.split("\n", 1)[1])


def test_empty_pages_give_no_chunks() -> None:
    assert chunk_pages([]) == []
    assert chunk_pages([Page(1, "   \n\n  "), Page(2, "")]) == []
