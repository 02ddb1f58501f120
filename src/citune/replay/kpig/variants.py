"""Instruction diversity (KPIG, METHODS.md 4.6): K variants per instruction that keep every key part
verbatim and rewrite only the general description.

- `template` (default, offline, deterministic): rephrasings of common framing phrases outside the
  key parts, reordering of sentences (key-part sentences first or last), and paraphrase frames
  ("Your task: ...", "Follow these instructions: ...").
- `llm`: the four rewrite operators (concretise, add reasoning, add a constraint, breadth rewrite)
  asked of the model configured for the llm key-part extractor (cached on disk).

Any candidate that lost a key part is rejected and counted. Training instances then draw their
instruction uniformly from the original and its variants (`diversify`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from citune.cache import content_key, store
from citune.types import TrainExample
from citune.data.text import sentence_spans
from citune.data.instructions import join_spans, locate, span_texts
from citune.replay.kpig.keyparts import llm_client
from citune.spans import Span

if TYPE_CHECKING:
    from citune.replay.kpig.config import KPIGConfig

FRAMES = (
    "Your task: {}",
    "Follow these instructions: {}",
    "{} Answer according to the instructions above.",
    "Instructions: {}",
    "Read the following task description carefully. {}",
    "Here is what you have to do. {}",
)
REPHRASINGS = (
    (r"\bIn this task,? you are given\b", "You are given"),
    (r"\bIn this task,? you will be (given|shown|presented with)\b", r"You will be \1"),
    (r"\bIn this task,? you need to\b", "You need to"),
    (r"\bIn this task,? you have to\b", "You have to"),
    (r"\bYour task is to\b", "You are asked to"),
    (r"\bYour job is to\b", "Your task is to"),
    (r"\bYou are given\b", "You are provided with"),
    (r"\byou are given\b", "you are provided with"),
    (r"\bYou will be given\b", "You are given"),
    (r"\bGiven\b", "For"),
)
OPERATORS = {
    "concretise": "Rewrite the general description of the instruction so that it is more concrete and specific.",
    "add reasoning": "Rewrite the instruction so that it asks to reason about the input carefully before giving the "
                     "answer, without changing what the final answer must be.",
    "add a constraint": "Rewrite the instruction adding one more requirement that a correct answer to the original "
                        "instruction already satisfies.",
    "breadth rewrite": "Write a differently worded instruction for exactly the same task, in your own words.",
}
REWRITE_PROMPT = """{operator}
Keep each of these key parts exactly as written, character for character: {parts}
The correct response to the new instruction must be the same as to the original one.
Reply with the new instruction only.

