"""Sample posts in webhook bodies: per webhook ``samples: text | link | none``, with
@handles and e-mail addresses masked by default."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from lyssna.alerts.payloads import FORMATS, mask_personal, render, sample_policy
from lyssna.common.config import WebhookConfig
from lyssna.common.contracts import AlertEvent, SamplePost

T0 = datetime(2025, 3, 1, 10, 0, tzinfo=timezone.utc)
T1 = datetime(2025, 3, 1, 11, 0, tzinfo=timezone.utc)
PERSONAL = ("Mejla åsa.öberg@nordvik.se eller skriv till @Karin_Ek@mastodon.social "
            "och @lena.bsky.social. Nordvik Energi har dålig arbetsmiljö!")
SAMPLES = [SamplePost(id="p1", url="https://social.example/posts/1", text=PERSONAL),
           SamplePost(id="p2", url=None, text="Ingen länk här, @bertil")]


def event(**kw) -> AlertEvent:
    return AlertEvent(event_id="evt_1", alert_id="alr_1", state="firing", rule="r", org="Nordvik Energi",
                      window_start=T0, window_end=T1, count=7, authors=4, samples=SAMPLES, **kw)


@pytest.mark.parametrize("text, masked", [
    (PERSONAL, "Mejla [e-mail] eller skriv till @… och @…. Nordvik Energi har dålig arbetsmiljö!"),
    ("hej @Åsa_Ö!", "hej @…!"),
    ("a.b+tag@sub.example.co.uk, (@x)", "[e-mail], (@…)"),
    ("no handles, no @ addresses", "no handles, no @ addresses"),
    ("", ""),
])
def test_handles_and_addresses_are_masked_and_the_rest_kept(text, masked):
    assert mask_personal(text) == masked


def test_masking_is_linear_on_hostile_text():
    # Thousands of near-addresses: a backtracking engine would go quadratic; RE2 does not.
    hostile = "a." * 50_000 + "@" + "b-" * 50_000
    assert mask_personal(hostile) == "a." * 50_000 + "@…-"  # no domain dot: a handle, not an address


def test_policy_text_link_none():
    assert [s.text for s in sample_policy(SAMPLES, "text", True)] == [mask_personal(PERSONAL),
                                                                       "Ingen länk här, @…"]
    assert [s.text for s in sample_policy(SAMPLES, "text", False)] == [PERSONAL, SAMPLES[1].text]
    assert sample_policy(SAMPLES, "link", True) == [SamplePost(id="p1", url=SAMPLES[0].url, text="")]
    assert sample_policy(SAMPLES, "none", True) == []


def test_webhook_settings_default_to_masked_text():
    hook = WebhookConfig(name="h", url="https://hooks.example/x")
    assert (hook.samples, hook.mask_samples) == ("text", True)
    with pytest.raises(ValueError):
        WebhookConfig(name="h", url="https://hooks.example/x", samples="full")


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_format_carries_a_handle_or_address_by_default(fmt):
    raw = render(fmt, event())[0].decode()
    for personal in ("åsa.öberg", "nordvik.se", "Karin_Ek", "lena.bsky", "bertil"):
        assert personal not in raw
    unmasked = render(fmt, event(), mask_samples=False)[0].decode()
    if fmt != "alertmanager":  # it carries no samples at all
        assert "Karin_Ek" in unmasked


@pytest.mark.parametrize("fmt", FORMATS)
def test_link_and_none_carry_no_sample_text(fmt):
    for mode in ("link", "none"):
        raw = render(fmt, event(), samples=mode)[0].decode()
        assert "arbetsmiljö" not in raw and "Ingen länk" not in raw
    assert ("social.example/posts/1" in render(fmt, event(), samples="link")[0].decode()) == (fmt != "alertmanager")
    assert "social.example/posts/1" not in render(fmt, event(), samples="none")[0].decode()


def test_json_samples_by_mode_and_distinct_authors():
    def samples(**kw):
        return json.loads(render("json", event(), **kw)[0])["samples"]
    assert samples() == [{"id": "p1", "url": SAMPLES[0].url, "text": mask_personal(PERSONAL)},
                         {"id": "p2", "url": None, "text": "Ingen länk här, @…"}]
    assert samples(samples="link") == [{"id": "p1", "url": SAMPLES[0].url}]
    assert samples(samples="none") == []
    doc = json.loads(render("json", event())[0])
    assert doc["authors"] == 4
