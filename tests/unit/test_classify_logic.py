import io
import json

import numpy as np
import pytest

from lyssna.classify import batch
from lyssna.classify.training.dataset import load_examples, source_of, split_of
from lyssna.classify.heads import Heads
from lyssna.classify.training.fit import tune_threshold
from lyssna.common.contracts import LABELS


def test_split_is_a_pure_function_of_the_id():
    assert split_of("sv-0001") == split_of("sv-0001")
    counts = {s: 0 for s in ("train", "validation", "test")}
    for i in range(10_000):
        counts[split_of(f"x-{i}")] += 1
    assert 1800 < counts["test"] < 2200 and 800 < counts["validation"] < 1200


def test_training_data_meets_the_brief():
    ex = load_examples()
    # The brief counts posts: a translation is its source post again, in another language.
    posts = [e for e in ex if not e.is_translation]
    assert len(posts) >= 4000
    assert sum(e.lang == "sv" for e in posts) / len(posts) >= 0.40
    for label in LABELS:
        assert sum(label in e.topics for e in posts) >= 150, label
    assert sum(not e.topics for e in posts) / len(posts) >= 0.10
    assert sum(e.split == "test" for e in posts) >= 300


def test_tune_threshold_finds_the_separating_cut():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    t = tune_threshold(scores, y)
    assert 0.3 < t <= 0.7


def test_heads_roundtrip_and_predict(tmp_path):
    rng = np.random.default_rng(0)
    h = Heads(version="v-test", encoder="enc", layers=(12,),
              topic_weights=rng.normal(size=(6, 4)).astype(np.float32), topic_bias=np.zeros(6, np.float32),
              thresholds=np.full(6, 0.5, np.float32),
              sentiment_weights=rng.normal(size=(3, 4)).astype(np.float32), sentiment_bias=np.zeros(3, np.float32))
    h.save(tmp_path)
    loaded = Heads.load(tmp_path)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    a, b = h.predict(x), loaded.predict(x)
    assert [p.topics for p in a] == [p.topics for p in b]
    for p in a:
        assert set(p.topic_scores) == set(LABELS)
        assert abs(sum(p.sentiment_scores.values()) - 1) < 1e-3
        assert all((p.topic_scores[t] >= 0.5) for t in p.topics)


def test_heads_load_tells_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="lyssna train"):
        Heads.load(tmp_path)


@pytest.mark.parametrize("line,error", [
    ("{not json", "invalid JSON at column 2"),
    ("[1, 2]", "expected a JSON object"),
    ('{"text": "hej"}', "missing id"),
    ('{"id": "a"}', "missing text"),
    ('{"id": "a", "text": "   "}', "non-empty string"),
])
def test_parse_line_errors(line, error):
    result = batch.parse_line(7, line)
    assert isinstance(result, dict) and result["line"] == 7 and error in result["error"]


class _FakeClassifier:
    """Stands in for the transformer: pure logic of the batch command only."""

    def classify_texts(self, texts):
        from lyssna.classify.classifier import Result
        return [Result("sv", [], [], {}, "neutral", {}) for _ in texts]


def test_classify_stream_keeps_one_output_line_per_input_line():
    lines = ['{"id": "1", "text": "hej"}', "oops", '{"id": "3", "text": "hallå", "extra": 1}']
    out = io.StringIO()
    stats = batch.classify_stream(_FakeClassifier(), lines, out)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r.get("id") for r in rows] == ["1", None, "3"]
    assert rows[1]["line"] == 2 and "error" in rows[1]
    assert stats == {"lines": 3, "classified": 2, "errors": 1}


def test_classify_stream_writes_every_field_the_service_would():
    # The CLI is how users check a watchlist: it must say why a named org did not count.
    from lyssna.classify.classifier import Result

    class Deciding:
        def classify_texts(self, texts):
            return [Result("sv", ["Pluto Logistik"], ["recruitment"], {"recruitment": 0.9}, "positive",
                           {"positive": 0.8}, org_relevance={"Pluto Logistik": 0.91, "Pluto": 0.08},
                           rejected_orgs={"Pluto": "not about the organization"}) for _ in texts]

    out = io.StringIO()
    batch.classify_stream(Deciding(), ['{"id": "1", "text": "Pluto Logistik anställer"}'], out)
    row = json.loads(out.getvalue())
    assert row["org_relevance"] == {"Pluto Logistik": 0.91, "Pluto": 0.08}
    assert row["rejected_orgs"] == {"Pluto": "not about the organization"}
    assert row["skipped"] is None and row["orgs"] == ["Pluto Logistik"]


def test_a_translation_is_in_its_source_posts_split():
    for i in range(2_000):
        assert split_of(f"sv-{i}~fi") == split_of(f"sv-{i}")
    assert (source_of("sv-1~fi"), source_of("sv-1")) == ("sv-1", "sv-1")


def test_a_bad_label_is_named_with_its_file_and_line(tmp_path):
    good = {"id": "sv-1", "lang": "sv", "text": "Bra chef på Acme.", "topics": ["employee_satisfaction"],
            "sentiment": "positive", "orgs": ["Acme"]}
    (tmp_path / "posts.a.jsonl").write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "id": "sv-2", "topics": ["pay"]}))
    with pytest.raises(ValueError, match=r"posts\.a\.jsonl:3: bad labels \{'pay'\}"):
        load_examples(tmp_path)


def _write_posts(folder, rows):
    (folder / "posts.a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))


def test_a_translation_must_carry_its_source_posts_labels(tmp_path):
    source = {"id": "sv-1", "lang": "sv", "text": "Usel ledning på Acme.", "topics": ["employee_satisfaction"],
              "sentiment": "negative", "orgs": ["Acme"]}
    same = {**source, "id": "sv-1~fi", "lang": "fi", "text": "Surkea johto Acmella."}
    _write_posts(tmp_path, [source, same])
    assert [(e.id, e.is_translation) for e in load_examples(tmp_path)] == [("sv-1", False), ("sv-1~fi", True)]
    for bad, why in [({**same, "sentiment": "neutral"}, "labels differ from its source sv-1"),
                     ({**same, "id": "sv-2~fi"}, "must be <source id>~<its language>"),
                     ({**same, "lang": "da"}, "must be <source id>~<its language>")]:
        _write_posts(tmp_path, [source, bad])
        with pytest.raises(ValueError, match=why):
            load_examples(tmp_path)
