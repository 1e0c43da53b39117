"""The GELU fusion swaps only exact-GELU feed-forward blocks and keeps the outputs."""

import pytest
import torch
from transformers import BertConfig, BertModel

from lyssna.classify.cpu_fusion import LinearGelu, fuse_feed_forward_gelu, fused_linear_gelu_available

from lyssna.classify import cpu_fusion

# Each dtype runs where this CPU has the fused kernel and is skipped, with the
# reason, where it has not (bf16 needs AVX-512 BF16 or AMX); the fallback is
# tested on every CPU below.
DTYPES = [pytest.param(dtype, marks=pytest.mark.skipif(
    not fused_linear_gelu_available(dtype),
    reason=f"no oneDNN linear+GELU kernel for {dtype} on this CPU (bf16 needs AVX-512 BF16 or AMX)"))
    for dtype in (torch.float32, torch.bfloat16)]


def tiny_bert(hidden_act: str) -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_act=hidden_act,
                        initializer_range=0.3)  # large enough that the feed-forward block shows
    return BertModel(config).eval()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_model_gives_the_same_hidden_states(dtype):
    model = tiny_bert("gelu").to(dtype)
    ids = torch.randint(1, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        assert fuse_feed_forward_gelu(model) == 2
        after = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    assert all(isinstance(layer.intermediate, LinearGelu) for layer in model.encoder.layer)
    cosine = torch.nn.functional.cosine_similarity(before, after, dim=-1)
    assert cosine.min() > (0.999 if dtype == torch.bfloat16 else 0.99999)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_block_is_exact_gelu_of_the_linear_layer(dtype):
    block = tiny_bert("gelu").encoder.layer[0].intermediate.to(dtype)
    x = torch.randn(50, 32, dtype=dtype)
    with torch.inference_mode():
        expected = torch.nn.functional.gelu(block.dense(x).float())
        got = LinearGelu(block.dense)(x).float()
    tolerance = 0.02 if dtype == torch.bfloat16 else 1e-5
    assert (got - expected).abs().max() <= tolerance * expected.abs().max()


@pytest.mark.parametrize("act", ["gelu_new", "relu", "gelu_python"])
def test_other_activations_are_left_alone(act):
    model = tiny_bert(act)
    assert fuse_feed_forward_gelu(model) == 0
    assert not any(isinstance(m, LinearGelu) for m in model.modules())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_without_the_kernel_the_model_runs_unfused_and_unchanged(dtype, monkeypatch):
    """A CPU without the kernel (e.g. bf16 on AVX2-only): nothing is swapped and the
    model gives what it gave before."""
    monkeypatch.setitem(cpu_fusion._probed, dtype, False)
    model = tiny_bert("gelu").to(dtype)
    ids = torch.randint(0, 100, (3, 7))
    with torch.no_grad():
        before = model(input_ids=ids).last_hidden_state
        assert fuse_feed_forward_gelu(model) == 0
        after = model(input_ids=ids).last_hidden_state
    assert not any(isinstance(m, LinearGelu) for m in model.modules())
    assert torch.equal(before, after)


def test_the_probe_says_no_when_the_kernel_raises(monkeypatch):
    def no_kernel(*args):
        raise RuntimeError("could not create a primitive descriptor for the inner product forward propagation primitive")

    monkeypatch.setattr(cpu_fusion, "_probed", {})
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", no_kernel)
    assert not fused_linear_gelu_available(torch.bfloat16)
