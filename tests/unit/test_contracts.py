import json

import pytest
from pydantic import ValidationError

from lyssna.common.contracts import (
    AlertEvent, ClassifiedPost, DeadLetter, ModelInfo, Post, content_post_id,
)


def test_post_roundtrip_uses_wire_name_schema():
    p = Post(id="x1", source="http", text="Hej Acme!")
    wire = json.loads(p.to_bytes())
    assert wire["schema"] == "lyssna.post.v1"
    assert Post.from_bytes(p.to_bytes()) == p


def test_post_rejects_unknown_schema_and_blank_text():
    with pytest.raises(ValidationError):
        Post.model_validate({"schema": "lyssna.post.v9", "id": "a", "source": "s", "text": "t"})
    with pytest.raises(ValidationError):
        Post(id="a", source="s", text="   ")


def test_classified_post_extends_post():
    p = Post(id="x1", source="http", text="Acme anställer")
    c = ClassifiedPost(**p.model_dump(exclude={"schema_"}), lang="sv", orgs=["Acme Robotics"],
                       topics=["recruitment"], topic_scores={"recruitment": 0.9}, sentiment="positive",
                       sentiment_scores={"positive": 0.8, "neutral": 0.15, "negative": 0.05},
                       model=ModelInfo(encoder="e5", heads="h1"))
    wire = json.loads(c.to_bytes())
    assert wire["schema"] == "lyssna.classified.v1" and wire["topics"] == ["recruitment"]
    assert ClassifiedPost.from_bytes(c.to_bytes()) == c


def test_content_id_is_stable_and_content_sensitive():
    a = content_post_id("http", "anna", "hej")
    assert a == content_post_id("http", "anna", "hej")
    assert a != content_post_id("http", "anna", "hej!")
    assert a.startswith("sha256:")


def test_deadletter_keeps_undecodable_payload():
    d = DeadLetter.for_record(service="classify", topic="t", reason="bad json", value=b"\xff{")
    assert DeadLetter.from_bytes(d.to_bytes()).payload == "\ufffd{"


def test_alert_event_roundtrip():
    e = AlertEvent(event_id="e1", alert_id="a1", state="firing", rule="r", org="Acme",
                   window_start="2026-01-01T00:00:00Z", window_end="2026-01-01T01:00:00Z", count=3)
    assert AlertEvent.from_bytes(e.to_bytes()) == e
