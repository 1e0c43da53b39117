"""The classification path shared by the stream agent and the batch command:
language, watched organizations, topics and sentiment for a batch of posts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from lyssna.common.config import Settings
from lyssna.common.contracts import ClassifiedPost, ModelInfo, Post

from .encoder import Encoder
from .heads import Heads
from .langid import SUPPORTED, UNDETERMINED, detect_languages
from .mentions import MentionMatcher, Organization
from .relevance import OrgDecider, decider_from_settings


class Abandoned(Exception):
    """The caller gave up waiting for this classification."""


SCOPES = ("mentions", "all")
NO_MENTION = "no watched organization"


@dataclass(frozen=True)
class Result:
    """What classify found for one text (the contract's fields without the post)."""

    lang: str
    orgs: list[str]
    topics: list[str]
    topic_scores: dict[str, float]
    sentiment: str
    sentiment_scores: dict[str, float]
    # Why the transformer did not run (scope "mentions" and no watched
    # organization); topics and sentiment are then empty and "neutral" by default.
    skipped: str | None = None
    # Why a named organization did (not) count (relevance.OrgDecider).
    org_relevance: dict[str, float] = field(default_factory=dict)
    rejected_orgs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def not_encoded(cls, lang: str) -> "Result":
        return cls(lang=lang, orgs=[], topics=[], topic_scores={}, sentiment="neutral", sentiment_scores={},
                   skipped=NO_MENTION)

    def classified(self, post: Post, model: ModelInfo) -> ClassifiedPost:
        """``post`` with what was found, as the contract's message (field by field:
        a field added here must be added to ClassifiedPost too, and the reverse)."""
        return ClassifiedPost(**post.model_dump(exclude={"schema_"}), lang=self.lang, orgs=self.orgs,
                              topics=self.topics, topic_scores=self.topic_scores, sentiment=self.sentiment,
                              sentiment_scores=self.sentiment_scores, model=model, skipped=self.skipped,
                              org_relevance=self.org_relevance, rejected_orgs=self.rejected_orgs)


class Classifier:
    def __init__(self, encoder: Encoder, heads: Heads, matcher: MentionMatcher, batch_size: int = 64,
                 scope: str = "all", decider: OrgDecider | None = None):
        """``scope``: "mentions" runs the transformer only on texts that mention a
        watched organization (the others get their language and nothing else);
        "all" on every text. ``decider``: which named organizations count (boolean
        queries, the relevance head for ambiguous names); default: every one."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
        if tuple(heads.layers) != tuple(encoder.layers) or heads.topic_weights.shape[1] != encoder.dim:
            raise ValueError(f"heads {heads.version} were trained on layers {heads.layers} "
                             f"({heads.topic_weights.shape[1]}-d) but the encoder gives layers "
                             f"{encoder.layers} ({encoder.dim}-d); retrain with `lyssna train`")
        self.encoder, self.heads, self.matcher, self.batch_size = encoder, heads, matcher, batch_size
        self.scope = scope
        self.decider = decider or OrgDecider([], None, None)
        self.encoded = 0  # texts that went through the transformer (the scope test counts them)
        self.model_info = ModelInfo(encoder=f"{encoder.name}@{encoder.precision}", heads=heads.version)
        # The stream worker gives up on a thread that overruns its time budget but cannot
        # stop it, so two calls may overlap; the encoder's tokenizer is not thread-safe.
        self._encoder_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, precision: str | None = None) -> "Classifier":
        c = settings.classify
        precision = precision or c.precision
        encoder = Encoder(c.model, precision=precision, threads=c.threads, scope=c.scope)
        return cls(encoder, Heads.load(c.heads), matcher_from_settings(settings), batch_size=c.batch_size,
                   scope=c.scope, decider=decider_from_settings(settings.organizations, encoder, c.heads))

    def classify_texts(self, texts: Sequence[str], lang_hints: Sequence[str | None] | None = None,
                       *, abandoned: threading.Event | None = None) -> list[Result]:
        """``abandoned``: set by a caller that stopped waiting (time budget); the text
        handling, whose cost depends on the text, runs first, so an abandoned call
        stops there instead of spending the encoder's time on a result nobody reads."""
        spans = [self.matcher.find_spans(text) for text in texts]
        orgs = [list(dict.fromkeys(m.org for m in found)) for found in spans]
        wanted = [i for i, found in enumerate(orgs) if found or self.scope == "all"]
        langs = self._languages(texts, wanted)
        if lang_hints:
            # A source that states the language knows better than a guess on a short
            # text; unknown hints are ignored so the lang label stays bounded.
            langs = [hint if lang == UNDETERMINED and hint in SUPPORTED else lang
                     for lang, hint in zip(langs, lang_hints)]
        if abandoned is not None and abandoned.is_set():
            raise Abandoned
        results = [Result.not_encoded(lang) for lang in langs]
        if wanted:
            with self._encoder_lock:
                embeddings = self.encoder.embed([texts[i] for i in wanted], self.batch_size)
                self.encoded += len(wanted)
            for i, p, vector in zip(wanted, self.heads.predict(embeddings), embeddings):
                # Queries and, for ambiguous names, the relevance head on the same vector.
                d = self.decider.decide(texts[i], spans[i], vector)
                results[i] = Result(lang=langs[i], orgs=d.orgs, topics=p.topics, topic_scores=p.topic_scores,
                                    sentiment=p.sentiment, sentiment_scores=p.sentiment_scores,
                                    org_relevance=d.relevance, rejected_orgs=d.rejected)
        return results

    @staticmethod
    def _languages(texts: Sequence[str], wanted: Sequence[int]) -> list[str]:
        """Languages of every text: full accuracy for the texts that get classified,
        lingua's quick mode for the rest, whose language only feeds a metric (and it
        is most of the cost of an irrelevant post)."""
        langs = [UNDETERMINED] * len(texts)
        chosen = set(wanted)
        rest = [i for i in range(len(texts)) if i not in chosen]
        for group, quick in ((wanted, False), (rest, True)):
            if group:
                for i, lang in zip(group, detect_languages([texts[i] for i in group], quick=quick)):
                    langs[i] = lang
        return langs

    def warm_up(self) -> None:
        """Load what loads lazily (both language detectors, allocator pools) before the
        first batch, so its time budget measures classification, not start-up."""
        self.classify_texts(["Acme söker nya kollegor till lagret i Borås, ansök senast fredag.",
                             "Acme Robotics is hiring warehouse staff in Borås this autumn; the application "
                             "period closes on Friday and interviews start the week after that."])

    def classify_posts(self, posts: Sequence[Post], *,
                       abandoned: threading.Event | None = None) -> list[ClassifiedPost]:
        results = self.classify_texts([p.text for p in posts], [p.lang_hint for p in posts], abandoned=abandoned)
        return [r.classified(post, self.model_info) for post, r in zip(posts, results)]


def matcher_from_settings(settings: Settings) -> MentionMatcher:
    return MentionMatcher(Organization(o.name, tuple(o.aliases)) for o in settings.organizations)
