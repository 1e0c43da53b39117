"""Standard Webhooks signing, checked against the reference library from PyPI."""

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from lyssna.alerts import signing
from lyssna.alerts.signing import (
    SecretError, SignatureError, generate_secret, parse_secrets, sign, signature_header,
    verify, webhook_headers,
)

SECRET_A = "whsec_" + base64.b64encode(b"A" * 32).decode()
SECRET_B = "whsec_" + base64.b64encode(b"B" * 32).decode()


def test_signature_is_hmac_of_id_timestamp_body_with_decoded_key():
    body = b'{"a":1}'
    expected = base64.b64encode(hmac.new(b"A" * 32, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest())
    assert sign(SECRET_A, "msg_1", 1700000000, body) == "v1," + expected.decode()


def test_reference_library_verifies_our_headers():
    body = json.dumps({"type": "alert.firing", "organization": "Acme Robotics", "text": "åäö ✓"}).encode()
    now = int(time.time())
    headers = webhook_headers("evt_123", now, body, [SECRET_A])
    assert Webhook(SECRET_A).verify(body, headers) == json.loads(body)


def test_reference_library_verifies_each_secret_during_rotation():
    body = b'{"type":"alert.resolved"}'
    headers = webhook_headers("evt_rot", int(time.time()), body, [SECRET_B, SECRET_A])
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver still on the old secret and one already on the new one both accept it.
    Webhook(SECRET_A).verify(body, headers)
    Webhook(SECRET_B).verify(body, headers)
    other = generate_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_reference_library_rejects_tampered_body_and_id():
    body = b'{"count":5}'
    headers = webhook_headers("evt_1", int(time.time()), body, [SECRET_A])
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(b'{"count":6}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(body, {**headers, "webhook-id": "evt_2"})


def test_our_verify_accepts_reference_library_signatures():
    body = b'{"x":"y"}'
    ts = int(time.time())
    ref_sig = Webhook(SECRET_A).sign("msg_9", datetime.fromtimestamp(ts, tz=timezone.utc), body.decode())
    verify([SECRET_A], {"Webhook-Id": "msg_9", "Webhook-Timestamp": str(ts), "Webhook-Signature": ref_sig}, body)


@settings(max_examples=50, deadline=None)
@given(body=st.text(max_size=300), msg_id=st.text(alphabet=st.characters(
    whitelist_categories=("Ll", "Lu", "Nd"), max_codepoint=127), min_size=1, max_size=40))
def test_any_body_verifies_with_reference_and_ours(body, msg_id):
    data = body.encode()
    now = int(time.time())
    headers = webhook_headers(msg_id, now, data, [SECRET_A, SECRET_B])
    verify([SECRET_B], headers, data, now=now)
    Webhook(SECRET_A).verify(data, headers, json_parse=False)


def test_verify_errors_are_specific():
    body = b"{}"
    h = webhook_headers("m", 1000, body, [SECRET_A])
    verify([SECRET_A], h, body, now=1000)
    with pytest.raises(SignatureError, match="missing header"):
        verify([SECRET_A], {"webhook-id": "m"}, body, now=1000)
    with pytest.raises(SignatureError, match="old"):
        verify([SECRET_A], h, body, now=1000 + 301)
    with pytest.raises(SignatureError, match="future"):
        verify([SECRET_A], h, body, now=1000 - 301)
    with pytest.raises(SignatureError, match="no signature matches"):
        verify([SECRET_B], h, body, now=1000)
    with pytest.raises(SignatureError, match="whole Unix seconds"):
        verify([SECRET_A], {**h, "webhook-timestamp": "soon"}, body, now=1000)
    # Unknown versions and garbage are skipped, not fatal, as long as one v1 matches.
    mixed = {**h, "webhook-signature": "v2,abc garbage v1,!!! " + h["webhook-signature"]}
    verify([SECRET_A], mixed, body, now=1000)


def test_headers_without_secret_carry_id_and_timestamp_only():
    assert webhook_headers("m", 5, b"", None) == {"webhook-id": "m", "webhook-timestamp": "5"}
    with pytest.raises(SecretError):
        signature_header([], "m", 5, b"")


def test_parse_secrets_rotation_and_messages():
    assert parse_secrets(f" {SECRET_A} ,{SECRET_B},{SECRET_A}") == [SECRET_A, SECRET_B]
    with pytest.raises(SecretError, match="HR_SLACK_SECRET is empty"):
        parse_secrets("  ", env_name="HR_SLACK_SECRET")
    with pytest.raises(SecretError, match="secret #2 of 2: .*not valid base64.*'whsec_' followed by base64"):
        parse_secrets(f"{SECRET_A},plain-text", env_name="X")
    with pytest.raises(SecretError, match="not valid base64"):
        parse_secrets("whsec_###")
    # A word that happens to be base64 is still refused: it is far too short for a key.
    with pytest.raises(SecretError, match="this one has 6"):
        parse_secrets("password")
    short = "whsec_" + base64.b64encode(b"k" * 8).decode()
    with pytest.raises(SecretError, match="24..64 bytes, this one has 8") as e:
        parse_secrets(short)
    # The message explains; it never repeats the secret.
    assert short not in str(e.value) and short[6:] not in str(e.value)


def test_unpadded_base64_secret_is_accepted_like_the_reference():
    key = b"Z" * 25  # 25 bytes -> base64 with one '=' of padding
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert signing.secret_key(unpadded) == key
    body = b"{}"
    headers = webhook_headers("m", int(time.time()), body, [unpadded])
    Webhook(unpadded).verify(body, headers)


def test_secret_without_prefix_is_the_same_key_as_the_reference_allows():
    bare = SECRET_A.removeprefix("whsec_")
    assert signing.secret_key(bare) == signing.secret_key(SECRET_A) == b"A" * 32
    body = b"{}"
    headers = webhook_headers("m", int(time.time()), body, [bare])
    Webhook(SECRET_A).verify(body, headers)


def test_generated_secrets_are_valid_and_distinct():
    a, b = generate_secret(), generate_secret()
    assert a != b and len(signing.secret_key(a)) == 32


def test_a_negative_timestamp_is_refused_when_signing():
    with pytest.raises(ValueError, match="Unix seconds"):
        sign(SECRET_A, "msg_1", -161426533, b"{}")
