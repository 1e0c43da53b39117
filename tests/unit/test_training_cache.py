"""The training embeddings cache: retraining after posts were added embeds only the new ones."""

from types import SimpleNamespace

import numpy as np

from lyssna.classify.training import fit


class CountingEncoder:
    name, precision, layers, max_length, dim = "enc", "fp32", (12,), 256, 2

    def __init__(self):
        self.embedded: list[str] = []

    def embed(self, texts):
        self.embedded += texts
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)


def test_only_new_texts_are_embedded_and_rows_keep_their_order(tmp_path, monkeypatch):
    monkeypatch.setattr(fit, "CACHE_DIR", tmp_path)
    enc = CountingEncoder()
    first = [SimpleNamespace(text=t) for t in ("a", "bb", "aaa")]
    assert fit.embed_examples(enc, first, progress=lambda m: None).tolist() == [[1, 1], [2, 0], [3, 3]]
    grown = [SimpleNamespace(text=t) for t in ("cccc", "aaa", "a")]
    assert fit.embed_examples(enc, grown, progress=lambda m: None).tolist() == [[4, 0], [3, 3], [1, 1]]
    assert enc.embedded == ["a", "bb", "aaa", "cccc"]
    # Another precision is another cache.
    other = CountingEncoder()
    other.precision = "int8"
    fit.embed_examples(other, first, progress=lambda m: None)
    assert other.embedded == ["a", "bb", "aaa"]
