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
_NOISE = re.compile(
    r"""
    (?:https?://|www\.)\S+            # URLs
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)+    # e-mail addresses
    | (?<![\w@.])(?:[\w-]+\.)+(?:se|no|dk|fi|de|at|ch|com|net|org|io|eu|nu)(?!\w)\S*  # bare domains
    | (?<![\w])[@#]\w+                # @handles and #hashtags
    """,
    re.VERBOSE,
)
# A word is a run of letters (digits, emoji and punctuation do not count);
# apostrophes and hyphens inside words keep "don't" and "HR-chef" as one.
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")

_detector: LanguageDetector | None = None
_detector_lock = threading.Lock()


def _get_detector() -> LanguageDetector:
    """Build the detector on first use; loading models takes a moment and memory."""
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                _detector = LanguageDetectorBuilder.from_languages(*_CODES).build()
    return _detector


def _clean(text: str) -> str | None:
    """Text reduced to its words, or None when there are too few to judge."""
    words = _WORD.findall(_NOISE.sub(" ", text))
    if len(words) < MIN_WORDS:
        return None
    return " ".join(words)


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
    return _decide(_get_detector().compute_language_confidence_values(cleaned), min_confidence)


def detect_languages(texts: Iterable[str], min_confidence: float = MIN_CONFIDENCE) -> list[str]:
    """Batch version of :func:`detect_language`, using lingua's thread pool."""
    cleaned = [_clean(t) for t in texts]
    todo = [c for c in cleaned if c is not None]
    results: list[str] = []
    if todo:
        detector = _get_detector()
        batch = getattr(detector, "compute_language_confidence_values_in_parallel", None)
        if batch is not None:
            values = batch(todo)
        else:  # older lingua without the parallel API
            values = [detector.compute_language_confidence_values(t) for t in todo]
        decided = iter(_decide(v, min_confidence) for v in values)
    else:
        decided = iter(())
    for c in cleaned:
        results.append(UNDETERMINED if c is None else next(decided))
    return results
