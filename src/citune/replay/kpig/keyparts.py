"""Key parts κ(I) of an instruction (KPIG, METHODS.md 4.1): the spans that decide what a correct
response looks like — label set or answer options, output format, length or style constraints.

Spans are character offsets [start, end) into the instruction, merged when they overlap or
are separated only by spaces, commas, colons or dashes (never across a sentence end). Two extractors:

- `heuristic` (default, offline, deterministic): quoted strings; words of the instruction's closed
  label set; the clauses that carry a constraint cue ("answer with", "output", "return", "only",
  "must", "one of", "either ... or", "yes or no", "in the format", numbers with units, plus
  "should", "need to", "have to", "whether ... or" and comparative bounds such as "at most").
- `llm`: a local transformers model or an OpenAI-compatible endpoint returns a JSON list of exact
  substrings; a substring not found verbatim is discarded. After `kpig.retries` invalid answers
  the instruction falls back to the heuristic spans, which is counted and warned about.

Results are cached in the keyed store `<cache>/keyparts/` (citune.cache) by (extractor, model, text, labels).
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from citune.cache import code_digest, content_key, store
from citune.errors import InputError
from citune.data import instructions
from citune.data.instructions import heuristic_spans, join_spans, label_sets, locate
from citune.models.llm import LLMClient, NoValidAnswer
from citune.spans import Span, merge_spans

if TYPE_CHECKING:
    from citune.config import Config
    from citune.replay.kpig.config import KPIGConfig
    from citune.types import Stream, Task

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- LLM access (local model or endpoint)

def llm_client(kcfg: "KPIGConfig", cache_dir: Path | None = None) -> LLMClient:
    """The model KPIG asks for key parts and instruction variants: the endpoint when one is set, else the
    local model."""
    if not kcfg.endpoint_url and not kcfg.extractor_model:
        raise InputError("the llm extractor/rewriter needs kpig.extractor_model (a local model) or "
                         "kpig.endpoint_url", "replay.kpig")
    return LLMClient(endpoint_url=kcfg.endpoint_url, endpoint_model=kcfg.endpoint_model,
                     local_model=kcfg.extractor_model, api_key_env=kcfg.api_key_env, timeout=kcfg.llm_timeout,
                     max_new_tokens=kcfg.llm_max_new_tokens, cache_dir=cache_dir, config_key="replay.kpig")


def parse_json_list(answer: str) -> list[str] | None:
    """The JSON list of strings in a model answer (code fences and chatter around it tolerated), or None."""
    start, end = answer.find("["), answer.rfind("]")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(answer[start: end + 1])
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


KEYPARTS_PROMPT = """Below is a task instruction. List its key parts: the exact phrases that decide what a correct \
response looks like (the label set or answer options, the output format, length or style constraints, and \
task-specific entities). Copy every key part exactly as it is written in the instruction. Answer with a JSON list \
of strings and nothing else.
{labels}
Instruction:
{instruction}"""


# ---------------------------------------------------------------- the cached extractor

class KeyPartExtractor:
    """Key-part spans of instructions with the configured extractor, cached on disk.

    `stats` counts llm calls, discarded (not verbatim) substrings and heuristic fallbacks.
    """

    def __init__(self, kcfg: "KPIGConfig", cache_dir: Path | None = None):
        self.kcfg = kcfg
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.stats: Counter = Counter()

    @property
    def model_id(self) -> str:
        k = self.kcfg
        if k.extractor == "heuristic":
            return f"heuristic:{code_digest(instructions)}"  # the extractor's code: a change misses old entries
        return f"{k.endpoint_url}|{k.endpoint_model}" if k.endpoint_url else str(k.extractor_model)

    def spans(self, instruction: str, labels: Sequence[str] | None = None) -> list[Span]:
        return self.spans_many([(instruction, list(labels or []))])[0]

    def spans_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[Span]]:
        """Spans of each (instruction, closed labels), looked up in and added to the cache in one batch."""
        keys = [content_key(self.kcfg.extractor, self.model_id, ins, *sorted(labels)) for ins, labels in items]
        cache = store(self.cache_dir / "keyparts", "json") if self.cache_dir is not None else None
        found = cache.get_many(keys) if cache is not None else {}
        out, new = [], {}
        for key, (instruction, labels) in zip(keys, items):
            if key in found:
                out.append([(int(s), int(e)) for s, e in found[key]])
                continue
            if self.kcfg.extractor == "heuristic":
                spans, ok = heuristic_spans(instruction, list(labels)), True
            else:
                spans, ok = self._llm_spans(instruction, list(labels))
            if ok:
                new[key] = [list(s) for s in spans]
            out.append(spans)
        if cache is not None:
            cache.put_many(new)
        return out

    def _llm_spans(self, instruction: str, labels: Sequence[str]) -> tuple[list[Span], bool]:
        hint = f"The task's answers are always one of: {', '.join(labels)}.\n" if labels else ""
        prompt = KEYPARTS_PROMPT.format(labels=hint, instruction=instruction)

        def parse(answer: str) -> list[str]:
            self.stats["llm_calls"] += 1
            parts = parse_json_list(answer)
            if parts is None:
                raise ValueError("no JSON list of strings in the answer")
            return parts

        try:
            parts = llm_client(self.kcfg, self.cache_dir).ask(prompt, parse, self.kcfg.retries)
        except NoValidAnswer:
            self.stats["fallbacks"] += 1
            log.warning("key parts: no valid JSON list after %d tries; heuristic spans used for %r",
                        self.kcfg.retries + 1, instruction[:60])
            return heuristic_spans(instruction, labels), False
        found = [p for p in parts if p and p in instruction]
        self.stats["discarded"] += len(parts) - len(found)
        return join_spans(instruction, locate(instruction, found)), True

    def task_spans(self, task: "Task") -> dict[str, list[Span]]:
        """Spans of every instruction of `task` (training and test splits), with its closed labels."""
        labels = label_sets(task)
        instructions = list(dict.fromkeys(x.instruction for x in task.train + task.test))
        return dict(zip(instructions, self.spans_many([(ins, labels.get(ins) or []) for ins in instructions])))


# ---------------------------------------------------------------- `citune keyparts`

def mark(text: str, spans: Sequence[Span]) -> str:
    """Rich markup of `text` with each key part shown as «part» in bold."""
    from rich.markup import escape

    out, pos = [], 0
    for s, e in merge_spans(spans):
        out += [escape(text[pos:s]), "[bold yellow]«", escape(text[s:e]), "»[/bold yellow]"]
        pos = e
    out.append(escape(text[pos:]))
    return "".join(out)


def keyparts_report(cfg: "Config", stream: "Stream", cache_dir: Path) -> str:
    """Each task's instructions with their key parts marked (rich markup), for a person to check."""
    from rich.markup import escape

    extractor = KeyPartExtractor(cfg.replay.kpig, cache_dir)
    lines = [f"[bold]Key parts[/bold] (extractor: {cfg.replay.kpig.extractor}); «…» marks a key part", ""]
    total_chars = key_chars = without = n = 0
    for group, tasks in (("task", stream.tasks), ("held-out task", stream.heldout)):
        for task in tasks:
            labels = label_sets(task)
            spans = extractor.task_spans(task)
            lines.append(f"[bold cyan]{group} {escape(task.name)}[/bold cyan] ({len(spans)} instructions)")
            for i, (ins, sp) in enumerate(spans.items(), 1):
                n += 1
                total_chars += len(ins)
                key_chars += sum(e - s for s, e in sp)
                without += not sp
                lab = labels.get(ins)
                tail = f"  [dim](labels: {escape(' | '.join(lab))})[/dim]" if lab else ""
                lines.append(f"  {i}. {mark(ins, sp)}{tail}")
            lines.append("")
    share = 100.0 * key_chars / total_chars if total_chars else 0.0
    lines.append(f"{n} instructions; {share:.1f}% of their characters are key parts; {without} without any key part")
    if extractor.stats:
        lines.append("llm extractor: " + ", ".join(f"{k} {v}" for k, v in sorted(extractor.stats.items())))
    return "\n".join(lines)
