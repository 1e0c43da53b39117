"""The fine-tuning adapter: how make model folds it into the base weights, and what is committed."""

import numpy as np
import pytest

from lyssna.classify.training.finetune import ADAPTER_FILE, RANK, adapter_keys, load_adapter, merge_adapter


def test_merge_adds_the_low_rank_update_and_nothing_else():
    rng = np.random.default_rng(7)
    w = rng.normal(size=(6, 4)).astype(np.float32)
    other = rng.normal(size=(3,)).astype(np.float32)
    a = rng.normal(size=(2, 4)).astype(np.float16)
    b = rng.normal(size=(6, 2)).astype(np.float16)
    merged = merge_adapter({"l.weight": w, "l.bias": other}, {"l.weight.A": a, "l.weight.B": b})
    assert np.allclose(merged["l.weight"], w + b.astype(np.float32) @ a.astype(np.float32))
    assert merged["l.weight"].dtype == np.float32
    assert merged["l.bias"] is other


@pytest.mark.parametrize("adapter, message", [
    ({}, "no A/B pairs"),
    ({"x.weight.A": np.zeros((2, 4)), "x.weight.B": np.zeros((6, 2))}, "does not have"),
    ({"l.weight.A": np.zeros((2, 5)), "l.weight.B": np.zeros((6, 2))}, "does not fit"),
])
def test_an_adapter_that_does_not_fit_the_model_is_refused(adapter, message):
    with pytest.raises(ValueError, match=message):
        merge_adapter({"l.weight": np.zeros((6, 4), np.float32)}, adapter)


def test_the_committed_adapter_is_small_and_covers_every_block():
    adapter = load_adapter(ADAPTER_FILE)
    assert adapter is not None
    assert {k.rsplit(".", 1)[0] for k in adapter} == set(adapter_keys(12))
    assert all(v.dtype == np.float16 for v in adapter.values())
    assert all(v.shape[0] == RANK for k, v in adapter.items() if k.endswith(".A"))
    assert ADAPTER_FILE.stat().st_size < 4 * 2**20
