"""RAG_RERANKER: a cross-encoder reorders the fused candidates; family prefixes for larger embedders.

No model can be downloaded here, so the real loading and scoring code runs on tiny random BERT
models that the tests build and save themselves; the ordering logic is checked with a
deterministic stand-in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from rag import RagError
from rag.identity.access import Scope
from rag.library import Library, open_library
from rag.search.embedding import (
    BGE_EN_QUERY,
    E5_INSTRUCT_QUERY,
    E5_PREFIXES,
    Embedder,
    SentenceTransformerEmbedder,
    family_prefixes,
)
from rag.search.rerank import CrossEncoderReranker, reorder
from rag.search.retrieve import Retriever
from settings import Settings

DOCS = {
    "arenda.txt": "Арендная плата составляет 45 000 рублей в месяц и вносится до пятого числа.",
    "otpusk.txt": "Ежегодный оплачиваемый отпуск длится 28 календарных дней.",
    "piter.txt": "Санкт-Петербург основан в 1703 году в устье Невы.",
    "sklad.txt": "Хранение одной паллеты на складе стоит 61 рубль в сутки.",
}
QUESTION = "Сколько стоит аренда в месяц?"


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, settings_factory: Callable[..., Settings]
) -> Iterator[Library]:
    lib = open_library(settings_factory(tmp_path_factory.mktemp("rerank")), embedder=embedder)
    for name, body in DOCS.items():
        assert lib.ingest(name, body.encode()).status == "indexed"
    yield lib
    lib.engine.dispose()


class ByWord:
    """A stand-in cross-encoder: a passage scores by how early a chosen word stands in the list."""

    name = "stand-in"

    def __init__(self, *liked: str) -> None:
        self.liked = liked
        self.seen: list[list[str]] = []

    def scores(self, query: str, passages: Sequence[str]) -> list[float]:
        self.seen.append(list(passages))
        return [
            float(len(self.liked) - next((i for i, w in enumerate(self.liked) if w in p), len(self.liked)))
            for p in passages
        ]


def _with(lib: Library, reranker: ByWord | CrossEncoderReranker | None, pool: int = 40) -> Retriever:
    return Retriever(lib.docs, lib.vectors, lib.embedders, lib.terms, lambda: reranker, pool)


def test_reorder_sorts_by_score_and_keeps_fused_order_on_ties() -> None:
    assert reorder(["a", "b", "c", "d"], [0.1, 0.9, 0.1, 0.5]) == ["b", "d", "a", "c"]
    with pytest.raises(ValueError):
        reorder(["a"], [1.0, 2.0])


def test_the_reranker_decides_the_order_of_the_top_k(library: Library) -> None:
    fused = library.retriever.search(QUESTION, k=4)
    assert fused[0].filename == "arenda.txt"
    stand_in = ByWord("Невы", "отпуск")
    hits = _with(library, stand_in).search(QUESTION, k=2)
    assert [h.filename for h in hits] == ["piter.txt", "otpusk.txt"]
    assert [h.n for h in hits] == [1, 2]  # numbered again for citation
    # It read every fused candidate (the library holds fewer than the pool), in the fused order.
    assert stand_in.seen == [[h.text for h in fused]]


def test_the_reranker_reads_only_the_fused_pool(library: Library) -> None:
    fused = library.retriever.search(QUESTION, k=4)
    stand_in = ByWord("Невы")
    hits = _with(library, stand_in, pool=2).search(QUESTION, k=2)
    # Below the pool, a fragment the reranker would like best never comes back.
    assert "piter.txt" not in {h.filename for h in fused[:2]}
    assert stand_in.seen == [[h.text for h in fused[:2]]]
    assert {h.chunk_id for h in hits} == {h.chunk_id for h in fused[:2]}


def test_the_reranker_never_sees_or_returns_what_the_scope_hides(library: Library) -> None:
    names = {d.id: d.filename for d in library.docs.list_all()}
    allowed = {i: n for i, n in names.items() if n != "piter.txt"}
    stand_in = ByWord("Невы", "отпуск")
    hits = _with(library, stand_in).search(QUESTION, k=3, scope=Scope(allowed))
    assert "piter.txt" not in {h.filename for h in hits}
    assert hits[0].filename == "otpusk.txt"
    assert all("Невы" not in p for p in stand_in.seen[0])


# -- tiny models built here --------------------------------------------------------------------


def _tokenizer(folder: Path) -> None:
    from transformers import BertTokenizerFast

    chars = sorted(set("".join(DOCS.values()) + QUESTION + "abcdefghijklmnopqrstuvwxyz0123456789.,:?"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=False).save_pretrained(folder)


def _config(folder: Path, **extra: int) -> object:
    from transformers import BertConfig

    vocab = (folder / "vocab.txt").read_text(encoding="utf-8").split()
    return BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=512,
        **extra,
    )


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertForSequenceClassification

    folder = tmp_path_factory.mktemp("models") / "tiny-reranker"
    _tokenizer(folder)
    torch.manual_seed(7)
    BertForSequenceClassification(_config(folder, num_labels=1)).save_pretrained(folder)
    return folder


def test_a_local_cross_encoder_loads_and_orders_the_library_by_its_scores(
    tiny_cross_encoder: Path, tmp_path: Path, embedder: Embedder, settings_factory: Callable[..., Settings]
) -> None:
    from sentence_transformers import CrossEncoder

    lib = open_library(settings_factory(tmp_path, RAG_RERANKER=str(tiny_cross_encoder)), embedder=embedder)
    try:
        for name, body in DOCS.items():
            assert lib.ingest(name, body.encode()).status == "indexed"
        assert isinstance(lib.reranker(), CrossEncoderReranker)
        assert lib.retriever.rerank_pool == 40
        fused = _with(lib, None).search(QUESTION, k=4)
        hits = lib.retriever.search(QUESTION, k=4)
        # The same model, loaded apart from the app, scores the fused candidates: its order is ours.
        scores = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict(
            [(QUESTION, h.text) for h in fused]
        )
        expected = [fused[i].chunk_id for i in np.argsort(-np.asarray(scores), kind="stable")]
        assert [h.chunk_id for h in hits] == expected
        assert sorted(h.chunk_id for h in hits) == sorted(h.chunk_id for h in fused)
    finally:
        lib.engine.dispose()


def test_a_reranker_that_cannot_be_fetched_says_so_in_russian(
    tmp_path: Path,
    embedder: Embedder,
    settings_factory: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine has no hub; say so at once
    lib = open_library(
        settings_factory(tmp_path, RAG_RERANKER="no-such-org/no-such-reranker"), embedder=embedder
    )
    try:
        assert lib.ingest("arenda.txt", DOCS["arenda.txt"].encode()).status == "indexed"
        with pytest.raises(RagError, match="Не удалось загрузить реранкер «no-such-org/no-such-reranker»"):
            lib.retriever.search(QUESTION, k=2)
    finally:
        lib.engine.dispose()


def test_the_reranker_is_off_by_default(library: Library) -> None:
    assert library.settings.reranker == ""
    assert library.reranker() is None


@pytest.mark.parametrize(
    ("name", "prefixes"),
    [
        ("intfloat/multilingual-e5-base", E5_PREFIXES),
        ("intfloat/multilingual-e5-large", E5_PREFIXES),
        ("/models/e5-base-v2", E5_PREFIXES),
        ("intfloat/multilingual-e5-large-instruct", (E5_INSTRUCT_QUERY, "")),
        ("BAAI/bge-base-en-v1.5", (BGE_EN_QUERY, "")),
        ("BAAI/bge-m3", ("", "")),
        ("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", ("", "")),
        ("/models/rubert-tiny2", ("", "")),
    ],
)
def test_family_prefixes(name: str, prefixes: tuple[str, str]) -> None:
    assert family_prefixes(name) == prefixes


def test_a_local_e5_family_model_embeds_with_its_prefixes(tmp_path: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    folder = tmp_path / "tiny-multilingual-e5-test"
    _tokenizer(folder)
    torch.manual_seed(3)
    BertModel(_config(folder)).save_pretrained(folder)
    emb = SentenceTransformerEmbedder(str(folder))
    assert emb.prefixes == E5_PREFIXES
    plain = SentenceTransformer(str(folder), device="cpu")
    want_query = plain.encode(["query: " + QUESTION], normalize_embeddings=True)[0]
    want_passage = plain.encode(["passage: " + DOCS["arenda.txt"]], normalize_embeddings=True)[0]
    assert np.allclose(emb.embed_query(QUESTION), want_query, atol=1e-5)
    assert np.allclose(emb.embed_documents([DOCS["arenda.txt"]])[0], want_passage, atol=1e-5)
    # Without the prefix the vector differs: the prefixes are really applied.
    bare = plain.encode([QUESTION], normalize_embeddings=True)[0]
    assert not np.allclose(emb.embed_query(QUESTION), bare, atol=1e-5)
