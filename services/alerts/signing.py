"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Every delivery carries three headers:

- ``webhook-id``: the alert event's id, the same on every retry and
  redelivery, so receivers can drop duplicates;
- ``webhook-timestamp``: Unix seconds of this attempt, so receivers can refuse
  replays outside a tolerance (5 minutes by default);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``,
  one per secret, space-separated. During a secret rotation the operator lists
  the new and the old secret, and a receiver that knows either one verifies.

Secrets use the ``whsec_<base64 key>`` form (the prefix may be left out, as in
the reference libraries); the HMAC key is the decoded bytes, never the text.
Nothing here ever puts a secret into an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from typing import Mapping, Sequence

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
# The spec recommends keys of 24 to 64 bytes; shorter keys are weak, longer
# ones only suggest that something other than a key was pasted.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
DEFAULT_TOLERANCE_S = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class SecretError(ValueError):
    """A webhook secret that cannot be used; the message says how to fix it."""


class SignatureError(ValueError):
    """A webhook whose signature headers do not verify."""


def generate_secret(nbytes: int = 32) -> str:
    """A fresh random secret in ``whsec_`` form (for operators and tests)."""
    if not MIN_KEY_BYTES <= nbytes <= MAX_KEY_BYTES:
        raise ValueError(f"nbytes must be between {MIN_KEY_BYTES} and {MAX_KEY_BYTES}")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret.

    The prefix may be left out, as the reference libraries allow (Svix and others
    hand out bare base64 keys); the key length check still keeps a pasted password
    or a typo from being taken for a key. Raises :class:`SecretError` naming what
    is wrong (without echoing the secret).
    """
    how = (f"a webhook secret is {SECRET_PREFIX!r} followed by base64; generate one with: "
           f"python -c \"import base64,os; print('whsec_'+base64.b64encode(os.urandom(32)).decode())\"")
    if not isinstance(secret, str) or not secret:
        raise SecretError(f"the webhook secret is empty; {how}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Accept unpadded base64 too: some generators drop the '='.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"the secret is not valid base64; {how}") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise SecretError(f"a webhook secret must decode to {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, "
                          f"this one has {len(key)}; generate a 32-byte one")
    return key


def parse_secrets(env_value: str | None, *, env_name: str | None = None) -> list[str]:
    """Split an environment value of comma-separated ``whsec_`` secrets.

    Several secrets mean a rotation in progress: deliveries are signed with each.
    ``env_name`` only makes the error message point at the right variable.
    """
    where = f"environment variable {env_name}" if env_name else "the webhook secret setting"
    items = [s.strip() for s in (env_value or "").split(",")]
    items = [s for s in items if s]
    if not items:
        raise SecretError(f"{where} is empty or unset; set it to a whsec_ secret "
                          f"(several, comma-separated, while rotating)")
    for i, s in enumerate(items, 1):
        try:
            secret_key(s)
        except SecretError as e:
            raise SecretError(f"{where}, secret #{i} of {len(items)}: {e}") from None
    # Keep order (the first is the newest by convention) but drop repeats.
    return list(dict.fromkeys(items))


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    # A time before 1970 is a bug upstream (a clock or a unit mix-up), and a
    # receiver would refuse it as stale anyway: fail loudly where it happens.
    if int(timestamp) < 0:
        raise ValueError(f"webhook timestamp must be Unix seconds >= 0, not {int(timestamp)}")
    return f"{msg_id}.{int(timestamp)}.".encode() + body


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 signature>`` of one message under one secret."""
    mac = hmac.new(secret_key(secret), _signed_content(msg_id, timestamp, body), hashlib.sha256)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac.digest()).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    if not secrets:
        raise SecretError("no webhook secret to sign with")
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def webhook_headers(msg_id: str, timestamp: int, body: bytes,
                    secrets: Sequence[str] | None) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt.

    Without secrets the id and timestamp are still sent (receivers can dedupe),
    but no signature.
    """
    headers = {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(int(timestamp))}
    if secrets:
        headers[HEADER_SIGNATURE] = signature_header(secrets, msg_id, timestamp, body)
    return headers


def verify(secrets: Sequence[str], headers: Mapping[str, str], body: bytes, *,
           tolerance: int = DEFAULT_TOLERANCE_S, now: float | None = None) -> None:
    """Check a delivery the way a receiver would; raise :class:`SignatureError` if it fails.

    Passes when any ``v1`` signature in the header matches any of ``secrets``
    and the timestamp is within ``tolerance`` seconds of ``now``.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    missing = [h for h in (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE) if not lower.get(h)]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    msg_id = lower[HEADER_ID]
    try:
        timestamp = int(lower[HEADER_TIMESTAMP])
    except ValueError:
        raise SignatureError(f"{HEADER_TIMESTAMP} is not whole Unix seconds") from None
    now = time.time() if now is None else now
    if timestamp < now - tolerance:
        raise SignatureError(f"{HEADER_TIMESTAMP} is more than {tolerance}s old (possible replay)")
    if timestamp > now + tolerance:
        raise SignatureError(f"{HEADER_TIMESTAMP} is more than {tolerance}s in the future")
    content = _signed_content(msg_id, timestamp, body)
    expected = [hmac.new(secret_key(s), content, hashlib.sha256).digest() for s in secrets]
    for item in lower[HEADER_SIGNATURE].split(" "):
        version, _, encoded = item.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(given, e) for e in expected):
            return
    raise SignatureError("no signature matches any of the configured secrets")
