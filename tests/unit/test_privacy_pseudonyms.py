"""Author pseudonyms (lyssna.common.pseudonyms) and where ingest applies them."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from lyssna.common.config import ConfigError, load_settings
from lyssna.common.contracts import Post
from lyssna.common.pseudonyms import (
    AUTHOR_KEY_VAR, AuthorKeyError, Pseudonymizer, author_pseudonymizer, parse_author_keys, pseudonym,
)
from lyssna.ingest.normalize import Normalized, from_post, normalize, pseudonymous

SECRET_1 = "s" * 32
SECRET_2 = "t" * 40
KEYS = parse_author_keys(f"k2:{SECRET_2},k1:{SECRET_1}")
AUTHORS = Pseudonymizer(KEYS)
HANDLE = "anna.svensson@mastodon.example"


def test_a_pseudonym_is_hmac_sha256_of_the_canonical_handle_with_the_first_key():
    expected = hmac.new(SECRET_2.encode(), HANDLE.encode(), hashlib.sha256).hexdigest()[:32]
    assert AUTHORS(HANDLE) == "anon-" + expected
    assert AUTHORS.key_id == "k2"


def test_one_person_one_pseudonym_other_people_and_other_keys_another():
    assert AUTHORS("@Anna.Svensson@Mastodon.example ") == AUTHORS(HANDLE)
    assert AUTHORS("anna.svenson@mastodon.example") != AUTHORS(HANDLE)
    every = AUTHORS.every_pseudonym(HANDLE)
    assert every == {"k2": pseudonym(HANDLE, KEYS[0]), "k1": pseudonym(HANDLE, KEYS[1])}
    assert every["k1"] != every["k2"]


@pytest.mark.parametrize("value, words", [
    (None, [AUTHOR_KEY_VAR, "is not set", "privacy.authors: keep"]),
    ("   ", [AUTHOR_KEY_VAR, "is not set"]),
    ("just-a-secret-without-an-id-0123456789", [AUTHOR_KEY_VAR, "entry 1", "id:secret"]),
    ("k1:short", [AUTHOR_KEY_VAR, "'k1'", "5 characters"]),
    (f"k1:{SECRET_1},k1:{SECRET_2}", ["appears twice"]),
    (f"k1:{SECRET_1},bad id:{SECRET_2}", ["entry 2"]),
])
def test_a_missing_or_malformed_key_names_the_variable_and_the_fix_never_the_secret(value, words):
    with pytest.raises(AuthorKeyError) as e:
        parse_author_keys(value)
    msg = str(e.value)
    for w in words:
        assert w in msg
    assert "Fix:" in msg
    for secret in (SECRET_1, SECRET_2):
        assert secret not in msg
    assert SECRET_2 not in repr(AUTHORS)


def test_keep_mode_needs_no_key_and_pseudonymous_mode_does():
    assert author_pseudonymizer("keep", {}) is None
    with pytest.raises(AuthorKeyError):
        author_pseudonymizer("pseudonymous", {})
    assert author_pseudonymizer("pseudonymous", {AUTHOR_KEY_VAR: f"k1:{SECRET_1}"}).key_id == "k1"


def test_privacy_authors_setting_defaults_to_pseudonymous_and_takes_keep(tmp_path):
    assert load_settings(None, env={}).privacy.authors == "pseudonymous"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("privacy:\n  authors: keep\n", encoding="utf-8")
    assert load_settings(cfg, env={}).privacy.authors == "keep"
    cfg.write_text("privacy:\n  authors: hashed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"privacy.authors"):
        load_settings(cfg, env={})


def test_ingest_refuses_to_start_without_a_key_in_pseudonymous_mode():
    from lyssna.ingest.app import build_state

    settings = load_settings(None, env={"LYSSNA_API_KEY": "k"})
    with pytest.raises(ConfigError, match=AUTHOR_KEY_VAR):
        build_state(settings, env={})
    keep = settings.model_copy(update={"privacy": settings.privacy.model_copy(update={"authors": "keep"})})
    assert build_state(keep, env={}).pipeline.authors is None
    assert build_state(settings, env={AUTHOR_KEY_VAR: f"k1:{SECRET_1}"}).pipeline.authors.key_id == "k1"


def test_a_pushed_post_carries_the_pseudonym_and_key_id_and_no_trace_of_the_handle():
    item = {"text": "Tredje helgen med övertid", "author": HANDLE,
            "metadata": {"boosted_by": "bertil@example.social", "tags": ["x"]}}
    n = normalize(item, default_source="http", authors=AUTHORS)
    assert isinstance(n, Normalized)
    assert n.post.author == AUTHORS(HANDLE) and n.post.author_key_id == "k2"
    assert n.post.metadata == {"boosted_by": AUTHORS("bertil@example.social"), "tags": ["x"]}
    raw = n.value.decode()
    assert "anna" not in raw.lower() and "bertil" not in raw.lower()
    # The content id is derived from the pseudonym, so it cannot be used to test guessed handles.
    assert n.post.id == normalize({**item, "author": "@ANNA.svensson@mastodon.example"},
                                  default_source="http", authors=AUTHORS).post.id
    assert n.post.id != normalize(item, default_source="http").post.id


def test_without_a_pseudonymizer_the_handle_is_kept_as_given():
    n = normalize({"text": "hej", "author": HANDLE}, default_source="http")
    assert n.post.author == HANDLE and n.post.author_key_id is None


def test_a_post_without_author_gets_no_key_id():
    n = normalize({"text": "hej", "author": "  "}, default_source="http", authors=AUTHORS)
    assert n.post.author is None and n.post.author_key_id is None


def test_a_connectors_post_is_pseudonymized_once():
    post = Post(id="mastodon:1", source="mastodon", text="hej", author=HANDLE,
                metadata={"boosted_by": "bertil"})
    once = pseudonymous(from_post(post), AUTHORS)
    assert once.post.author == AUTHORS(HANDLE) and once.post.author_key_id == "k2"
    assert json.loads(once.value)["author"] == AUTHORS(HANDLE)
    assert HANDLE not in once.value.decode()
    assert pseudonymous(once, AUTHORS) is once  # signed posts are not signed again
    assert pseudonymous(from_post(post), None).post.author == HANDLE


def test_a_replayed_dump_of_pseudonymous_posts_keeps_its_pseudonyms():
    first = normalize({"text": "hej", "author": HANDLE}, default_source="file", authors=AUTHORS).post
    again = normalize(json.loads(first.to_bytes()), default_source="file", authors=AUTHORS)
    assert (again.post.author, again.post.author_key_id) == (first.author, "k2")
    assert again.ignored_fields == ()
    # A client cannot smuggle a handle past the hash by naming a key id.
    smuggled = normalize({"text": "hej", "author": HANDLE, "author_key_id": "k1"}, default_source="http",
                         authors=AUTHORS)
    assert (smuggled.post.author, smuggled.post.author_key_id) == (AUTHORS(HANDLE), "k2")


class _FreshIds:
    """Dedup that has seen nothing (in-memory stand-in for Redis)."""

    async def reserve(self, ids):
        from lyssna.ingest.dedup import Claim
        return "t", [Claim.reserved for _ in ids]

    async def confirm(self, ids):
        pass


class _Topic:
    """Producer that keeps what it was given (in-memory stand-in for Kafka)."""

    def __init__(self):
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send_batch(self, topic, records):
        self.records += [(topic, k, v) for k, v in records]
        return [None] * len(records)


async def test_the_pipeline_pseudonymizes_connector_posts_and_keeps_raw_records_out_of_dead_letters():
    from lyssna.ingest.metrics import IngestMetrics
    from lyssna.ingest.normalize import Rejection
    from lyssna.ingest.pipeline import Pipeline

    kafka = _Topic()
    pipeline = Pipeline(dedup=_FreshIds(), producer=kafka, metrics=IngestMetrics(), topic="raw",
                        deadletter_topic="dead", authors=AUTHORS)
    post = Post(id="mastodon:1", source="mastodon", text="hej", author=HANDLE, metadata={"boosted_by": "bertil"})
    pushed = {"text": "hej igen", "author": HANDLE}
    assert [r.status for r in await pipeline.ingest([from_post(post)], channel="mastodon")] == ["accepted"]
    assert [r.status for r in await pipeline.ingest_pushed([pushed], channel="http")] == ["accepted"]
    await pipeline.dead_letter("connector:m", [Rejection("line 3: bad", payload=json.dumps({"acct": HANDLE}))])
    produced = [json.loads(v) for topic, _, v in kafka.records if topic == "raw"]
    assert [(p["author"], p["author_key_id"]) for p in produced] == [(AUTHORS(HANDLE), "k2")] * 2
    assert produced[0]["metadata"]["boosted_by"] == AUTHORS("bertil")
    dead = [json.loads(v) for topic, _, v in kafka.records if topic == "dead"]
    assert [(d["reason"], d["payload"]) for d in dead] == [("line 3: bad", "")]
    assert not any(n in v.decode() for _, _, v in kafka.records for n in ("anna", "bertil"))

    # privacy.authors: keep: handles and raw records as they came.
    kept = _Topic()
    keep = Pipeline(dedup=_FreshIds(), producer=kept, metrics=IngestMetrics(), topic="raw", deadletter_topic="dead")
    await keep.ingest([from_post(post)], channel="mastodon")
    await keep.dead_letter("connector:m", [Rejection("line 3: bad", payload="{}")])
    assert [json.loads(v)["author"] for t, _, v in kept.records if t == "raw"] == [HANDLE]
    assert [json.loads(v)["payload"] for t, _, v in kept.records if t == "dead"] == ["{}"]
