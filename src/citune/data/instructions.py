"""What an instruction says about its answers, read from the data alone: the closed label set of a
task's outputs, and the key-part spans of an instruction found by KPIG's offline heuristic extractor
(METHODS.md 4.1). Both V-score (evaluation) and KPIG (replay) use them, so they live below both.

Heuristic key parts: quoted strings; words of the instruction's closed label set; the clauses that
carry a constraint cue ("answer with", "output", "return", "only", "must", "one of", "either ... or",
"yes or no", "in the format", numbers with units, plus "should", "need to", "have to", "whether ... or"
and comparative bounds such as "at most"). Spans are character offsets [start, end), merged when they
overlap or are separated only by spaces, commas, colons or dashes (never across a sentence end).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

from citune.data.text import normalize, sentence_spans
from citune.spans import Span, merge_spans
from citune.types import Task

MAX_LABELS = 20
LABEL_COVERAGE = 0.95
MIN_OWN_LABEL_OUTPUTS = 8  # outputs an instruction needs before its own label set is trusted


# ---------------------------------------------------------------- closed label sets

def closed_labels(outputs: Sequence[str], max_labels: int = MAX_LABELS,
                  coverage: float = LABEL_COVERAGE) -> list[str] | None:
    """The closed label set of these training outputs, or None.

    The most frequent normalised outputs are taken until they cover `coverage` of the
    instances; the set is closed when that needs at most `max_labels` labels and at most half as
    many labels as instances (labels must recur: a handful of free-form outputs is not a label set).
    """
    counts = Counter(normalize(o) for o in outputs)
    n = sum(counts.values())
    labels, covered = [], 0
    for label, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if covered >= coverage * n:
            break
        labels.append(label)
        covered += c
    return labels if labels and len(labels) <= max_labels and len(labels) <= n / 2 else None


def label_sets(task: Task) -> dict[str, list[str] | None]:
    """Closed label set per instruction of `task` (its own outputs, else the whole task's), None if open.

    A stream task can merge several source tasks, so labels are found per instruction first, from
    at least `MIN_OWN_LABEL_OUTPUTS` of its outputs: with fewer (a SuperNI task capped to 2-4 training
    instances) the outputs seen are a sample of the labels, not the set (two 'negative' answers
    would make 'positive' wrong), and the whole task's set is used.
    The training split is used; a task without one (e.g. a held-out task) uses its test split.
    """
    data = task.train or task.test
    by_ins: dict[str, list[str]] = {}
    for x in data:
        by_ins.setdefault(x.instruction, []).append(x.output)
    whole = closed_labels([x.output for x in data])
    return {ins: (closed_labels(outs) if len(outs) >= MIN_OWN_LABEL_OUTPUTS else None) or whole
            for ins, outs in by_ins.items()}


# ---------------------------------------------------------------- heuristic key parts

_QUOTED = re.compile(r"\"[^\"\n]{1,200}\"|“[^”\n]{1,200}”|(?<![\w'])'[^'\n]{1,200}'(?![\w])|`[^`\n]{1,200}`")
_NUMBER = (r"(?:\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|"
           r"hundred|single)")
_UNITS = (r"(?:words?|sentences?|characters?|letters?|tokens?|digits?|decimal places?|"
          r"categor(?:y|ies)|class(?:es)?|labels?|options?|choices?|paragraphs?|lines?|bullet points?|"
          r"syllables?|%|percent)")
_CUES = re.compile("|".join([
    r"\b(?:answer|respond|reply)\s+with\b", r"\boutputs?\b", r"\breturn(?:s|ed|ing)?\b", r"\bonly\b", r"\bmust\b",
    r"\bone of\b", r"\beither\b[^.;]*?\bor\b", r"\byes\W+(?:or|and)\W+no\b", r"\bin the (?:format|form)\b",
    r"\bformat(?:ted)?\b", rf"\b{_NUMBER}[\s-]+{_UNITS}(?!\w)", r"\bshould\b", r"\bneeds? to\b", r"\bha(?:ve|s) to\b",
    r"\bwhether\b[^.;]*?\bor\b", r"\b(?:at least|at most|no more than|fewer than|less than|more than|up to)\s+\d",
]), re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[,;:]\s+|\s+[-–—]\s+|\s+(?=(?:and|but|so|then)\s+(?:you|your)\b)", re.IGNORECASE)
_JOINABLE_GAP = re.compile(r"[\s,;:/\-–—]*")
_STOPWORDS = frozenset("a an the of in on at for with to from by and or not no is are be it this that as".split())


# ---------------------------------------------------------------- heuristic extractor

def quoted_spans(text: str) -> list[Span]:
    return [m.span() for m in _QUOTED.finditer(text)]


def label_spans(text: str, labels: Iterable[str] | None) -> list[Span]:
    """Whole-word occurrences of the task's labels; single characters, numbers and stop words are
    skipped (they would mark articles and counts everywhere; quoted ones are caught as quotes)."""
    spans = []
    for label in labels or ():
        label = label.strip()
        if len(label) < 2 or label.lower() in _STOPWORDS or label.replace(".", "").isdigit():
            continue
        pattern = re.compile(rf"(?<!\w){re.escape(label)}(?!\w)", re.IGNORECASE)
        spans += [m.span() for m in pattern.finditer(text)]
    return spans


def clause_spans(text: str, start: int, end: int) -> list[Span]:
    """The clauses of the sentence text[start:end], split at , ; : and dashes."""
    out, pos = [], start
    for m in _CLAUSE_BREAK.finditer(text, start, end):
        out.append((pos, m.start()))
        pos = m.end()
    out.append((pos, end))
    return [c for c in out if c[1] > c[0]]


def _trim(text: str, s: int, e: int) -> Span:
    while e > s and (text[e - 1].isspace() or text[e - 1] in ".,;:!?"):
        e -= 1
    while s < e and text[s].isspace():
        s += 1
    return s, e


def cue_spans(text: str) -> list[Span]:
    """Clauses holding a constraint cue; a cue that crosses clauses marks all the clauses it touches."""
    spans = []
    for s, e in sentence_spans(text):
        clauses = clause_spans(text, s, e)
        for m in _CUES.finditer(text, s, e):
            hit = [c for c in clauses if c[0] < m.end() and c[1] > m.start()]
            if hit:
                spans.append(_trim(text, hit[0][0], hit[-1][1]))
    return [sp for sp in spans if sp[1] > sp[0]]


def join_spans(text: str, spans: Iterable[Span]) -> list[Span]:
    """Merge spans that overlap, touch, or are separated only by spaces, commas, colons or dashes."""
    out: list[Span] = []
    for s, e in merge_spans(spans):
        if out and _JOINABLE_GAP.fullmatch(text[out[-1][1]:s]):
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def heuristic_spans(text: str, labels: Iterable[str] | None = None) -> list[Span]:
    return join_spans(text, quoted_spans(text) + label_spans(text, labels) + cue_spans(text))


def span_texts(text: str, spans: Iterable[Span]) -> list[str]:
    return [text[s:e] for s, e in spans]


def locate(text: str, parts: Iterable[str]) -> list[Span]:
    """Every verbatim occurrence of each part in `text` (parts not found give nothing)."""
    spans = []
    for part in parts:
        if not part:
            continue
        start = text.find(part)
        while start >= 0:
            spans.append((start, start + len(part)))
            start = text.find(part, start + len(part))
    return spans