Original instruction:
{instruction}"""


# ---------------------------------------------------------------- template rewrites

def _outside(spans: Sequence[Span], start: int, end: int) -> bool:
    return all(end <= s or start >= e for s, e in spans)


def rephrase(text: str, spans: Sequence[Span]) -> str:
    """Framing phrases rewritten where they do not touch a key part (the first applicable rule of each kind)."""
    for pattern, repl in REPHRASINGS:
        m = re.search(pattern, text)
        if m and _outside(spans, m.start(), m.end()):
            new = text[: m.start()] + m.expand(repl) + text[m.end():]
            shift = len(new) - len(text)
            spans = [(s + shift, e + shift) if s >= m.end() else (s, e) for s, e in spans]
            text = new
    return text


def units(text: str, spans: Sequence[Span]) -> list[tuple[Span, bool]]:
    """Sentences of `text` (merged where a key part crosses them), each with whether it holds a key part."""
    out: list[list] = []
    for s, e in sentence_spans(text):
        if out and any(a < s and b > out[-1][0][1] for a, b in spans):
            out[-1][0] = (out[-1][0][0], e)
        else:
            out.append([(s, e), False])
    for unit in out:
        unit[1] = any(a < unit[0][1] and b > unit[0][0] for a, b in spans)
    return [(u[0], u[1]) for u in out]


def reorder(text: str, spans: Sequence[Span], keys_first: bool) -> str:
    """Sentences regrouped: key-part sentences first (or last), each group in its original order."""
    us = units(text, spans)
    key = [text[s:e] for (s, e), k in us if k]
    rest = [text[s:e] for (s, e), k in us if not k]
    return " ".join(key + rest if keys_first else rest + key)


def template_candidates(instruction: str, spans: Sequence[Span]) -> list[str]:
    """Deterministic rewrites: rephrased and reordered bodies interleaved with paraphrase frames."""
    parts = span_texts(instruction, spans)
    rephrased = rephrase(instruction, spans)
    moved = variant_spans(rephrased, parts)
    bodies = list(dict.fromkeys([instruction, rephrased, reorder(instruction, spans, True),
                                 reorder(rephrased, moved, False), reorder(rephrased, moved, True)]))
    out = []
    for i in range(max(len(bodies) - 1, len(FRAMES))):
        out += bodies[i + 1: i + 2] + [FRAMES[i].format(bodies[i % len(bodies)])] * (i < len(FRAMES))
    return out + [frame.format(body) for frame in FRAMES for body in bodies]


# ---------------------------------------------------------------- validation and variants

def keeps_key_parts(variant: str, parts: Iterable[str]) -> bool:
    return all(p in variant for p in parts)


def filter_variants(instruction: str, candidates: Iterable[str], parts: Sequence[str], k: int) -> tuple[list[str], int]:
    """The first `k` distinct candidates that differ from `instruction` and keep every key part,
    and how many candidates were rejected for losing one."""
    kept, rejected = [], 0
    for c in candidates:
        c = c.strip()
        if len(kept) == k:
            break
        if not c or c == instruction or c in kept:
            continue
        if keeps_key_parts(c, parts):
            kept.append(c)
        else:
            rejected += 1
    return kept, rejected


def _clean(answer: str) -> str:
    answer = answer.strip()
    answer = re.sub(r"^(new|rewritten)? ?instruction\s*:\s*", "", answer, flags=re.IGNORECASE)
    return answer.strip().strip('"').strip()


def llm_candidates(instruction: str, parts: Sequence[str], k: int, kcfg: "KPIGConfig",
                   cache_dir: Path | None = None) -> list[str]:
    """`k` rewrites by the four operators in turn, cached by (model, instruction, parts, operator, n)."""
    names = list(OPERATORS)
    out = []
    for n in range(k):
        op = names[n % len(names)]
        prompt = REWRITE_PROMPT.format(operator=OPERATORS[op] + (f" (variant {n // len(names) + 1})" if n >= len(names)
                                                                 else ""),
                                       parts=json.dumps(list(parts), ensure_ascii=False), instruction=instruction)
        out.append(_cached_completion(prompt, kcfg, cache_dir))
    return out


def _cached_completion(prompt: str, kcfg: "KPIGConfig", cache_dir: Path | None) -> str:
    model = f"{kcfg.endpoint_url}|{kcfg.endpoint_model}" if kcfg.endpoint_url else str(kcfg.extractor_model)
    key = content_key(model, prompt)
    cache = store(Path(cache_dir) / "variants", "json") if cache_dir is not None else None
    if cache is not None and (hit := cache.get_many([key])):
        return hit[key]
    text = _clean(llm_client(kcfg, cache_dir).complete(prompt))
    if cache is not None:
        cache.put_many({key: text})
    return text


def make_variants(instruction: str, spans: Sequence[Span], k: int, kcfg: "KPIGConfig",
                  cache_dir: Path | None = None) -> tuple[list[str], int]:
    """Up to `k` variants of `instruction` that keep its key parts, and the number rejected."""
    if k <= 0:
        return [], 0
    parts = span_texts(instruction, spans)
    if kcfg.rewriter == "llm":
        candidates = llm_candidates(instruction, parts, k, kcfg, cache_dir)
    else:
        candidates = template_candidates(instruction, spans)
    return filter_variants(instruction, candidates, parts, k)


def variant_spans(variant: str, parts: Sequence[str]) -> list[Span]:
    """The key-part spans of a variant: where the (verbatim) key parts occur in it."""
    return join_spans(variant, locate(variant, parts))


def diversify(examples: Sequence[TrainExample], variants_by_instruction: Mapping[str, Sequence[str]],
              rng: np.random.Generator) -> list[TrainExample]:
    """Each example shows an instruction drawn uniformly from its original and that one's variants."""
    out = []
    for ex in examples:
        original = ex.shown_instruction
        options = [original, *variants_by_instruction.get(original, ())]
        pick = options[int(rng.integers(len(options)))] if len(options) > 1 else original
        out.append(TrainExample(ex.instance, ex.is_replay, None if pick == ex.instance.instruction else pick))
    return out
