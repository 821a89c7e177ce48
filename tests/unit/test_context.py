"""Context in every fragment: the document's title and the parties a contract defines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rag.chunking import chunk_pages
from rag.ingest.types import Page
from rag.library import Library
from rag.search.context import Definition, definitions, document_title, fragment_context, indexed_texts

CONTRACT = (
    "ДОГОВОР ПОСТАВКИ № 12/7\n\n"
    "Общество с ограниченной ответственностью «Северная пекарня» (ООО «СП»), именуемое в дальнейшем "
    "«Покупатель», в лице директора, с одной стороны, и Акционерное общество «Уральский мельник» "
    "(АО «УМ»), именуемое в дальнейшем «Поставщик», с другой стороны, заключили настоящий договор.\n\n"
    "1. Поставщик передаёт Покупателю муку пшеничную (далее — «Товар») партиями по заявкам.\n\n"
    "2. Оплата Товара производится Покупателем в течение 10 банковских дней после приёмки.\n\n"
    "3. Претензии по качеству Поставщику направляются в письменной форме."
)


def test_parties_are_read_from_their_definitions_without_the_legal_form() -> None:
    defs = {d.term: d.name for d in definitions([CONTRACT])}
    assert defs["Покупатель"] == "«Северная пекарня» (ООО «СП»)"
    assert defs["Поставщик"] == "«Уральский мельник» (АО «УМ»)"
    assert defs["Товар"] == "муку пшеничную"


# Definition forms of Russian contracts, regulations and orders, with the term and name expected.
FORMS = [
    ("ООО «Ромашка», именуемое в дальнейшем «Арендатор», в лице директора", "Арендатор", "«Ромашка»"),
    (
        "и Иванов Пётр Сергеевич, именуемый в дальнейшем Продавец, с другой стороны",
        "Продавец",
        "Иванов Пётр Сергеевич",
    ),
    ("АО «Лесной порт», именуемое далее «Перевозчик», действующее", "Перевозчик", "«Лесной порт»"),
    ("ИП Смирнова А. А., именуемая в дальнейшем – «Подрядчик»", "Подрядчик", "ИП Смирнова А. А."),
    ("Утвердить порядок приёмки грузов (далее — Порядок).", "Порядок", "порядок приёмки грузов"),
    ("оказание услуг по хранению (далее по тексту – «Услуги»)", "Услуги", "услуг по хранению"),
    (
        "обязуется передать складское оборудование (далее - Оборудование) в аренду",
        "Оборудование",
        "складское оборудование",
    ),
]


@pytest.mark.parametrize(("text", "term", "name"), FORMS)
def test_each_definition_form_gives_its_term_and_name(text: str, term: str, name: str) -> None:
    defs = {d.term: d.name for d in definitions([text])}
    assert term in defs
    assert defs[term].endswith(name) or defs[term] == name


def test_a_fragment_naming_a_party_by_its_term_in_any_case_gets_the_partys_name() -> None:
    defs = definitions([CONTRACT])
    context = fragment_context("Претензии по качеству Поставщику направляются письменно.", "", defs)
    assert "Поставщик — «Уральский мельник» (АО «УМ»)" in context
    assert "Покупатель" not in context  # only the terms the fragment uses
    # A fragment that already names the party gets nothing repeated.
    assert fragment_context("Поставщик — «Уральский мельник» (АО «УМ») передаёт муку.", "", defs) == ""


def test_the_title_is_the_first_heading_the_capitals_or_the_first_short_sentence() -> None:
    assert document_title(["Памятка водителя › Въезд\nВъезд через КПП № 2."]) == "Памятка водителя"
    assert document_title(["ДОГОВОР ПОСТАВКИ № 12/7 г. Пермь 5 марта"]) == "ДОГОВОР ПОСТАВКИ № 12/7"
    opening = "Кассир открывает смену в 9:00. Выручку сдаёт старший."
    assert document_title([opening], "rukovodstvo_kassira.txt") == "rukovodstvo kassira"
    long_first = " ".join(["слово"] * 30) + "."
    assert document_title([long_first], "otchet_kassa_2024.txt") == "otchet kassa 2024"
    assert document_title([long_first], "0001.txt") == ""  # a name without words says nothing


def test_every_fragment_but_the_one_that_opens_with_it_carries_the_title() -> None:
    pages = [Page(number=1, text=CONTRACT)]
    texts = [d.text for d in chunk_pages(pages, max_words=25, overlap=0)]
    assert len(texts) > 2
    out = indexed_texts(texts, "dogovor.txt")
    assert out[0] == texts[0]  # it opens with «ДОГОВОР ПОСТАВКИ № 12/7» already
    for text, indexed in zip(texts[1:], out[1:], strict=True):
        assert indexed.startswith("ДОГОВОР ПОСТАВКИ № 12/7\n")
        assert indexed.endswith(text)


def test_a_question_naming_a_party_finds_the_clause_that_only_says_its_role(
    make_library: Callable[..., Library],
) -> None:
    library = make_library(RAG_CHUNK_WORDS=20)  # clause 3 is a fragment of its own
    library.ingest("dogovor_postavki.txt", CONTRACT.encode())
    library.ingest(
        "pamyatka.txt",
        "Памятка кладовщика. Претензии по качеству муки принимаются в письменной форме.".encode(),
    )
    hits = library.retriever.search("Как направить претензию Уральскому мельнику?", k=1, method="keyword")
    assert hits and hits[0].filename == "dogovor_postavki.txt"
    assert "Уральский" not in hits[0].text  # the shown fragment is the clause as written
    assert hits[0].text.startswith("3. Претензии")


def test_definitions_stay_a_handful_on_a_glossary() -> None:
    glossary = " ".join(f"Термин номер {i} (далее — «Т{i}»)." for i in range(40))
    found = definitions([glossary])
    assert 0 < len(found) <= 12
    assert all(isinstance(d, Definition) for d in found)
