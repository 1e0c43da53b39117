"""Author pseudonyms: a keyed hash of the handle, so Lyssna can tell authors apart
(distinct authors per window, erasure on request) without ever storing who they are.

A plain hash would not do: handles are few and guessable, so anyone holding a
record could hash a list of staff handles and find theirs. HMAC-SHA256 with a
secret that lives only in the environment (``LYSSNA_AUTHOR_KEY``) makes the
pseudonym meaningless without the key, and the same handle always gets the same
pseudonym under the same key.

Keys rotate: ``LYSSNA_AUTHOR_KEY`` holds ``id:secret`` pairs, comma-separated;
the first signs new posts, the others are kept so that erasure (``lyssna
forget --author``) still finds what older keys signed. Each post carries the id
of the key that signed its author (``Post.author_key_id``) beside the pseudonym.

Pure: no I/O; the environment is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Mapping

AUTHOR_KEY_VAR = "LYSSNA_AUTHOR_KEY"
PSEUDONYM_PREFIX = "anon-"
MIN_SECRET_CHARS = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_PSEUDONYM = re.compile(re.escape(PSEUDONYM_PREFIX) + r"[0-9a-f]{32}")
_FIX = (f"Fix: set {AUTHOR_KEY_VAR}=k1:<secret of at least {MIN_SECRET_CHARS} characters>, e.g. "
        f"{AUTHOR_KEY_VAR}=k1:$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))'); "
        f"while rotating list the new key first: k2:<new>,k1:<old>")


class AuthorKeyError(ValueError):
    """``LYSSNA_AUTHOR_KEY`` is missing or malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class AuthorKey:
    id: str
    secret: bytes = field(repr=False)


def parse_author_keys(value: str | None, var: str = AUTHOR_KEY_VAR) -> list[AuthorKey]:
    """``"k2:secret,k1:older"`` as keys, the signing one first. Never echoes a secret."""
    if not value or not value.strip():
        raise AuthorKeyError(f"{var} is not set, and privacy.authors is 'pseudonymous' (the default): "
                             f"ingest needs a key to replace author handles by pseudonyms. {_FIX}; "
                             f"or set privacy.authors: keep in the config file to store handles as they are")
    keys: list[AuthorKey] = []
    for n, part in enumerate(value.split(","), 1):
        key_id, sep, secret = part.strip().partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise AuthorKeyError(f"{var}: entry {n} is not 'id:secret' with an id of 1-32 characters "
                                 f"A-Z, a-z, 0-9, '_', '.' or '-'. {_FIX}")
        if len(secret) < MIN_SECRET_CHARS:
            raise AuthorKeyError(f"{var}: the secret of key {key_id!r} has {len(secret)} characters, "
                                 f"fewer than {MIN_SECRET_CHARS}. {_FIX}")
        if any(k.id == key_id for k in keys):
            raise AuthorKeyError(f"{var}: key id {key_id!r} appears twice; give each key its own id. {_FIX}")
        keys.append(AuthorKey(key_id, secret.encode("utf-8")))
    return keys


def canonical_handle(handle: str) -> str:
    """The form that is hashed: ``@Anna``, ``anna`` and ``ANNA `` are one person on
    every source Lyssna reads (handles there are case-insensitive)."""
    return unicodedata.normalize("NFKC", handle).strip().lstrip("@").casefold()


def pseudonym(handle: str, key: AuthorKey) -> str:
    """``anon-`` + 128 bits of HMAC-SHA256(key, canonical handle), in hex."""
    digest = hmac.new(key.secret, canonical_handle(handle).encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:32]


class Pseudonymizer:
    """Signs with the first key; knows every key's pseudonym of a handle (for erasure)."""

    def __init__(self, keys: list[AuthorKey]):
        if not keys:
            raise AuthorKeyError(f"{AUTHOR_KEY_VAR}: no keys. {_FIX}")
        self.keys = list(keys)

    @property
    def key_id(self) -> str:
        return self.keys[0].id

    def __call__(self, handle: str) -> str:
        return pseudonym(handle, self.keys[0])

    def known_key(self, key_id: object) -> str | None:
        """``key_id`` when it names one of these keys, else None."""
        return key_id if isinstance(key_id, str) and any(k.id == key_id for k in self.keys) else None

    def every_pseudonym(self, handle: str) -> dict[str, str]:
        """Key id -> the pseudonym that key gives ``handle``: what to look for when erasing."""
        return {k.id: pseudonym(handle, k) for k in self.keys}

    def __repr__(self) -> str:  # never the secrets
        return f"Pseudonymizer(key_ids={[k.id for k in self.keys]!r})"


def is_pseudonym(value: str) -> bool:
    """Already a pseudonym (a replayed dump of posts): hashing it again would
    give the same person a second pseudonym."""
    return _PSEUDONYM.fullmatch(value) is not None


def author_pseudonymizer(authors_mode: str, env: Mapping[str, str]) -> Pseudonymizer | None:
    """The pseudonymizer for ``privacy.authors`` (None for ``keep``); raises
    :class:`AuthorKeyError` when pseudonymous mode has no usable key."""
    if authors_mode == "keep":
        return None
    return Pseudonymizer(parse_author_keys(env.get(AUTHOR_KEY_VAR)))
