"""The classification path shared by the stream agent and the batch command:
language, watched organizations, topics and sentiment for a batch of posts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from lyssna.common.config import Settings
from lyssna.common.contracts import ClassifiedPost, ModelInfo, Post

from .encoder import Encoder
from .heads import Heads
from .langid import SUPPORTED, UNDETERMINED, detect_languages
from .mentions import MentionMatcher, Organization


class Abandoned(Exception):
    """The caller gave up waiting for this classification."""


@dataclass(frozen=True)
class Result:
    """What classify found for one text (the contract's fields without the post)."""

    lang: str
    orgs: list[str]
    topics: list[str]
    topic_scores: dict[str, float]
    sentiment: str
    sentiment_scores: dict[str, float]

    def classified(self, post: Post, model: ModelInfo) -> ClassifiedPost:
        """``post`` with what was found, as the contract's message (field by field:
        a field added here must be added to ClassifiedPost too, and the reverse)."""
        return ClassifiedPost(**post.model_dump(exclude={"schema_"}), lang=self.lang, orgs=self.orgs,
                              topics=self.topics, topic_scores=self.topic_scores, sentiment=self.sentiment,
                              sentiment_scores=self.sentiment_scores, model=model)


class Classifier:
    def __init__(self, encoder: Encoder, heads: Heads, matcher: MentionMatcher, batch_size: int = 64):
        if tuple(heads.layers) != tuple(encoder.layers) or heads.topic_weights.shape[1] != encoder.dim:
            raise ValueError(f"heads {heads.version} were trained on layers {heads.layers} "
                             f"({heads.topic_weights.shape[1]}-d) but the encoder gives layers "
                             f"{encoder.layers} ({encoder.dim}-d); retrain with `lyssna train`")
        self.encoder, self.heads, self.matcher, self.batch_size = encoder, heads, matcher, batch_size
        self.model_info = ModelInfo(encoder=f"{encoder.name}@{encoder.precision}", heads=heads.version)
        # The stream worker gives up on a thread that overruns its time budget but cannot
        # stop it, so two calls may overlap; the encoder's tokenizer is not thread-safe.
        self._encoder_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, precision: str = "auto") -> "Classifier":
        c = settings.classify
        return cls(Encoder(c.model, precision=precision, threads=c.threads), Heads.load(c.heads),
                   matcher_from_settings(settings), batch_size=c.batch_size)

    def classify_texts(self, texts: Sequence[str], lang_hints: Sequence[str | None] | None = None,
                       *, abandoned: threading.Event | None = None) -> list[Result]:
        """``abandoned``: set by a caller that stopped waiting (time budget); the text
        handling, whose cost depends on the text, runs first, so an abandoned call
        stops there instead of spending the encoder's time on a result nobody reads."""
        langs = detect_languages(texts)
        if lang_hints:
            # A source that states the language knows better than a guess on a short
            # text; unknown hints are ignored so the lang label stays bounded.
            langs = [hint if lang == UNDETERMINED and hint in SUPPORTED else lang
                     for lang, hint in zip(langs, lang_hints)]
        orgs = [self.matcher.find(text) for text in texts]
        if abandoned is not None and abandoned.is_set():
            raise Abandoned
        with self._encoder_lock:
            embeddings = self.encoder.embed(texts, self.batch_size)
        predictions = self.heads.predict(embeddings)
        return [Result(lang=lang, orgs=found, topics=p.topics, topic_scores=p.topic_scores,
                       sentiment=p.sentiment, sentiment_scores=p.sentiment_scores)
                for lang, found, p in zip(langs, orgs, predictions)]

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
