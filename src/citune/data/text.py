"""Text normalisation shared by exact match, closed label sets and the V-score checks."""
from __future__ import annotations

import re
import string

_SPACES = re.compile(r"\s+")
_TRAILING = string.punctuation + "。．！？、，；：…"


def normalize(text: str) -> str:
    """Lower-case, strip, collapse whitespace runs to one space, strip trailing punctuation."""
    text = _SPACES.sub(" ", text.lower()).strip()
    return text.rstrip(_TRAILING).rstrip()


_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+[A-Z0-9\"'“‘(\[])|\n+")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|mr|mrs|ms|dr|st|no|fig)|\b[A-Za-z])\.+$", re.IGNORECASE)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text` (whitespace between them excluded).

    A boundary is end punctuation followed by whitespace and a capital, digit, quote or
    bracket, or a line break; abbreviations such as "e.g." and "i.e." do not end a sentence.
    """
    spans, start = [], 0
    for m in _BOUNDARY.finditer(text):
        if not m.group().startswith("\n") and _ABBREV.search(text[max(0, m.start() - 6): m.start() + 1]):
            continue
        end = m.end() if not m.group().startswith("\n") else m.start()
        spans.append((start, end))
        start = m.end()
    spans.append((start, len(text)))
    return [trimmed for s, e in spans if (trimmed := _trim(text, s, e))]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None
