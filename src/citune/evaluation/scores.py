"""Per-instance scorers, each x100 in [0, 100]: a prediction against its references.

- ``rougeL``: ROUGE-L F1 (rouge-score, Porter stemming), max over references, with a tokenizer that
  keeps every script (``MultilingualTokenizer``); ``rougeL_precision``: its precision.
- ``exact_match``: normalised strings are equal (``citune.data.text.normalize``).
- ``option_accuracy``, ``number_accuracy``, ``edit_similarity``: TRACE's rules for its
  multiple-choice tasks, NumGLUE and Py150 (see docs/METHODS-NOTES.md, "Scorers").

``score(name, prediction, references)`` looks a scorer up by name; ``check_scorer`` validates a name.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Sequence

import regex

from citune.data.text import normalize

Scorer = Callable[[str, Sequence[str]], float]

# Scripts written without spaces between words: one grapheme per token.
_NO_SPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\u30fc\uff70"
_TOKEN = regex.compile(
    rf"(?=[{_NO_SPACE}])\X"  # a character of a script without word spaces
    r"|(?=\p{So})\X"  # a symbol such as an emoji, with its modifiers and joiners
    rf"|(?:(?![{_NO_SPACE}])[\p{{L}}\p{{N}}\p{{M}}])+"  # a word: in ASCII exactly [a-z0-9]+
)


class MultilingualTokenizer:
    """rouge-score's default tokenizer extended to every script.

    On ASCII text the tokens are exactly rouge-score's (lower-case, runs of [a-z0-9], Porter stems
    of tokens longer than 3 characters). Letters, digits and marks outside ASCII are kept as parts
    of words (stemming only applies to ASCII tokens), scripts without word spaces give one token per
    character, and symbols of category So (emoji) one token each.
    """

    def __init__(self, use_stemmer: bool = True):
        self.use_stemmer = use_stemmer

    def tokenize(self, text: str) -> list[str]:
        tokens = _TOKEN.findall(text.lower())
        if self.use_stemmer:
            tokens = [_stem(t) if len(t) > 3 and t.isascii() else t for t in tokens]
        return [t for t in tokens if t]


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem import porter

    return porter.PorterStemmer()  # the stemmer rouge-score's DefaultTokenizer uses


@lru_cache(maxsize=100_000)
def _stem(token: str) -> str:
    return _stemmer().stem(token)


TOKENIZER = MultilingualTokenizer(use_stemmer=True)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=TOKENIZER)


def _rouge_pair(prediction: str, reference: str, field: str) -> float:
    value = getattr(_rouge().score(reference, prediction)["rougeL"], field)
    if value == 0:
        if not TOKENIZER.tokenize(prediction) and not TOKENIZER.tokenize(reference):
            # nothing to compare token-wise (e.g. "!!!"): equal texts still score full marks
            return 1.0 if prediction.split() == reference.split() else 0.0
    return value


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    return 100.0 * max(_rouge_pair(prediction, r, "fmeasure") for r in references)


def rouge_l_precision(prediction: str, references: Sequence[str]) -> float:
    return 100.0 * max(_rouge_pair(prediction, r, "precision") for r in references)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    p = normalize(prediction)
    return 100.0 * any(p == normalize(r) for r in references)


def _leading_option(text: str) -> str | None:
    text = text.lstrip()
    return text[0] if text and text[0] in "ABCD" else None


def option_accuracy(prediction: str, references: Sequence[str]) -> float:
    """TRACE (C-STANCE, FOMC, ScienceQA): the first character of the prediction is an option
    letter A-D and equals the first character of the reference ("B. because..." vs "B": 100)."""
    p = _leading_option(prediction)
    return 100.0 * (p is not None and any(p == _leading_option(r) for r in references))


_NUMBER = re.compile(r"\d+\.?\d*")  # TRACE's NumGLUE-ds pattern: unsigned, no thousands separators


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def number_accuracy(prediction: str, references: Sequence[str]) -> float:
    """TRACE (NumGLUE-cm, NumGLUE-ds): the last number in the prediction is within 1e-3 of the
    reference (|difference|; TRACE omits the absolute value). A reference that is not a number
    (NumGLUE-cm has "August") is compared by normalised exact match."""
    found = _NUMBER.findall(prediction)
    last = float(found[-1]) if found else None
    for r in references:
        ref = _as_number(r)
        if ref is None:
            if normalize(prediction) == normalize(r):
                return 100.0
        elif last is not None and abs(last - ref) < 1e-3:
            return 100.0
    return 0.0


_LITERAL = re.compile(r"<(STR|NUM|CHAR)_LIT:(.*?)>", re.S)


def restore_literals(code: str) -> str:
    """TRACE's Py150 post-processing: bare placeholders become "0" (<NUM_LIT>) or nothing
    (<STR_LIT>, <CHAR_LIT>); <STR_LIT:v>, <NUM_LIT:v>, <CHAR_LIT:v> become v."""
    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    return _LITERAL.sub(lambda m: m.group(2), code)


def edit_similarity(prediction: str, references: Sequence[str]) -> float:
    """TRACE (Py150): fuzzy ratio x100 after `restore_literals` on both sides, unrounded; an empty
    prediction or reference (after restoring) scores 0, as in TRACE."""
    from rapidfuzz import fuzz

    p = restore_literals(prediction)
    best = 0.0
    for r in map(restore_literals, references):
        if p and r:
            best = max(best, fuzz.ratio(p, r))
    return best


SCORERS: dict[str, Scorer] = {
    "rougeL": rouge_l,
    "rougeL_precision": rouge_l_precision,
    "exact_match": exact_match,
    "option_accuracy": option_accuracy,
    "number_accuracy": number_accuracy,
    "edit_similarity": edit_similarity,
}
SCORER_NAMES = tuple(SCORERS)


def check_scorer(name: str) -> str:
    if name not in SCORERS:
        raise ValueError(f"unknown scorer '{name}' (known: {', '.join(SCORER_NAMES)})")
    return name


def score(name: str, prediction: str, references: Sequence[str]) -> float:
    return SCORERS[check_scorer(name)](prediction, references)
