"""The multilingual transformer encoder: texts in, L2-normalised sentence vectors out.

E5 models expect the ``query: `` prefix and mean pooling over real tokens.
Throughput comes from things measured in bench/bench_classify.py: batches
sorted by token count (about 2% padding; sorting by characters left about
20%), a precision and runtime chosen from what the CPU has (``choose_precision``:
bfloat16 PyTorch with the feed-forward GELU fused into its matmul on CPUs with
AMX or AVX-512 BF16, the int8 ONNX Runtime graph of onnx_int8.py elsewhere), one single-threaded
forward per core running side by side (post-length tensors are too small for
intra-op threads to pay off), and no autograd bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from .cpu_fusion import fuse_feed_forward_gelu
from .onnx_int8 import Int8Graph, int8_path, int8_ready

PREFIX = "query: "
PRECISIONS = ("fp32", "bf16", "int8")
RUNTIMES = {"fp32": "torch", "bf16": "torch", "int8": "onnxruntime"}
# Mean-pooled hidden states of these layers, each L2-normalised, concatenated.
# Middle layers keep more of the wording (tone, who speaks) that the last layer
# abstracts away; on the training data's cross-validation folds this beat the
# last layer alone by about 0.015 topic macro-F1 at no extra forward cost.
DEFAULT_LAYERS = (6, 9, 12)


def pooled_features(hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor,
                    layers: Sequence[int]) -> torch.Tensor:
    """The features every head reads: each chosen layer's hidden states averaged over
    the real tokens, L2-normalised, concatenated (float32). Fine-tuning trains on
    exactly these."""
    mask = attention_mask.unsqueeze(-1)
    denom = mask.sum(1).clamp(min=1)
    return torch.cat([torch.nn.functional.normalize(((hidden_states[k] * mask).sum(1) / denom).float(), dim=-1)
                      for k in layers], dim=-1)


def resolve_model_path(model: str) -> str:
    """``classify.model``: a folder (relative to the working directory, as every
    path in the settings is; ``make`` and the local stack run in the repo root)
    or, when no such folder exists and it does not look like a path, a hub id."""
    p = Path(model)
    if p.is_dir():
        return str(p)
    if p.is_absolute() or model.startswith("."):
        raise FileNotFoundError(
            f"model folder {model!r} not found (looked in {p.resolve()}); run `make model` in the repo root "
            f"to create the default one, or set LYSSNA_MODEL to a folder")
    return model


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo says nothing."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):  # x86, ARM
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_supported(flags: frozenset[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(flags: frozenset[str], int8_available: bool, scope: str = "all") -> str:
    """The served path for a CPU with ``flags`` and the classifier's ``scope``, from
    paired runs of the paths (bench/bench_classify.py, bench/bench_firehose.py and
    MODEL_CARD.md).

    bf16 where the CPU multiplies bfloat16 natively: AMX (9.4x the baseline) and
    AVX-512 BF16 (AMD Zen 4: bf16 1.1-1.3x faster than int8 in paired runs of full
    batches). Everywhere else (AVX2 only, AVX-512 without BF16, ARM) PyTorch has no
    fast bf16 kernels and fp32 was ~2.2x the baseline, so the int8 ONNX Runtime
    graph; fp32 when that graph was not built.

    Except AVX-512 BF16 without AMX under ``scope: mentions``: the encoder then sees
    the few mention-bearing posts of each batch (about five in a 3,000 posts/s
    firehose), where PyTorch's per-call overhead outweighs its kernels: 12.4 ms of
    CPU per post in bf16 against 9.7 in int8 on Zen 4, and the firehose held
    3,000 posts/s only on int8.
    """
    if "amx_bf16" in flags:
        return "bf16"
    if bf16_supported(flags) and (scope == "all" or not int8_available):
        return "bf16"
    return "int8" if int8_available else "fp32"


class Encoder:
    def __init__(self, model: str, *, precision: str = "auto", max_length: int = 256,
                 threads: int | None = None, layers: tuple[int, ...] = DEFAULT_LAYERS, scope: str = "all"):
        """``threads``: forwards run side by side, one single-threaded worker per
        core (default: all cores). ``scope``: the classifier's, for ``auto``
        (:func:`choose_precision`)."""
        path = resolve_model_path(model)
        self.layers = tuple(layers)
        if precision == "auto":
            precision = choose_precision(cpu_flags(), int8_ready(path, self.layers), scope)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} or auto, not {precision!r}")
        if precision == "int8" and not int8_ready(path, self.layers):
            raise FileNotFoundError(
                f"no int8 graph for layers {list(self.layers)} at {int8_path(path)} (or it is older than the "
                f"model's weights); run `make model` to build it, or choose another precision")
        self.workers = threads or os.cpu_count() or 1
        if self.workers > 1:
            # The intra-op thread count is per thread (OpenMP), so each worker sets its own.
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="encoder",
                                            initializer=torch.set_num_threads, initargs=(1,))
        hf_logging.disable_progress_bar()  # a local load is instant; the bar only clutters logs
        self.name = model
        self.precision = precision
        self.runtime = RUNTIMES[precision]
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.pad_id = self.tokenizer.pad_token_id or 0
        if precision == "int8":
            self.model, self.graph = None, Int8Graph(int8_path(path))
            self.dim = int(AutoConfig.from_pretrained(path).hidden_size) * len(self.layers)
            return
        self.graph = None
        # For posts (tens of tokens) plain matmul attention beats the fused CPU SDPA
        # kernel: in bf16 it runs on AMX like the rest (see bench/bench_classify.py).
        net = AutoModel.from_pretrained(path, dtype=torch.float32,
                                        attn_implementation="eager" if precision == "bf16" else None).eval()
        if precision == "bf16":
            net = net.to(torch.bfloat16)
            fuse_feed_forward_gelu(net)
        self.model = net
        self.dim = int(getattr(net.config, "hidden_size", 384)) * len(self.layers)

    def _token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        # One call for all texts: the fast tokenizer batches in Rust, and it is not
        # safe to call from several threads at once, so only forwards fan out.
        return self.tokenizer([PREFIX + t for t in texts], truncation=True,
                              max_length=self.max_length)["input_ids"]

    def _padded(self, rows: Sequence[list[int]]) -> dict[str, np.ndarray]:
        width = max(map(len, rows))
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def _forward(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        if self.graph is not None:
            return self.graph(enc["input_ids"], enc["attention_mask"])
        return self._torch_forward(torch.from_numpy(enc["input_ids"]), torch.from_numpy(enc["attention_mask"]))

    @torch.inference_mode()
    def _torch_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True).hidden_states
        return pooled_features(hidden, attention_mask, self.layers).numpy()

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts in batches of similar token count; rows come back in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: len(rows[i]))
        # Small inputs are split so that every core gets a share.
        size = max(1, min(batch_size, math.ceil(len(order) / self.workers)))
        chunks = [order[s:s + size] for s in range(0, len(order), size)]
        result = np.empty((len(texts), self.dim), dtype=np.float32)
        if self.workers > 1 and len(chunks) > 1:
            futures = [self._pool.submit(self._forward, self._padded([rows[i] for i in chunk]))
                       for chunk in chunks]
            for chunk, future in zip(chunks, futures):
                result[chunk] = future.result()
        else:
            for chunk in chunks:
                result[chunk] = self._forward(self._padded([rows[i] for i in chunk]))
        return result
