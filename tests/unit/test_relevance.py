"""Unit tests for lyssna.classify.relevance: the head's folded arithmetic, when
the head is asked at all, what the decision records, and the bundled head."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lyssna.classify.heads import Heads
from lyssna.classify.mentions import MentionMatcher, Organization
from lyssna.classify.query import Query
from lyssna.classify.relevance import (
    EXTRAS, NOT_RELEVANT, OrgDecider, OrgProfile, RelevanceHead, extras, features, keyword_terms, profile_text,
)
from lyssna.classify.training.orgpairs import fit_relevance, score_pairs

LAYERS = (1, 2)
DIM = 8  # two layers of four


def unit_layers(v: np.ndarray) -> np.ndarray:
    parts = v.reshape(len(LAYERS), -1)
    return (parts / np.linalg.norm(parts, axis=1, keepdims=True)).reshape(-1).astype(np.float32)


def random_head(rng: np.random.Generator, threshold: float = 0.5) -> RelevanceHead:
    return RelevanceHead("relevance-test", "enc", LAYERS, rng.normal(size=2 * DIM + len(LAYERS) + len(EXTRAS))
                         .astype(np.float32), float(rng.normal()), threshold)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_folded_weights_equal_the_explicit_features() -> None:
    rng = np.random.default_rng(1)
    head = random_head(rng)
    org = unit_layers(rng.normal(size=DIM))
    posts = np.stack([unit_layers(rng.normal(size=DIM)) for _ in range(5)])
    cues = rng.integers(0, 2, size=(5, len(EXTRAS))).astype(np.float32)
    explicit = features(posts, org, len(LAYERS), cues) @ head.weights
    w, w_cues = head.org_weights(org)
    np.testing.assert_allclose(posts @ w + cues @ w_cues, explicit, rtol=1e-5, atol=1e-5)


def test_cosine_features_are_per_layer() -> None:
    org = unit_layers(np.arange(1, DIM + 1, dtype=np.float32))
    x = features(org[None, :], org, len(LAYERS), np.zeros((1, len(EXTRAS))))
    np.testing.assert_allclose(x[0, 2 * DIM:2 * DIM + len(LAYERS)], [1.0, 1.0], rtol=1e-6)


def test_fit_folds_the_standardisation_into_the_weights() -> None:
    rng = np.random.default_rng(7)
    org = unit_layers(rng.normal(size=DIM))
    posts = np.stack([unit_layers(rng.normal(size=DIM)) for _ in range(120)])
    y = (posts @ org > 0.1).astype(int)
    cues = np.zeros((120, len(EXTRAS)), dtype=np.float32)
    x = features(posts, org, len(LAYERS), cues)
    head = fit_relevance(x, y, encoder_name="enc", layers=LAYERS, version="v", progress=lambda _: None)
    w, _ = head.org_weights(org)
    prob = sigmoid(posts @ w + head.bias)
    # learns the rule it was shown (cross-validated choice of C and threshold)
    assert ((prob >= head.threshold) == y).mean() > 0.85


def test_save_and_load(tmp_path) -> None:
    head = random_head(np.random.default_rng(3), threshold=0.42)
    head.save(tmp_path)
    loaded = RelevanceHead.load(tmp_path)
    assert (loaded.version, loaded.layers, loaded.threshold) == ("relevance-test", LAYERS, 0.42)
    np.testing.assert_allclose(loaded.weights, head.weights, atol=1e-6)


def test_load_refuses_other_cues(tmp_path) -> None:
    path = random_head(np.random.default_rng(3)).save(tmp_path)
    doc = json.loads(path.read_text())
    doc["extras"] = ["keyword"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="retrain with `lyssna train`"):
        RelevanceHead.load(tmp_path)


def test_bundled_head_fits_the_bundled_topic_heads() -> None:
    head, topics = RelevanceHead.load(), Heads.load()
    assert head.layers == topics.layers and head.dim == topics.topic_weights.shape[1]
    assert 0 < head.threshold < 1


def test_text_cues() -> None:
    matcher = MentionMatcher([Organization("Gnista Laddning", ("Gnista",))])
    kw = keyword_terms(["laddstolpe", "EV charging"])
    text = "inte en gnista kvar; laddstolpen funkar"
    assert extras(text, matcher.find_spans(text), kw).tolist() == [1.0, 1.0]
    text = "Gnista har bra EV charging"
    assert extras(text, matcher.find_spans(text), kw).tolist() == [1.0, 0.0]
    assert extras("Gnista", matcher.find_spans("Gnista"), keyword_terms([])).tolist() == [0.0, 0.0]


def test_profile_text() -> None:
    assert profile_text("Dairy", ["milk", "cheese"]) == "Dairy (milk, cheese)"
    assert profile_text(None, ["milk"]) == "milk"


# --------------------------------------------------------------------------- #
# OrgDecider: who is judged, and what the decision records
# --------------------------------------------------------------------------- #

PLUTO = Organization("Pluto Logistik", ("Pluto", "@plutologistik"))
BRATT = Organization("Brattström & Söner", ("Brattström",))
MATCHER = MentionMatcher([PLUTO, BRATT])


class FixedHead(RelevanceHead):
    """A head whose score is the post vector's first value through a sigmoid, so a
    test can place a post on either side of the threshold."""

    def __init__(self) -> None:
        super().__init__("fixed", "enc", (12,), np.zeros(2 * 4 + 1 + len(EXTRAS), np.float32), 0.0, 0.5)

    def org_weights(self, org):
        return np.array([1.0, 0, 0, 0], np.float32), np.zeros(len(EXTRAS), np.float32)


def decider(query: Query | None = None) -> OrgDecider:
    embedded = []

    def embed(texts):
        embedded.extend(texts)
        return np.zeros((len(texts), 4), np.float32)

    d = OrgDecider([OrgProfile(PLUTO.name, True, "logistics", ("lager",), query or Query()),
                    OrgProfile(BRATT.name)], FixedHead(), embed)
    d.embedded = embedded
    return d


def decide(d: OrgDecider, text: str, score_logit: float):
    return d.decide(text, MATCHER.find_spans(text), np.array([score_logit, 0, 0, 0], np.float32))


def test_descriptions_are_embedded_once_for_ambiguous_organizations_only() -> None:
    assert decider().embedded == ["logistics (lager)"]


def test_ambiguous_name_is_judged_and_scored() -> None:
    d = decider()
    about = decide(d, "Pluto söker lagerpersonal", 2.0)
    assert about.orgs == [PLUTO.name] and about.relevance == {PLUTO.name: round(float(sigmoid(2.0)), 4)}
    assert about.rejected == {}
    pet = decide(d, "Min hund Pluto", -2.0)
    assert pet.orgs == [] and pet.rejected == {PLUTO.name: NOT_RELEVANT}
    assert pet.relevance == {PLUTO.name: round(float(sigmoid(-2.0)), 4)}


@pytest.mark.parametrize("text", ["Pluto Logistik söker folk", "tack @plutologistik", "Pluto och Pluto Logistik"])
def test_whole_name_or_handle_skips_the_head(text: str) -> None:
    decision = decide(decider(), text, -5.0)
    assert decision.orgs == [PLUTO.name] and decision.relevance == {}


def test_unambiguous_organization_skips_the_head() -> None:
    decision = decide(decider(), "Brattström sågar", -5.0)
    assert decision.orgs == [BRATT.name] and decision.relevance == {}


def test_query_decides_before_the_head() -> None:
    d = decider(Query(exclude=["hund"]))
    decision = decide(d, "Pluto är en hund", 5.0)
    assert decision.orgs == [] and decision.rejected == {PLUTO.name: "exclude"} and decision.relevance == {}


def test_judging_needs_the_vector() -> None:
    with pytest.raises(ValueError, match="sentence vector"):
        decider().decide("Pluto", MATCHER.find_spans("Pluto"), None)


def test_ambiguous_organizations_need_the_head() -> None:
    with pytest.raises(ValueError, match="relevance head"):
        OrgDecider([OrgProfile(PLUTO.name, True, "x")], None, None)


def test_score_pairs() -> None:
    rows = [{"about": True, "lang": "sv", "org": "A", "ambiguous": True, "kind": "plain"},
            {"about": False, "lang": "sv", "org": "A", "ambiguous": True, "kind": "pet"},
            {"about": True, "lang": "de", "org": "B", "ambiguous": False, "kind": "typo"}]
    s = score_pairs(rows, [True, True, False])
    assert (s["overall"]["tp"], s["overall"]["fp"], s["overall"]["fn"]) == (1, 1, 1)
    assert s["ambiguous"]["precision"] == 0.5 and s["per_org"]["B"]["recall"] == 0.0
    assert s["per_language"]["sv"]["recall"] == 1.0


def test_common_one_word_names_get_a_hint_unless_marked() -> None:
    from types import SimpleNamespace as Org

    from lyssna.classify.relevance import ambiguity_hints

    orgs = [Org(name="Alva Omsorg", aliases=["Alva", "@alva"], ambiguous=False),
            Org(name="Pluto Logistik", aliases=["Pluto"], ambiguous=True),
            Org(name="Skärholt Maskin", aliases=["Skärholt"], ambiguous=False),
            Org(name="Gnista", aliases=["#gnista"], ambiguous=False)]
    assert ambiguity_hints(orgs) == [("Alva Omsorg", "Alva"), ("Gnista", "Gnista")]


def test_settings_decider_refuses_a_head_for_other_encoder_layers(tmp_path) -> None:
    from types import SimpleNamespace

    from lyssna.classify.relevance import decider_from_settings
    from lyssna.common.config import OrganizationConfig

    random_head(np.random.default_rng(5)).save(tmp_path)  # layers (1, 2)
    encoder = SimpleNamespace(layers=(6, 9, 12), dim=DIM, embed=lambda texts: np.zeros((len(texts), DIM)))
    org = OrganizationConfig(name="Pluto Logistik", aliases=["Pluto"], ambiguous=True, description="logistics")
    with pytest.raises(ValueError, match="retrain with `lyssna train`"):
        decider_from_settings([org], encoder, tmp_path)
    # nothing ambiguous: the head is never loaded
    assert not decider_from_settings([OrganizationConfig(name="X")], encoder, tmp_path).needs_vectors
