"""Is a post that names a watched organization about that organization?

Pure logic over vectors, no I/O besides loading the bundled head. Two steps
decide whether a candidate mention found by ``mentions.MentionMatcher`` counts:

1. the organization's boolean query (``query.Query``: include_any, exclude,
   near), when the user wrote one;
2. for an organization marked ``ambiguous`` (its name is also a first name, a
   place, a word or another brand) whose only mentions in the post are that
   ambiguous name (not its @handle, not its whole multi-word name), the
   relevance head: a logistic regression over the post's sentence vector and
   the vector of the organization's ``description`` and ``context``.

The head's features are the post vector, its elementwise product with the
organization vector, their cosine per encoder layer, and two cues from the
text (``EXTRAS``): a context keyword occurs; the name is written in lower case
(a word, "en gnista", rarely the company). All but the cues are linear in the
post vector, so at start each organization's weights fold into one vector and
judging a candidate is one dot product on the vector the topic heads already
use: no extra encoder work.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common_names import COMMON_NAMES
from .heads import DEFAULT_HEADS_DIR
from .mentions import Mention, fold
from .query import Query, Term, TermSet, words_of

__all__ = ["EXTRAS", "Decision", "OrgDecider", "OrgProfile", "RelevanceHead", "decider_from_settings", "extras",
           "features", "keyword_terms",
           "profile_text"]

log = logging.getLogger(__name__)

RELEVANCE_FORMAT = "lyssna.relevance.v1"
RELEVANCE_FILE = "relevance.json"
NOT_RELEVANT = "not_relevant"


def profile_text(description: str | None, context: Sequence[str] = ()) -> str:
    """What the head compares posts with: the description, then the context words."""
    text = (description or "").strip()
    if context:
        text = f"{text} ({', '.join(context)})" if text else ", ".join(context)
    return text


def keyword_terms(context: Sequence[str]) -> TermSet:
    # Prefix matches, so "hemtjänst" finds "hemtjänsten" and "laks" finds "laksen".
    return TermSet(Term(t.words, prefix=True) for t in map(Term.parse, context) if t.words)


EXTRAS = ("keyword", "lowercase")


def extras(text: str, mentions: Sequence[Mention], keywords: TermSet) -> np.ndarray:
    """The text cues, in ``EXTRAS`` order."""
    keyword = 1.0 if keywords.terms and keywords.found_in(words_of(text)) else 0.0
    lowercase = 1.0 if mentions and all(m.surface[:1].islower() for m in mentions) else 0.0
    return np.array([keyword, lowercase], dtype=np.float32)


def features(posts: np.ndarray, org: np.ndarray, n_layers: int, cues: np.ndarray) -> np.ndarray:
    """The head's input for posts (n, d) against one organization vector (d,):
    post, post * org, cosine per layer (the vectors are L2-normalised per layer), cues (n, len(EXTRAS))."""
    prod = posts * org
    cos = prod.reshape(len(posts), n_layers, -1).sum(axis=2)
    return np.hstack([posts, prod, cos, cues.reshape(len(posts), -1)]).astype(np.float32)


@dataclass
class RelevanceHead:
    version: str
    encoder: str
    layers: tuple[int, ...]
    weights: np.ndarray   # (2 * dim + layers + len(EXTRAS),), standardisation already folded in
    bias: float
    threshold: float

    @property
    def dim(self) -> int:
        return (len(self.weights) - len(self.layers) - len(EXTRAS)) // 2

    def org_weights(self, org: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The post-vector weights for one organization, and the cues' weights."""
        d, n_layers = self.dim, len(self.layers)
        w_post, w_prod = self.weights[:d], self.weights[d:2 * d]
        w_cos = np.repeat(self.weights[2 * d:2 * d + n_layers], d // n_layers)
        return (w_post + (w_prod + w_cos) * org).astype(np.float32), self.weights[2 * d + n_layers:]

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / RELEVANCE_FILE
        doc = {"format": RELEVANCE_FORMAT, "version": self.version, "encoder": self.encoder,
               "layers": list(self.layers), "extras": list(EXTRAS), "weights": self.weights.round(6).tolist(),
               "bias": round(float(self.bias), 6), "threshold": round(float(self.threshold), 4)}
        path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "RelevanceHead":
        path = Path(folder or DEFAULT_HEADS_DIR) / RELEVANCE_FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no trained relevance head at {path}; run `lyssna train`") from None
        if doc.get("format") != RELEVANCE_FORMAT:
            raise ValueError(f"{path}: unknown relevance head format {doc.get('format')!r}; retrain with "
                             "`lyssna train`")
        if doc.get("extras") != list(EXTRAS):
            raise ValueError(f"{path}: trained on other text cues; retrain with `lyssna train`")
        return cls(version=doc["version"], encoder=doc["encoder"], layers=tuple(doc["layers"]),
                   weights=np.asarray(doc["weights"], dtype=np.float32), bias=float(doc["bias"]),
                   threshold=float(doc["threshold"]))


@dataclass(frozen=True)
class OrgProfile:
    """What the decision needs to know about one watched organization."""

    name: str
    ambiguous: bool = False
    description: str | None = None
    context: tuple[str, ...] = ()
    query: Query = field(default_factory=Query)


@dataclass(frozen=True)
class Decision:
    """For one post: the organizations that count, the relevance score of each
    ambiguous candidate the head judged, and why each other candidate did not count."""

    orgs: list[str]
    relevance: dict[str, float]
    rejected: dict[str, str]


class OrgDecider:
    """Queries and the relevance head over the matcher's candidates.

    ``embed`` turns profile texts into vectors once, at construction, for the
    ambiguous organizations only; without any, the head is never loaded.
    """

    def __init__(self, profiles: Sequence[OrgProfile], head: RelevanceHead | Callable[[], RelevanceHead] | None,
                 embed: Callable[[list[str]], np.ndarray] | None) -> None:
        self._profiles = {p.name: p for p in profiles}
        self._judged = [p for p in profiles if p.ambiguous]
        self._weights: dict[str, tuple[np.ndarray, np.ndarray, TermSet]] = {}
        self.head: RelevanceHead | None = None
        if self._judged:
            if head is None or embed is None:
                raise ValueError("ambiguous organizations need the relevance head and the encoder")
            self.head = head() if callable(head) else head
            vectors = embed([profile_text(p.description, p.context) for p in self._judged])
            for p, v in zip(self._judged, vectors):
                w, w_cues = self.head.org_weights(v)
                self._weights[p.name] = (w, w_cues, keyword_terms(p.context))

    @property
    def needs_vectors(self) -> bool:
        return bool(self._judged)

    def needs_judging(self, org: str, mentions: Sequence[Mention]) -> bool:
        """An ambiguous organization named only by its ambiguous name."""
        return org in self._weights and not any(m.distinctive for m in mentions)

    def decide(self, text: str, spans: Sequence[Mention], vector: np.ndarray | None) -> Decision:
        by_org: dict[str, list[Mention]] = {}
        for m in spans:
            by_org.setdefault(m.org, []).append(m)
        orgs: list[str] = []
        relevance: dict[str, float] = {}
        rejected: dict[str, str] = {}
        for org, mentions in by_org.items():
            profile = self._profiles.get(org)
            if profile is not None and profile.query and (why := profile.query.verdict(text, mentions)):
                rejected[org] = why
                continue
            if self.needs_judging(org, mentions):
                if vector is None:
                    raise ValueError(f"judging a mention of {org!r} needs the post's sentence vector")
                w, w_cues, keywords = self._weights[org]
                logit = float(vector @ w) + float(w_cues @ extras(text, mentions, keywords)) + self.head.bias
                score = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))  # no overflow at the extremes
                relevance[org] = round(score, 4)
                if score < self.head.threshold:
                    rejected[org] = NOT_RELEVANT
                    continue
            orgs.append(org)
        return Decision(orgs, relevance, rejected)


