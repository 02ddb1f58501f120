"""Per-instance scores: ROUGE-L F1 (max over references, x100) and normalised exact match."""
from __future__ import annotations

from functools import lru_cache

from citune.evaluation.text import normalize


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: list[str] | tuple[str, ...]) -> float:
    scorer = _scorer()
    return 100.0 * max(scorer.score(ref, prediction)["rougeL"].fmeasure for ref in references)


def exact_match(prediction: str, references: list[str] | tuple[str, ...]) -> float:
    p = normalize(prediction)
    return 100.0 * any(p == normalize(r) for r in references)
