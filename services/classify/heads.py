"""Topic and sentiment heads on top of the sentence vectors.

Linear heads are small enough to commit as JSON, load in milliseconds and run
as one matrix product per batch. Per-label thresholds are tuned on the
validation split, because a single 0.5 cut-off suits neither rare nor common
labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lyssna.common.contracts import LABELS, SENTIMENTS

HEADS_FORMAT = "lyssna.heads.v1"
DEFAULT_HEADS_DIR = Path(__file__).resolve().parent / "bundled_heads"  # package data: works from a wheel


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Prediction:
    topics: list[str]
    topic_scores: dict[str, float]
    sentiment: str
    sentiment_scores: dict[str, float]


@dataclass
class Heads:
    version: str
    encoder: str
    layers: tuple[int, ...]        # encoder layers the features were pooled from
    topic_weights: np.ndarray      # (labels, dim)
    topic_bias: np.ndarray         # (labels,)
    thresholds: np.ndarray         # (labels,)
    sentiment_weights: np.ndarray  # (3, dim)
    sentiment_bias: np.ndarray     # (3,)

    def topic_probs(self, vectors: np.ndarray) -> np.ndarray:
        return _sigmoid(vectors @ self.topic_weights.T + self.topic_bias)

    def sentiment_probs(self, vectors: np.ndarray) -> np.ndarray:
        return _softmax(vectors @ self.sentiment_weights.T + self.sentiment_bias)

    def predict(self, vectors: np.ndarray) -> list[Prediction]:
        tp, sp = self.topic_probs(vectors), self.sentiment_probs(vectors)
        above = tp >= self.thresholds
        out = []
        for i in range(len(vectors)):
            out.append(Prediction(
                topics=[LABELS[j] for j in np.flatnonzero(above[i])],
                topic_scores={LABELS[j]: round(float(tp[i, j]), 4) for j in range(len(LABELS))},
                sentiment=SENTIMENTS[int(sp[i].argmax())],
                sentiment_scores={SENTIMENTS[j]: round(float(sp[i, j]), 4) for j in range(len(SENTIMENTS))},
            ))
        return out

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "heads.json"
        doc = {
            "format": HEADS_FORMAT, "version": self.version, "encoder": self.encoder,
            "layers": list(self.layers),
            "labels": list(LABELS), "sentiments": list(SENTIMENTS),
            "topic_weights": self.topic_weights.round(6).tolist(),
            "topic_bias": self.topic_bias.round(6).tolist(),
            "thresholds": self.thresholds.round(4).tolist(),
            "sentiment_weights": self.sentiment_weights.round(6).tolist(),
            "sentiment_bias": self.sentiment_bias.round(6).tolist(),
        }
        path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "Heads":
        path = Path(folder or DEFAULT_HEADS_DIR) / "heads.json"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no trained heads at {path}; run `lyssna train`") from None
        if doc.get("format") != HEADS_FORMAT:
            raise ValueError(f"{path}: unknown heads format {doc.get('format')!r}; retrain with `lyssna train`")
        if doc["labels"] != list(LABELS) or doc["sentiments"] != list(SENTIMENTS):
            raise ValueError(f"{path}: trained for other labels; retrain with `lyssna train`")
        arr = lambda k: np.asarray(doc[k], dtype=np.float32)  # noqa: E731
        return cls(version=doc["version"], encoder=doc["encoder"], layers=tuple(doc["layers"]),
                   topic_weights=arr("topic_weights"), topic_bias=arr("topic_bias"),
                   thresholds=arr("thresholds"), sentiment_weights=arr("sentiment_weights"),
                   sentiment_bias=arr("sentiment_bias"))
