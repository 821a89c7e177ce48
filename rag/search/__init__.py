"""Search: embedders and their engines, the vector index, the cross-lingual terms, retrieval, rewriting."""
