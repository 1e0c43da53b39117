"""Webhook bodies against the shapes their receivers document.

The expected keys and types below are written from each receiver's docs:
- Slack incoming webhooks + Block Kit reference (section / context blocks,
  text objects, limits);
- Microsoft Teams "incoming webhooks with Workflows" (a message with an
  Adaptive Card attachment) and the Adaptive Cards 1.4 schema;
- Prometheus Alertmanager <webhook_config> (the version 4 body).
"""

import json
import re
from datetime import datetime, timezone

import pytest

from pydantic import ValidationError

from lyssna.alerts.payloads import (
    ALERTMANAGER_ZERO_TIME, FORMATS, RENDERERS, alertmanager_fingerprint, render, render_json, renderer,
    slack_escape,
)
from lyssna.common.config import WebhookConfig
from lyssna.common.contracts import AlertEvent, SamplePost

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=timezone.utc)
T1 = datetime(2025, 3, 1, 11, 0, tzinfo=timezone.utc)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def event(state="firing", **kw) -> AlertEvent:
    base = dict(
        event_id="evt_1", alert_id="alr_1", state=state, rule="negative-buzz", org="Acme & <Robotics>",
        topic="employee_satisfaction", sentiment="negative", lang="sv",
        window_start=T0, window_end=T1, count=23, threshold=20.0, value=23.0, baseline=None,
        samples=[SamplePost(id="p1", url="https://social.example/@a/1?x=1&y=2", text="<!channel> Acme är *hemskt* & dåligt"),
                 SamplePost(id="p2", url=None, text="x" * 1000)],
        occurred_at=datetime(2025, 3, 1, 10, 42, 7, tzinfo=timezone.utc),
    )
    base.update(kw)
    return AlertEvent(**base)


def body(fmt, ev, **kw):
    data, ctype = render(fmt, ev, **kw)
    assert ctype == "application/json"
    return json.loads(data)


def check_shape(obj, shape, path="$"):
    """``shape`` maps required keys to a type, a tuple of types, or a nested shape."""
    assert isinstance(obj, dict), f"{path} is not an object"
    for key, want in shape.items():
        assert key in obj, f"{path}.{key} missing"
        if isinstance(want, dict):
            check_shape(obj[key], want, f"{path}.{key}")
        else:
            assert isinstance(obj[key], want), f"{path}.{key} is {type(obj[key]).__name__}"


# ---------------------------------------------------------------- json

JSON_KEYS = {"schema", "type", "alert_id", "event_id", "rule", "organization", "topic", "sentiment", "lang",
             "window", "count", "authors", "threshold", "baseline", "value", "samples", "occurred_at", "url"}


@pytest.mark.parametrize("state,typ", [("firing", "alert.firing"), ("resolved", "alert.resolved")])
def test_json_payload(state, typ):
    doc = body("json", event(state), base_url="https://lyssna.example/")
    assert set(doc) == JSON_KEYS
    assert doc["schema"] == "lyssna.webhook.v1" and doc["type"] == typ
    assert doc["organization"] == "Acme & <Robotics>"  # JSON needs no escaping beyond JSON's own
    assert doc["window"] == {"start": "2025-03-01T10:00:00Z", "end": "2025-03-01T11:00:00Z"}
    assert doc["occurred_at"] == "2025-03-01T10:42:07Z"
    assert (doc["count"], doc["threshold"], doc["value"], doc["baseline"]) == (23, 20.0, 23.0, None)
    assert doc["topic"] == "employee_satisfaction" and doc["sentiment"] == "negative" and doc["lang"] == "sv"
    assert [set(s) for s in doc["samples"]] == [{"id", "url", "text"}] * 2
    assert doc["samples"][0]["url"] == "https://social.example/@a/1?x=1&y=2"
    assert len(doc["samples"][1]["text"]) <= 280
    assert doc["url"] == "https://lyssna.example/v1/alerts/alr_1"


def test_rendering_is_deterministic_for_retries():
    for fmt in FORMATS:
        assert render(fmt, event())[0] == render(fmt, event())[0]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="use one of json, slack, teams, alertmanager"):
        render("xml", event())


def test_the_config_accepts_exactly_the_formats_that_have_a_renderer():
    assert FORMATS == tuple(RENDERERS)
    for fmt in FORMATS:
        assert WebhookConfig(name="h", url="https://hooks.example.com/x", format=fmt).format == fmt
    with pytest.raises(ValidationError) as err:
        WebhookConfig(name="h", url="https://hooks.example.com/x", format="xml")
    assert all(repr(fmt) in str(err.value) for fmt in FORMATS)  # the error lists what is accepted


def test_a_renderer_needs_a_format_name_the_config_knows_and_one_of_its_own():
    with pytest.raises(ValueError, match="add it there so that the config accepts it"):
        renderer("xml")
    with pytest.raises(ValueError, match="has two renderers"):
        renderer("json")(render_json)
    assert RENDERERS["json"] is render_json


# ---------------------------------------------------------------- slack

def test_slack_shape():
    doc = body("slack", event(), base_url="https://lyssna.example")
    check_shape(doc, {"text": str, "blocks": list})
    assert doc["text"] and 1 <= len(doc["blocks"]) <= 50
    types = [b["type"] for b in doc["blocks"]]
    assert types[0] == "section" and types[-1] == "context"
    for b in doc["blocks"]:
        if b["type"] == "section":
            check_shape(b, {"text": {"type": str, "text": str}})
            assert b["text"]["type"] in ("mrkdwn", "plain_text")
            assert 1 <= len(b["text"]["text"]) <= 3000
        else:
            assert b["type"] == "context"
            assert 1 <= len(b["elements"]) <= 10
            for el in b["elements"]:
                assert el["type"] in ("mrkdwn", "plain_text", "image")
                assert isinstance(el["text"], str)


