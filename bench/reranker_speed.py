"""How long RAG_RERANKER's cross-encoders take on this CPU to read the fused top 40 of one question.

No model can be downloaded here, so each is built with its published architecture and random
weights: the arithmetic, hence the time, is the same as the trained model's (its quality is not,
and nothing here measures quality). Pairs are a question and a ~100-word fragment, 192 tokens.

    .venv/bin/python bench/reranker_speed.py [--pairs 40] [--tokens 192] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
)

# name -> (download size as published, architecture)
MODELS = {
    "BAAI/bge-reranker-v2-m3": (
        "2.3 GB",
        XLMRobertaConfig(
            vocab_size=250002,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            max_position_embeddings=8194,
            num_labels=1,
        ),
    ),
    "BAAI/bge-reranker-base": (
        "1.1 GB",
        XLMRobertaConfig(
            vocab_size=250002,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
            num_labels=1,
        ),
    ),
    "cross-encoder/mmarco-mMiniLMv2-L12-H384-v1": (
        "0.5 GB",
        BertConfig(
            vocab_size=250002,
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=1536,
            max_position_embeddings=512,
            num_labels=1,
        ),
    ),
}


def main() -> None:
    """Time each architecture on the same batch, side by side."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--tokens", type=int, default=192)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    ids = torch.randint(5, 30000, (args.pairs, args.tokens))
    mask = torch.ones_like(ids)
    print(f"threads {torch.get_num_threads()}, {args.pairs} pairs x {args.tokens} tokens, batch 16")
    print(f"{'model':<46}{'download':>10}{'median s':>10}{'min s':>8}")
    for name, (size, config) in MODELS.items():
        cls = (
            XLMRobertaForSequenceClassification
            if isinstance(config, XLMRobertaConfig)
            else BertForSequenceClassification
        )
        model = cls(config).eval()
        times = []
        with torch.inference_mode():
            for _ in range(args.runs):
                t0 = time.perf_counter()
                for start in range(0, args.pairs, 16):
                    model(input_ids=ids[start : start + 16], attention_mask=mask[start : start + 16])
                times.append(time.perf_counter() - t0)
        print(f"{name:<46}{size:>10}{statistics.median(times):>10.2f}{min(times):>8.2f}")
        del model


if __name__ == "__main__":
    main()
