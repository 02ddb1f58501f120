"""V-score checks (KPIG, METHODS.md 4.6): does an output satisfy the instruction's verifiable constraints?

A task's instruction has a *closed label set* when its training outputs are few distinct
normalised strings; the prediction must then be one of them. Otherwise the mechanically
checkable constraints are parsed from the instruction's key-part sentences (key parts from the
offline heuristic extractor when none are given): yes/no, a number, one of listed options, a
comma-separated list, a maximum length, non-empty. A checker answers None when nothing is
checkable; such instances are excluded from the V-score and counted by the caller. A parsed
constraint that fewer than 90 % of the task's own reference outputs satisfy is dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from citune.types import Instance, Task
from citune.data.instructions import closed_labels, heuristic_spans, label_sets
from citune.data.text import normalize, sentence_spans

Span = tuple[int, int]
Checker = Callable[[Instance, str], "bool | None"]

REFERENCE_PASS = 0.9  # share of a task's reference outputs a parsed constraint must accept

_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_NUM = r"(\d+|" + "|".join(_NUMBER_WORDS) + r"|single)"
_UNIT = r"(words?|sentences?|characters?|letters?|tokens?)"
_OUTPUT_CUE = re.compile(
    r"\b(answer|output|return|respond|reply|generate|write|produce|provide|give|"
    r"list(?=\s+(?:all|the|every|each|them))|state|print|count|"
    r"compute|calculate|find|choose|select|pick|classify|label|identify|summari[sz]e|translate|rewrite|"
    r"construct|create|compose|complete|predict|determine)\w*\b", re.I)
_CHOICE_CUE = re.compile(r"\b(one of|either|answer with|respond with|reply with|output|return|choose|select|"
                         r"pick|classify|label|options?|categor(?:y|ies)|class(?:es)?|generate|indexes)\b", re.I)
_EXAMPLE_CUE = re.compile(r"\b(e\.g\b|for example|for instance|such as|like)\b", re.I)
_QUOTED = re.compile(r"\"([^\"\n]{1,80})\"|“([^”\n]{1,80})”|(?<![\w'])'([^'\n]{1,80})'(?![\w])|`([^`\n]{1,80})`")
_JOINER = re.compile(r"[\s,/]*(?:(?:or|and)\b[\s,/]*)?", re.I)
_YES_NO = re.compile(r"\b(yes|true)\b[\"'”’]?\s*(?:or|/|and|,)\s*[\"'“‘]?(no|false)\b", re.I)
_EITHER = re.compile(r"\beither\s+((?:\S+\s+){0,2}?\S+?)\s+or\s+((?:\S+\s+){0,2}?\S+?)(?=[.,;:!?]|$)", re.I)
_NUMBER_ASK = re.compile(r"\b(integers?|numeric(?:al)?\s+(?:value|answer|result)|"
                         r"(?:a|the)\s+(?:single\s+|whole\s+|real\s+)?number\b(?!\s+of\s+\w+\s+(?:is|are))|how many|count\s+(?:the|how))\b", re.I)
_LIST_ASK = re.compile(r"\b(comma[- ]separated|separated by (?:a )?commas?|(?:as |in )?a list|"
                       r"list (?:all|of|the|every))\b", re.I)
_MAX_LEN = re.compile(r"\b(at most|no more than|not more than|up to|a maximum of|maximum of|not exceed(?:ing)?|"
                      r"fewer than|less than|under|shorter than)\s+" + _NUM + r"\s+" + _UNIT + r"\b", re.I)
_ONE_SENTENCE = re.compile(r"\b(?:in|just|only|as|a)\s+(?:a\s+|one\s+)?(single|one)\s+sentence\b", re.I)
_STRICT = ("fewer than", "less than", "under", "shorter than")
_NUMBER_RE = re.compile(r"[-+]?(\d[\d,]*(\.\d+)?|\.\d+)(e[-+]?\d+)?%?")


# ---------------------------------------------------------------- constraints

@dataclass(frozen=True)
class Constraint:
    kind: str  # labels | yes/no | number | options | list | max_length | non_empty
    values: tuple = ()

    def check(self, prediction: str) -> bool:
        p = normalize(prediction)
        if not p:
            return False
        if self.kind in ("labels", "yes/no", "options"):
            return p in self.values or p.strip("\"'`“”‘’ ") in self.values
        if self.kind == "number":
            return bool(_NUMBER_RE.fullmatch(p.replace(" ", "")))
        if self.kind == "list":
            return _is_list(prediction.strip())
        if self.kind == "max_length":
            limit, unit = self.values
            return _length(prediction, unit) <= limit
        return True  # non_empty


def _is_list(text: str) -> bool:
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return not inner or all(item.strip() for item in inner.split(","))
    return bool(text) and all(item.strip() for item in text.split(","))


def _length(text: str, unit: str) -> int:
    if unit.startswith(("character", "letter")):
        return len(text.strip())
    if unit.startswith("sentence"):
        return len(sentence_spans(text.strip()))
    return len(text.split())


def _number(word: str) -> int:
    word = word.lower()
    return 1 if word == "single" else _NUMBER_WORDS[word] if word in _NUMBER_WORDS else int(word)


def _quoted_options(sentence: str) -> list[str]:
    """Short quoted strings listed together ('"A", "B" or "C"') in a sentence that offers a choice.

    Quoted examples ("for example 'x' and 'y'") and lone quoted words are not options.
    """
    if not _CHOICE_CUE.search(sentence):
        return []
    runs: list[list[re.Match]] = []
    for m in _QUOTED.finditer(sentence):
        if runs and _JOINER.fullmatch(sentence[runs[-1][-1].end(): m.start()]):
            runs[-1].append(m)
        else:
            runs.append([m])
    out = []
    for run in runs:
        texts = [next(g for g in m.groups() if g is not None) for m in run]
        if len(run) >= 2 and not _is_example(sentence[: run[0].start()]) and all(len(t.split()) <= 4 for t in texts):
            out += [normalize(t) for t in texts]
    return out


def _is_example(before: str) -> bool:
    """Whether a quote that follows `before` is an example ("for example 'x'"), not an option."""
    clause = re.split(r"[,;:(]", before)[-1]
    return bool(_EXAMPLE_CUE.search(clause)) or bool(re.search(r"\be\.g\b[^)]*$", before[-60:]))


def _options(sentences: list[str]) -> list[Constraint]:
    options: list[str] = []
    for s in sentences:
        options += _quoted_options(s)
        for m in _EITHER.finditer(s):
            options += [normalize(m.group(1)), normalize(m.group(2))]
    options = list(dict.fromkeys(o for o in options if o))
    if len(options) < 2:
        return []
    if set(options) in ({"yes", "no"}, {"true", "false"}):
        return [Constraint("yes/no", tuple(sorted(options, reverse=True)))]
    return [Constraint("options", tuple(options))]


def _yes_no(text: str) -> list[Constraint]:
    m = _YES_NO.search(text)
    if m:
        pair = ("yes", "no") if m.group(1).lower() == "yes" else ("true", "false")
        return [Constraint("yes/no", pair)]
    return []


def _max_length(text: str) -> list[Constraint]:
    out = []
    for m in _MAX_LEN.finditer(text):
        n = _number(m.group(2)) - (1 if m.group(1).lower() in _STRICT else 0)
        unit = m.group(3).lower().rstrip("s") + "s"
        out.append(Constraint("max_length", (n, unit)))
    if _ONE_SENTENCE.search(text):
        out.append(Constraint("max_length", (1, "sentences")))
    return out


def parse_constraints(sentences: Iterable[str]) -> list[Constraint]:
    """The checkable constraints stated by these sentences (duplicates removed, yes/no over options)."""
    sentences = [s for s in sentences if s.strip()]
    text = " ".join(sentences)
    found = _yes_no(text) or _options(sentences)
    asks = [s for s in sentences if _OUTPUT_CUE.search(s)]
    if not found and any(_NUMBER_ASK.search(s) for s in asks):
        found.append(Constraint("number"))
    if not found and any(_LIST_ASK.search(s) for s in asks):
        found.append(Constraint("list"))
    found += _max_length(text)
    if asks:
        found.append(Constraint("non_empty"))
    return list(dict.fromkeys(found))


def key_sentences(instruction: str, spans: Sequence[Span] | None) -> list[str]:
    """The sentences of `instruction` that hold a key part (all of them when `spans` is None)."""
    sents = sentence_spans(instruction)
    if spans is None:
        return [instruction[s:e] for s, e in sents]
    return [instruction[s:e] for s, e in sents if any(a < e and b > s for a, b in spans)]


def instruction_constraints(instruction: str, labels: Sequence[str] | None,
                            spans: Sequence[Span] | None = None) -> list[Constraint]:
    if labels:
        return [Constraint("labels", tuple(labels))]
    return parse_constraints(key_sentences(instruction, spans))


def validated(constraints: Sequence[Constraint], references: Sequence[str],
              min_pass: float = REFERENCE_PASS) -> list[Constraint]:
    """Drop parsed constraints that the task's own reference outputs break (fewer than `min_pass` of
    them satisfy it): a misread sentence, not a constraint of the task. Kept as is without references."""
    if not references:
        return list(constraints)
    return [c for c in constraints if sum(c.check(r) for r in references) >= min_pass * len(references)]


def build_checker(task: Task, keyparts: Mapping[str, Sequence[Span]] | None = None) -> Checker:
    """A checker `(instance, prediction) -> bool | None` for the instances of `task`.

    `keyparts` maps an instruction to its key-part spans; the spans of an instruction it does not
    list (all of them when it is None) come from the offline heuristic extractor. Constraints are
    parsed from the sentences that hold key parts. Closed label sets win over parsed constraints.
    """
    data = task.train or task.test
    labels = label_sets(task)
    whole = closed_labels([x.output for x in data])
    refs: dict[str, list[str]] = {}
    for x in data:
        refs.setdefault(x.instruction, []).append(x.output)
    memo: dict[str, list[Constraint]] = {}

    def constraints(instruction: str) -> list[Constraint]:
        if instruction not in memo:
            own = labels.get(instruction, whole)
            spans = (keyparts or {}).get(instruction)
            if spans is None:
                spans = heuristic_spans(instruction, own)
            found = instruction_constraints(instruction, own, spans)
            memo[instruction] = validated(found, refs.get(instruction, []))
        return memo[instruction]

    def check(instance: Instance, prediction: str) -> bool | None:
        cs = constraints(instance.instruction)
        return all(c.check(prediction) for c in cs) if cs else None

    return check