def test_slack_escapes_control_characters_in_user_text():
    doc = body("slack", event())
    everything = json.dumps(doc)
    # A post cannot ping the channel or inject a link: only escaped forms remain.
    assert "<!channel>" not in everything
    assert "&lt;!channel&gt;" in everything
    assert "Acme &amp; &lt;Robotics&gt;" in doc["text"]
    assert slack_escape("a&b<c>d") == "a&amp;b&lt;c&gt;d"


def test_slack_links_escape_their_url():
    doc = body("slack", event(), base_url="https://lyssna.example")
    texts = [b["text"]["text"] for b in doc["blocks"] if b["type"] == "section"]
    assert "<https://lyssna.example/v1/alerts/alr_1|" in texts[0]
    assert "<https://social.example/@a/1?x=1&amp;y=2|open post>" in texts[1]


# ---------------------------------------------------------------- teams

ADAPTIVE_ELEMENT_REQUIRED = {"TextBlock": {"text": str}, "FactSet": {"facts": list}}


@pytest.mark.parametrize("state,color", [("firing", "Attention"), ("resolved", "Good")])
def test_teams_shape(state, color):
    doc = body("teams", event(state), base_url="https://lyssna.example")
    check_shape(doc, {"type": str, "attachments": list})
    assert doc["type"] == "message" and len(doc["attachments"]) == 1
    att = doc["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = att["content"]
    check_shape(card, {"$schema": str, "type": str, "version": str, "body": list})
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    for el in card["body"]:
        assert el["type"] in ADAPTIVE_ELEMENT_REQUIRED, el["type"]
        check_shape(el, ADAPTIVE_ELEMENT_REQUIRED[el["type"]])
        if el["type"] == "FactSet":
            for fact in el["facts"]:
                check_shape(fact, {"title": str, "value": str})
        for k, allowed in (("color", {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}),
                           ("size", {"Default", "Small", "Medium", "Large", "ExtraLarge"}),
                           ("weight", {"Default", "Lighter", "Bolder"})):
            if k in el:
                assert el[k] in allowed
    assert card["body"][0]["color"] == color
    for action in card.get("actions", []):
        assert action["type"] == "Action.OpenUrl"
        check_shape(action, {"title": str, "url": str})
        assert action["url"].startswith("https://")
    urls = [a["url"] for a in card["actions"]]
    assert urls == ["https://lyssna.example/v1/alerts/alr_1", "https://social.example/@a/1?x=1&y=2"]


def test_teams_without_links_has_no_empty_actions():
    card = body("teams", event(samples=[]))["attachments"][0]["content"]
    assert "actions" not in card


# ---------------------------------------------------------------- alertmanager

AM_BODY = {"version": str, "groupKey": str, "truncatedAlerts": int, "status": str, "receiver": str,
           "groupLabels": dict, "commonLabels": dict, "commonAnnotations": dict, "externalURL": str,
           "alerts": list}
AM_ALERT = {"status": str, "labels": dict, "annotations": dict, "startsAt": str, "endsAt": str,
            "generatorURL": str, "fingerprint": str}


@pytest.mark.parametrize("state", ["firing", "resolved"])
def test_alertmanager_v4_shape(state):
    doc = body("alertmanager", event(state), base_url="https://lyssna.example", receiver="hr-pager")
    check_shape(doc, AM_BODY)
    assert doc["version"] == "4" and doc["status"] == state and doc["receiver"] == "hr-pager"
    assert doc["truncatedAlerts"] == 0 and doc["externalURL"] == "https://lyssna.example"
    assert len(doc["alerts"]) == 1
    alert = doc["alerts"][0]
    check_shape(alert, AM_ALERT)
    assert alert["status"] == state
    # Labels and annotations are string -> string maps in Alertmanager.
    for m in (alert["labels"], alert["annotations"], doc["groupLabels"], doc["commonLabels"],
              doc["commonAnnotations"]):
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in m.items())
    assert alert["labels"] == {"alertname": "negative-buzz", "org": "Acme & <Robotics>", "source": "lyssna",
                               "topic": "employee_satisfaction", "sentiment": "negative", "lang": "sv"}
    check_shape(alert["annotations"], {"summary": str, "description": str})
    assert RFC3339.match(alert["startsAt"])
    if state == "firing":
        assert alert["endsAt"] == ALERTMANAGER_ZERO_TIME
    else:
        assert RFC3339.match(alert["endsAt"]) and alert["endsAt"] > alert["startsAt"]
    assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
    assert alert["generatorURL"] == "https://lyssna.example/v1/alerts/alr_1"
    assert doc["groupKey"] == '{}:{alertname="negative-buzz", org="Acme & <Robotics>"}'
    assert doc["commonLabels"] == alert["labels"]


def test_alertmanager_omits_absent_labels_and_keeps_fingerprint_across_states():
    firing = body("alertmanager", event("firing", topic=None, sentiment=None, lang=None))
    resolved = body("alertmanager", event("resolved", topic=None, sentiment=None, lang=None))
    assert set(firing["alerts"][0]["labels"]) == {"alertname", "org", "source"}
    # Receivers pair a resolution with its firing by fingerprint.
    assert firing["alerts"][0]["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    assert firing["externalURL"] == "" and firing["alerts"][0]["generatorURL"] == ""


def test_alertmanager_fingerprint_matches_prometheus_reference_values():
    # Values from prometheus/common model/signature_test.go.
    assert int(alertmanager_fingerprint({}), 16) == 14695981039346656037
    assert int(alertmanager_fingerprint({"name": "garland, briggs", "fear": "love is not enough"}), 16) \
        == 5799056148416392346
