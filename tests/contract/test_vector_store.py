"""The vector store contract, on embedded Chroma and on a Chroma server: the same assertions."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from rag.search.index import VectorIndex, open_chroma, open_chroma_server
from tests.backends import Servers

MODEL = "multilingual-e5-small"
OTHER = "use-multilingual-v3"


def _client(tmp_path: Path, servers: Servers | None, database: str) -> object:
    if servers is None:
        return open_chroma(tmp_path / "chroma")
    return open_chroma_server(servers.chroma_host, servers.chroma_port, database)


@pytest.fixture
def database() -> str:
    return "t-" + uuid.uuid4().hex[:16]


@pytest.fixture
def index(tmp_path: Path, test_servers: Servers | None, database: str) -> VectorIndex:
    return VectorIndex(_client(tmp_path, test_servers, database))


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_nearest_first_with_cosine_similarity(index: VectorIndex) -> None:
    vectors = _unit(np.array([[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1]], dtype=np.float32))
    index.add(MODEL, ["a", "b", "c"], vectors, "doc1")
    hits = index.query(MODEL, np.array([1, 0, 0], dtype=np.float32), 2)
    assert [i for i, _ in hits] == ["a", "b"]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5) and hits[1][1] == pytest.approx(0.8, abs=1e-5)
    # More than there are: all of them, no error.
    assert len(index.query(MODEL, vectors[2], 10)) == 3
    # A model with no vectors yet answers nothing.
    assert index.query(OTHER, vectors[0], 5) == []


def test_writing_the_same_ids_again_replaces_them(index: VectorIndex) -> None:
    index.add(MODEL, ["a"], _unit(np.array([[1, 0]], dtype=np.float32)), "doc1")
    index.add(MODEL, ["a"], _unit(np.array([[0, 1]], dtype=np.float32)), "doc1")
    assert index.count(MODEL) == 1
    assert index.query(MODEL, np.array([0, 1], dtype=np.float32), 1)[0][1] == pytest.approx(1.0, abs=1e-5)


def test_filter_by_documents_inside_the_index(index: VectorIndex) -> None:
    rng = np.random.default_rng(7)
    # A large document close to the query and a small one far from it: the filter must still
    # find the small one's vectors, not filter a global top k afterwards.
    near = _unit(np.array([1, 0, 0, 0], dtype=np.float32) + 0.01 * rng.standard_normal((300, 4)))
    index.add(MODEL, [f"n{i}" for i in range(300)], near, "big")
    index.add(MODEL, ["s0", "s1"], _unit(np.array([[0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)), "small")
    query = np.array([1, 0, 0, 0], dtype=np.float32)
    assert {i for i, _ in index.query(MODEL, query, 5, documents={"small"})} == {"s0", "s1"}
    assert all(i.startswith("n") for i, _ in index.query(MODEL, query, 5))
    assert index.query(MODEL, query, 5, documents=set()) == []


def test_ids_by_document_and_model_and_deletion(index: VectorIndex) -> None:
    index.add(MODEL, ["a1", "a2"], _unit(np.eye(2, dtype=np.float32)), "A")
    index.add(MODEL, ["b1"], _unit(np.array([[1, 1]], dtype=np.float32)), "B")
    index.add(OTHER, ["a1", "a2"], _unit(np.eye(3, dtype=np.float32)[:2]), "A")
    assert sorted(index.models()) == sorted([MODEL, OTHER])
    assert index.document_ids(MODEL) == {"A", "B"}
    assert index.ids_of_document("A") == {"a1", "a2"}
    assert index.ids(MODEL) == {"a1", "a2", "b1"}
    index.delete_document("A")  # under every model
    assert index.ids(MODEL) == {"b1"} and index.ids(OTHER) == set()
    assert index.ids_of_document("A") == set()
    index.delete_ids(MODEL, ["b1"])
    assert index.count(MODEL) == 0


def test_a_second_client_sees_writes_at_once(
    tmp_path: Path, test_servers: Servers | None, database: str
) -> None:
    # App replicas and workers each hold a client: what one writes, another finds.
    writer = VectorIndex(_client(tmp_path, test_servers, database))
    reader = VectorIndex(_client(tmp_path, test_servers, database))
    writer.add(MODEL, [f"v{i}" for i in range(100)], _unit(np.random.default_rng(1).random((100, 8))), "doc")
    assert reader.count(MODEL) == 100
    writer.delete_document("doc")
    assert reader.count(MODEL) == 0
