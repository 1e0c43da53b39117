"""The labelled posts under data/ and their fixed train/validation/test split.

The split is a pure function of each post's id, so it never changes when posts
are added elsewhere and the held-out test posts can never leak into training or
threshold tuning.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lyssna.common.contracts import LABELS, SENTIMENTS

DATA_DIR = Path(__file__).resolve().parent / "data"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    id: str
    lang: str
    text: str
    topics: tuple[str, ...]
    sentiment: str
    orgs: tuple[str, ...]

    @property
    def split(self) -> str:
        return split_of(self.id)

    @property
    def is_translation(self) -> bool:
        return source_of(self.id) != self.id


# A translation of a labelled post has the id ``<source id>~<lang>``.
TRANSLATION_MARK = "~"


def source_of(post_id: str) -> str:
    """The id of the post a translation was made from; a post's own id otherwise."""
    return post_id.partition(TRANSLATION_MARK)[0]


def split_of(post_id: str) -> str:
    """70% train, 10% validation, 20% test, decided by a hash of the id. A
    translation is in its source post's split: a test post's twin in another
    language would otherwise be trained on."""
    bucket = int(hashlib.sha256(source_of(post_id).encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < 20 else "validation" if bucket < 30 else "train"


def load_examples(data_dir: Path = DATA_DIR) -> list[Example]:
    examples, seen = [], set()
    for path in sorted(data_dir.glob("posts.*.jsonl")):
        for n, row in read_jsonl(path):
            bad = set(row["topics"]) - set(LABELS)
            if bad or row["sentiment"] not in SENTIMENTS or row["id"] in seen:
                raise ValueError(f"{path.name}:{n}: bad labels {bad or row['sentiment']} or duplicate id")
            seen.add(row["id"])
            examples.append(Example(row["id"], row["lang"], row["text"], tuple(row["topics"]),
                                    row["sentiment"], tuple(row.get("orgs", ()))))
    _check_translations(examples)
    return examples


def _check_translations(examples: list[Example]) -> None:
    """A translation says what its source says, so it carries the source's labels: a
    label fixed on one and not the other is an error, named here."""
    by_id = {e.id: e for e in examples}
    for e in examples:
        if not e.is_translation:
            continue
        source_id, lang = source_of(e.id), e.id.partition(TRANSLATION_MARK)[2]
        source = by_id.get(source_id)
        if source is None or lang != e.lang or lang == source.lang:
            raise ValueError(f"{e.id}: a translation's id must be <source id>~<its language>, "
                             f"of a post in another language that exists")
        if (set(e.topics), e.sentiment, set(e.orgs)) != (set(source.topics), source.sentiment, set(source.orgs)):
            raise ValueError(f"{e.id}: labels differ from its source {source_id}; "
                             f"a label fixed on one must be fixed on both")


def topic_matrix(examples: list[Example]) -> np.ndarray:
    y = np.zeros((len(examples), len(LABELS)), dtype=np.int8)
    for i, ex in enumerate(examples):
        for t in ex.topics:
            y[i, LABELS.index(t)] = 1
    return y


def sentiment_vector(examples: list[Example]) -> np.ndarray:
    return np.array([SENTIMENTS.index(ex.sentiment) for ex in examples], dtype=np.int64)


def load_watchlist(path: Path = DATA_DIR / "watchlist.yaml"):
    """The invented organizations the data refers to, as matcher input."""
    import yaml

    from ..mentions import Organization

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(Organization(o["name"], tuple(o.get("aliases", ()))) for o in doc["organizations"])


def load_review(path: Path = DATA_DIR / "review.test.jsonl") -> dict[str, tuple[tuple[str, ...], str]]:
    """How an independent second labeller read the test posts (blind: text and
    LABELLING.md only): post id -> (topics, sentiment). Empty when there is no review."""
    if not path.is_file():
        return {}
    return {r["id"]: (tuple(r["second"]["topics"]), r["second"]["sentiment"]) for _, r in read_jsonl(path)}


def load_mention_rows(path: Path = DATA_DIR / "mentions_test.jsonl") -> list[dict]:
    return [row for _, row in read_jsonl(path)]


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for each non-blank line, numbered so errors can name the line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(n, json.loads(line)) for n, line in enumerate(lines, 1) if line.strip()]
