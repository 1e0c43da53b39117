"""The fine-tuning adapter: how make model folds it into the base weights, and what is committed."""

import numpy as np
import pytest

from lyssna.classify.training.finetune import (ADAPTER_FILE, RANK, adapter_keys, average_adapters, load_adapter,
                                               merge_adapter)


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


def _run(rng, rank=2, out=6, inp=4):
    return {"l.weight.A": rng.normal(size=(rank, inp)).astype(np.float32),
            "l.weight.B": rng.normal(size=(out, rank)).astype(np.float32)}


def _update(adapter):
    return adapter["l.weight.B"].astype(np.float32) @ adapter["l.weight.A"].astype(np.float32)


def test_the_average_of_runs_is_the_mean_of_their_updates():
    rng = np.random.default_rng(3)
    runs = [_run(rng) for _ in range(3)]
    # Three rank-2 updates fit in rank 6: the mean comes back exactly (to half precision).
    soup = average_adapters(runs, rank=6)
    assert soup["l.weight.A"].dtype == soup["l.weight.B"].dtype == np.float16
    assert soup["l.weight.A"].shape == (4, 4) and soup["l.weight.B"].shape == (6, 4)  # rank capped by the shape
    assert np.allclose(_update(soup), sum(_update(r) for r in runs) / 3, atol=1e-2)
    # Merging the averaged adapter is merging the mean update.
    w = np.zeros((6, 4), np.float32)
    assert np.allclose(merge_adapter({"l.weight": w}, soup)["l.weight"], _update(soup))


def test_averaging_keeps_the_strongest_directions_when_truncated():
    rng = np.random.default_rng(5)
    runs = [_run(rng, rank=3, out=8, inp=8) for _ in range(2)]
    mean = sum(_update(r) for r in runs) / 2
    soup = average_adapters(runs, rank=2)
    assert soup["l.weight.A"].shape == (2, 8)
    u, s, vt = np.linalg.svd(mean)
    best_rank2 = (u[:, :2] * s[:2]) @ vt[:2]
    assert np.allclose(_update(soup), best_rank2, atol=2e-2)
    # One run averages to itself.
    assert np.allclose(_update(average_adapters(runs[:1], rank=3)), _update(runs[0]), atol=1e-2)
    with pytest.raises(ValueError, match="no adapters"):
        average_adapters([])


def test_the_committed_adapter_is_small_and_covers_every_block():
    adapter = load_adapter(ADAPTER_FILE)
    assert adapter is not None
    assert {k.rsplit(".", 1)[0] for k in adapter} == set(adapter_keys(12))
    assert all(v.dtype == np.float16 for v in adapter.values())
    assert all(v.shape[0] == RANK for k, v in adapter.items() if k.endswith(".A"))
    assert ADAPTER_FILE.stat().st_size < 4 * 2**20


def test_a_stopped_training_resumes_from_the_runs_it_finished(tmp_path, monkeypatch):
    from lyssna.classify.training import finetune

    trained = []

    def fake_run(base_model_dir, train, *, seed, threads=2, progress=print):
        trained.append(seed)
        return _run(np.random.default_rng(seed))

    monkeypatch.setattr(finetune, "train_adapter", fake_run)
    out, cache = tmp_path / "adapter.npz", tmp_path / "cache"
    finetune.finetune_adapter(tmp_path, out, seeds=(1, 2), cache_dir=cache, progress=lambda m: None)
    assert trained == [1, 2] and len(list(cache.glob("lora-run-*.npz"))) == 2
    first = load_adapter(out)
    assert np.allclose(_update(first), (_update(_run(np.random.default_rng(1)))
                                        + _update(_run(np.random.default_rng(2)))) / 2, atol=1e-2)
    # The rerun (as after a stop) trains only the seed it has not seen.
    finetune.finetune_adapter(tmp_path, out, seeds=(1, 2, 3), cache_dir=cache, progress=lambda m: None)
    assert trained == [1, 2, 3]
    finetune.finetune_adapter(tmp_path, out, seeds=(1, 2), cache_dir=cache, progress=lambda m: None)
    assert trained == [1, 2, 3]
    assert all(np.array_equal(first[k], v) for k, v in load_adapter(out).items())
