"""When the int8 graph counts as built: for these layers, from these weights, by this export."""

import json

from lyssna.classify.onnx_int8 import EXPORT_VERSION, INT8_DIR, META_FILE, _is_feed_forward_output, \
    _source_stamp, int8_path, int8_ready


def fake_model(tmp_path, layers=(6, 9, 12)):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    int8_path(tmp_path).parent.mkdir()
    int8_path(tmp_path).write_bytes(b"graph")
    (tmp_path / INT8_DIR / META_FILE).write_text(json.dumps(
        {"layers": list(layers), "export_version": EXPORT_VERSION, "source": _source_stamp(tmp_path)}))
    return tmp_path


def test_a_graph_from_these_weights_and_layers_is_ready(tmp_path):
    assert int8_ready(fake_model(tmp_path), (6, 9, 12))


def test_other_layers_need_a_new_graph(tmp_path):
    assert not int8_ready(fake_model(tmp_path), (12,))


def test_new_weights_need_a_new_graph(tmp_path):
    model = fake_model(tmp_path)
    (model / "model.safetensors").write_bytes(b"tuned weights")
    assert not int8_ready(model, (6, 9, 12))


def test_missing_or_unreadable_metadata_means_not_built(tmp_path):
    model = fake_model(tmp_path)
    (model / INT8_DIR / META_FILE).write_text("{not json")
    assert not int8_ready(model, (6, 9, 12))
    assert not int8_ready(tmp_path / "nowhere", (6, 9, 12))


def test_only_feed_forward_outputs_stay_fp32():
    assert _is_feed_forward_output("/net/encoder/layer.3/output/dense/MatMul")
    assert not _is_feed_forward_output("/net/encoder/layer.3/attention/output/dense/MatMul")
    assert not _is_feed_forward_output("/net/encoder/layer.3/intermediate/dense/MatMul")
