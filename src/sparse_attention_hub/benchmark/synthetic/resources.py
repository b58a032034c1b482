"""The offline resources of `ruler_synthetic`: filler prose, word lists and the noise sentence.

The files live in `benchmark/data/` and are verified against the checksums below, because a
silently edited list would change every generated row while the cache key stayed the same.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sparse_attention_hub.errors import DatasetLoadError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

CHECKSUMS: dict[str, str] = {
    "essays.txt": "72fbeda1848e88475d9cd57d58c11e671ed740bb488c3082093d247874756dd6",
    "adjectives.txt": "1959d882105382ef1664f46b58b11adb1132100cd1a942ccf504154b18414dbd",
    "nouns.txt": "d9efc71331973b67ac028dd5b8f286d7f3744a39418a376557abf1ab222b1364",
    "common_words.txt": "e69fc062d178750ce0868f1c6ae9df332e4938c54050521e2a07bd481207d687",
}

NOISE_SENTENCE = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
)

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Resources:
    """Everything the generators draw from, as immutable sequences."""

    essay_words: tuple[str, ...]
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    cwe_words: tuple[str, ...]  # common words, adjectives and nouns pooled, sorted, distinct


def read_checked(name: str) -> str:
    """The text of one bundled file, after checking its SHA-256."""
    path = DATA_DIR / name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetLoadError(f"bundled resource {path} is missing: {exc}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CHECKSUMS[name]:
        raise DatasetLoadError(
            f"bundled resource {path} has sha256 {digest}, expected {CHECKSUMS[name]}; "
            "update CHECKSUMS and GENERATOR_VERSION together when editing it"
        )
    return raw.decode("utf-8")


@functools.cache
def load_resources() -> Resources:
    """Read and verify the bundled files once per process."""
    adjectives = tuple(read_checked("adjectives.txt").split())
    nouns = tuple(read_checked("nouns.txt").split())
    common = tuple(read_checked("common_words.txt").split())
    return Resources(
        essay_words=tuple(read_checked("essays.txt").split()),
        adjectives=adjectives,
        nouns=nouns,
        cwe_words=tuple(sorted(set(common) | set(adjectives) | set(nouns))),
    )


def split_sentences(text: str) -> list[str]:
    """Sentences split after `.`, `!` or `?` followed by whitespace (no NLTK download needed)."""
    return [s for s in _SENTENCE_BREAK.split(text.strip()) if s]


def cycled(words: tuple[str, ...], n: int) -> list[str]:
    """The first `n` words of `words` repeated cyclically."""
    if not words:
        raise DatasetLoadError("cannot cycle an empty word list")
    repeats, rest = divmod(n, len(words))
    return list(words) * repeats + list(words[:rest])