def decider_from_settings(organizations: Sequence, encoder, heads_dir: str | Path | None = None) -> OrgDecider:
    """The decision step for the configured organizations (``OrganizationConfig``s).
    The head loads only when an organization is ambiguous, from the folder of the
    topic heads (``classify.heads``; default: the bundled ones)."""
    def head() -> RelevanceHead:
        loaded = RelevanceHead.load(heads_dir)
        if tuple(loaded.layers) != tuple(encoder.layers) or loaded.dim != encoder.dim:
            raise ValueError(f"relevance head {loaded.version} was trained on layers {loaded.layers} but the "
                             f"encoder gives layers {encoder.layers}; retrain with `lyssna train`")
        return loaded

    for org, name in ambiguity_hints(organizations):
        log.warning("watched name is also a common first name, place or word; set ambiguous: true and a "
                    "description so that posts about something else are not counted", extra={"org": org, "name": name})
    profiles = [OrgProfile(o.name, o.ambiguous, o.description, tuple(o.context),
                           Query(o.include_any, o.exclude, o.near.terms if o.near else (),
                                 o.near.within if o.near else 0))
                for o in organizations]
    return OrgDecider(profiles, head, lambda texts: encoder.embed(texts))


def ambiguity_hints(organizations: Iterable) -> list[tuple[str, str]]:
    """(organization, name) for each one-word name or alias of an organization not
    marked ambiguous that is also a common first name, pet's name, place or word."""
    out = []
    for o in organizations:
        if o.ambiguous:
            continue
        for name in (o.name, *o.aliases):
            if name[:1] not in "@#" and len(name.split()) == 1 and fold(name)[0].strip() in COMMON_NAMES:
                out.append((o.name, name))
    return out
