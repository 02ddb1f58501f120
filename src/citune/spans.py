"""The masked instruction Ĩ of KPIG (METHODS.md 4.2): every key-part span replaced by a placeholder."""
from __future__ import annotations

from typing import Iterable

Span = tuple[int, int]


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted spans with overlapping or touching ones merged."""
    out: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e in spans if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def mask(text: str, spans: Iterable[Span], placeholder: str = "[...]") -> str:
    """`text` with each (merged) span [start, end) replaced by `placeholder`."""
    parts, pos = [], 0
    for s, e in merge_spans(spans):
        if s < 0 or e > len(text):
            raise ValueError(f"span ({s}, {e}) outside a text of {len(text)} characters")
        parts += [text[pos:s], placeholder]
        pos = e
    parts.append(text[pos:])
    return "".join(parts)
