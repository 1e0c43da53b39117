"""classify.scope and the choice of the encoder's path: pure logic, a counting fake encoder."""

import numpy as np
import pytest

from lyssna.classify.classifier import NO_MENTION, Classifier
from lyssna.classify.encoder import choose_precision
from lyssna.classify.heads import Heads
from lyssna.classify.mentions import MentionMatcher, Organization
from lyssna.common.contracts import LABELS, Post


class CountingEncoder:
    """Records every text it is asked to embed."""

    name, precision, runtime, layers, dim = "fake", "fp32", "torch", (12,), 4

    def __init__(self):
        self.seen: list[str] = []

    def embed(self, texts, batch_size=64):
        self.seen.extend(texts)
        return np.ones((len(texts), self.dim), dtype=np.float32)


def heads() -> Heads:
    return Heads(version="v-test", encoder="fake", layers=(12,),
                 topic_weights=np.ones((len(LABELS), 4), np.float32), topic_bias=np.zeros(len(LABELS), np.float32),
                 thresholds=np.full(len(LABELS), 0.5, np.float32),
                 sentiment_weights=np.eye(3, 4, dtype=np.float32), sentiment_bias=np.zeros(3, np.float32))


TEXTS = ["Acme söker lagerpersonal i Borås, ansök senast fredag!",
         "Regn hela veckan i Göteborg, typiskt november och alla är trötta.",
         "Die Stimmung bei Acme ist seit der Umstrukturierung im Keller."]


def classifier(scope: str) -> tuple[Classifier, CountingEncoder]:
    encoder = CountingEncoder()
    return Classifier(encoder, heads(), MentionMatcher([Organization("Acme Robotics", ("Acme",))]),
                      scope=scope), encoder


def test_mentions_scope_encodes_only_posts_that_name_a_watched_organization():
    clf, encoder = classifier("mentions")
    results = clf.classify_texts(TEXTS)
    assert encoder.seen == [TEXTS[0], TEXTS[2]]
    assert clf.encoded == 2
    assert [r.orgs for r in results] == [["Acme Robotics"], [], ["Acme Robotics"]]
    weather = results[1]
    assert weather.skipped == NO_MENTION and weather.topics == [] and weather.topic_scores == {}
    assert weather.lang == "sv"  # the language is still known (quick mode), for the metric
    assert results[2].lang == "de" and results[0].skipped is None and results[0].topics


def test_all_scope_encodes_every_post():
    clf, encoder = classifier("all")
    results = clf.classify_texts(TEXTS)
    assert encoder.seen == TEXTS and all(r.skipped is None for r in results)


def test_a_batch_without_any_mention_never_calls_the_encoder():
    clf, encoder = classifier("mentions")
    assert [r.skipped for r in clf.classify_texts(TEXTS[1:2] * 3)] == [NO_MENTION] * 3
    assert encoder.seen == []


def test_skipped_posts_say_so_in_the_contract():
    clf, _ = classifier("mentions")
    post = Post(id="p1", source="rss", text=TEXTS[1])
    [out] = clf.classify_posts([post])
    assert out.skipped == NO_MENTION and out.orgs == [] and out.id == "p1"


def test_unknown_scope_is_refused():
    with pytest.raises(ValueError, match="scope must be one of"):
        classifier("some")


@pytest.mark.parametrize("flags, int8, expected", [
    ({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, True, "bf16"),  # Intel with AMX
    ({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}, True, "bf16"),           # AMD Zen 4
    ({"avx2", "fma", "avx512f", "avx512_vnni"}, True, "int8"),                           # Intel Cascade Lake
    ({"avx2", "fma"}, True, "int8"),                                                     # AMD Zen 3, AVX2 only
    ({"asimd", "asimddp"}, True, "int8"),                                                # ARM server
    ({"avx2", "fma", "avx512_bf16"}, False, "bf16"),  # no int8 graph built: the best PyTorch path
    ({"avx2", "fma"}, False, "fp32"),
])
def test_the_served_path_follows_the_cpu(flags, int8, expected):
    assert choose_precision(frozenset(flags), int8) == expected


@pytest.mark.parametrize("flags, int8, expected", [
    ({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, True, "bf16"),  # AMX wins at any batch
    ({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}, True, "int8"),           # Zen 4: small batches
    ({"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"}, False, "bf16"),
    ({"avx2", "fma"}, True, "int8"),
])
def test_under_scope_mentions_the_path_fits_small_batches(flags, int8, expected):
    assert choose_precision(frozenset(flags), int8, scope="mentions") == expected
