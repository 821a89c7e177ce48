"""Cross-lingual keywords: a question's words translated into the library's own vocabulary.

Keyword search is blind across languages: an English question shares no word with a Russian
contract. The cross-lingual embedder (USE multilingual, trained on translation pairs) places a
word near its translations, so every stem of the library is kept with the vector of one of its
word forms, per script (Cyrillic, Latin). A question's content words are looked up among the
stems of the *other* script, and the close ones become an extra keyword query («contract» →
«договор», «storage» → «хранен»). On the development set this channel alone puts 13 of 14
cross-lingual answers in the top 5, where plain keywords find 2 (bench/README.md).

Deleting a document drops the stems no remaining fragment has: a private document's words
must not live on in what the translations of other users' questions return.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from language import CYRILLIC, EN_STOPWORDS, RU_STOPWORDS, stems, words
from rag.search.embedding import Embedder

# Two nearest stems per word, kept when their cosine reaches this: 0.5-0.7 scored alike on the
# development set; below 0.5 unrelated words come in, above 0.7 inflected translations drop out.
NEIGHBOURS = 2
MIN_SIMILARITY = 0.6
_BATCH = 500
# Words too short or made of digits carry no meaning a translation could keep.
_MIN_LETTERS = 3
_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)

Script = str  # "cyr" or "lat"


def _script(word: str) -> Script:
    return "cyr" if CYRILLIC.search(word) else "lat"


def content_words(text: str) -> list[str]:
    """The words of a text worth translating: no stopwords, digits or two-letter words."""
    out = []
    for w in words(text):
        if w in RU_STOPWORDS or w in EN_STOPWORDS:
            continue
        if len(_LETTERS.findall(w)) < _MIN_LETTERS:
            continue
        out.append(w)
    return out


def vocabulary(texts: list[str]) -> dict[str, str]:
    """Stem → the first word form seen with it, over the content words of the texts."""
    out: dict[str, str] = {}
    for text in texts:
        for w in content_words(text):
            s = stems(w)[0]
            out.setdefault(s, w)
    return out


def collection_name(model: str, script: Script) -> str:
    """The Chroma collection of a model's vocabulary in one script."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", model).strip("-").lower()[:30] or "model"
    digest = hashlib.sha1(model.encode()).hexdigest()[:8]
    return f"terms-{slug}-{digest}-{script}"


class TermIndex:
    """The library's stems with cross-lingual word vectors, in Chroma next to the fragments."""

    def __init__(self, client: Any, model: str) -> None:
        self.client = client
        self.model = model

    def _collection(self, script: Script) -> Any:
        # No "model" key in the metadata: VectorIndex.models() lists fragment collections only.
        return self.client.get_or_create_collection(
            name=collection_name(self.model, script),
            embedding_function=None,
            metadata={"hnsw:space": "cosine", "terms_of": self.model},
        )

    def count(self) -> int:
        """Stems stored, both scripts."""
        return sum(int(self._collection(s).count()) for s in ("cyr", "lat"))

    def clear(self) -> None:
        """Forget the whole vocabulary (the library's full reset)."""
        for script in ("cyr", "lat"):
            name = collection_name(self.model, script)
            if name in {c if isinstance(c, str) else c.name for c in self.client.list_collections()}:
                self.client.delete_collection(name)

    def add(self, texts: list[str], embedder: Embedder) -> int:
        """Store the stems of the texts not yet known; return how many were new."""
        vocab = vocabulary(texts)
        added = 0
        for script in ("cyr", "lat"):
            col = self._collection(script)
            mine = {s: w for s, w in vocab.items() if _script(w) == script}
            stems_ = list(mine)
            for i in range(0, len(stems_), _BATCH):
                batch = stems_[i : i + _BATCH]
                known = set(col.get(ids=batch, include=[])["ids"])
                new = [s for s in batch if s not in known]
                if not new:
                    continue
                vectors = embedder.embed_documents([mine[s] for s in new])
                col.upsert(ids=new, embeddings=np.asarray(vectors, dtype=np.float32))
                added += len(new)
        return added

    def forget(self, texts: list[str], in_use: Callable[[list[str]], set[str]]) -> int:
        """Drop the stems of the texts that ``in_use`` says no fragment has any more; how many."""
        vocab = vocabulary(texts)
        gone = sorted(set(vocab) - in_use(list(vocab)))
        for script in ("cyr", "lat"):
            mine = [s for s in gone if _script(vocab[s]) == script]
            for i in range(0, len(mine), _BATCH):
                self._collection(script).delete(ids=mine[i : i + _BATCH])
        return len(gone)

    def translate(
        self,
        question: str,
        embedder: Embedder,
        neighbours: int = NEIGHBOURS,
        min_similarity: float = MIN_SIMILARITY,
    ) -> list[str]:
        """Stems of the other script close to the question's content words, best first."""
        out: dict[str, float] = {}
        for found in self.glossary(question, embedder, neighbours, min_similarity).values():
            for stem, sim in found:
                if sim > out.get(stem, -1.0):
                    out[stem] = sim
        return sorted(out, key=lambda s: out[s], reverse=True)

    def glossary(
        self,
        question: str,
        embedder: Embedder,
        neighbours: int = NEIGHBOURS,
        min_similarity: float = MIN_SIMILARITY,
    ) -> dict[str, list[tuple[str, float]]]:
        """Each content word of the question with the other script's stems close to it, best first."""
        qwords = list(dict.fromkeys(content_words(question)))
        if not qwords:
            return {}
        vectors = embedder.embed_documents(qwords)
        out: dict[str, list[tuple[str, float]]] = {}
        for script in ("cyr", "lat"):
            idx = [i for i, w in enumerate(qwords) if _script(w) != script]
            if not idx:
                continue
            res = self._collection(script).query(
                query_embeddings=np.asarray(vectors[idx], dtype=np.float32),
                n_results=neighbours,
                include=["distances"],
            )
            for i, ids, dists in zip(idx, res["ids"], res["distances"] or [], strict=False):
                close = [(stem, 1.0 - float(d)) for stem, d in zip(ids, dists, strict=True)]
                close = [(stem, sim) for stem, sim in close if sim >= min_similarity]
                if close:
                    out[qwords[i]] = sorted(close, key=lambda x: x[1], reverse=True)
        return out
