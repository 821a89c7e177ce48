"""Embedders: the default multilingual model, and the seed's MiniLM still selectable."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from rag.embedding import E5_SMALL, MINILM, USE_M3, E5SmallEmbedder, canonical_name, load_embedder
from rag.library import open_library
from settings import Settings


def test_aliases_resolve_to_recorded_names() -> None:
    assert canonical_name("e5") == E5_SMALL
    assert canonical_name(" minilm ") == MINILM
    assert canonical_name("/models/custom") == "/models/custom"


def test_e5_vectors_are_normalised_and_rank_russian_paraphrase_first() -> None:
    emb = E5SmallEmbedder()
    docs = emb.embed_documents(
        [
            "Срок аренды составляет одиннадцать месяцев.",
            "Кошка спит на подоконнике.",
            "Температура воды в озере летом достигает двадцати градусов.",
        ]
    )
    assert docs.shape == (3, 384)
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-3)
    query = emb.embed_query("На какое время заключён договор найма?")
    assert int(np.argmax(docs @ query)) == 0


def test_a_question_is_embedded_while_an_indexing_batch_holds_the_model(embedder: E5SmallEmbedder) -> None:
    question = "Какой срок аренды?"
    alone = embedder.embed_query(question)
    got: list[np.ndarray] = []
    with embedder._lock:  # what embed_documents holds for a whole batch of passages
        worker = threading.Thread(target=lambda: got.append(embedder.embed_query(question)))
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the question waited for the indexing batch"
    assert np.allclose(got[0], alone)


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return load_embedder("all-MiniLM-L6-v2")


def test_minilm_loads_offline_from_its_wheel(minilm) -> None:  # type: ignore[no-untyped-def]
    assert minilm.name == MINILM
    docs = minilm.embed_documents(["The lease term is eleven months.", "A cat sleeps on the window sill."])
    assert docs.shape == (2, 384)
    query = minilm.embed_query("How long is the rental agreement?")
    assert float(docs[0] @ query) > float(docs[1] @ query)


def test_library_with_minilm_records_the_model(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    settings = Settings().model_copy(update={"data_dir": tmp_path, "embedding_model": MINILM})
    lib = open_library(settings, embedder=minilm)
    try:
        res = lib.ingest("lease.md", b"# Lease\n\nThe lease term is eleven months from signing.")
        assert res.status == "indexed" and res.document is not None
        assert res.document.embedding_model == f"{MINILM}+{USE_M3}"
        hits = lib.retriever.search("How long is the rental?", k=1, method="dense")
        assert hits and hits[0].filename == "lease.md"
    finally:
        lib.engine.dispose()


def test_english_only_embedder_does_not_drag_russian_hybrid_down(tmp_path: Path, minilm) -> None:  # type: ignore[no-untyped-def]
    # Without the cross-lingual channel, so that only keywords and MiniLM could be fused.
    settings = Settings().model_copy(
        update={"data_dir": tmp_path, "embedding_model": MINILM, "crosslingual_model": ""}
    )
    lib = open_library(settings, embedder=minilm)
    try:
        for i, text in enumerate(
            [
                "Срок аренды составляет одиннадцать месяцев с даты подписания.",
                "Кошка спит на подоконнике весь день.",
                "Отпуск сотрудника длится двадцать восемь календарных дней.",
            ]
        ):
            lib.ingest(f"doc{i}.txt", text.encode())
        question = "Сколько длится отпуск сотрудника?"
        keyword = [h.chunk_id for h in lib.retriever.search(question, k=3, method="keyword")]
        hybrid = [h.chunk_id for h in lib.retriever.search(question, k=3, method="hybrid")]
        assert hybrid == keyword  # MiniLM's noise on Cyrillic is left out of the fusion
        english = lib.retriever.search("How long is the lease?", k=3, method="hybrid")
        assert english  # English questions still use the dense side
    finally:
        lib.engine.dispose()
