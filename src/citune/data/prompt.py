"""Prompt = instruction + "\\n\\n" + input, wrapped in the chat template when asked, encoded the same
way in training and evaluation.

- BOS: added wherever the tokenizer's own convention adds it (the leading special tokens of
  `tokenizer(text)`), unless the chat template already starts the text with them.
- Truncation: a prompt longer than its bound loses tokens of the input only, in the middle
  (`middle`: its head and tail are kept) or from the left (`left`: its end is kept); the instruction
  is never cut unless it alone overflows, and then in its middle, so its head always stays.
- Twins: KPIG compares a prompt with its masked twin (another instruction, the same input); `twin=`
  cuts the input so that both prompts fit, so the two keep the same input tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

_MARK = "\x00CITUNE_INPUT\x00"
Truncation = Literal["middle", "left"]


def prompt_text(instruction: str, input: str) -> str:
    return f"{instruction}\n\n{input}" if input else instruction


def cut(ids: list[int], keep: int, side: Truncation) -> list[int]:
    """`ids` shortened to `keep` tokens: its middle removed, or its left part."""
    keep = max(keep, 0)
    if keep >= len(ids):
        return ids
    if side == "left":
        return ids[len(ids) - keep:]
    head = (keep + 1) // 2
    return ids[:head] + ids[len(ids) - (keep - head):]


def leading_special_ids(tokenizer) -> list[int]:
    """The ids the tokenizer puts before a text of its own accord (BOS for Llama-style tokenizers)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for k in range(len(full) - len(plain) + 1):
        if full[k:k + len(plain)] == plain:
            return list(full[:k])
    return []


@dataclass
class PromptEncoder:
    tokenizer: object
    chat: bool
    truncation: Truncation = "middle"
    _bos: Optional[list[int]] = field(default=None, init=False, repr=False)

    @property
    def bos(self) -> list[int]:
        if self._bos is None:
            self._bos = leading_special_ids(self.tokenizer)
        return self._bos

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _parts(self, instruction: str, input: str) -> tuple[list[int], list[int], list[int]]:
        """Token ids before the input (BOS included), of the input, and after it (template tail)."""
        tok = self.tokenizer
        text = prompt_text(instruction, _MARK if input else "")
        if self.chat and getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        head, _, tail = text.partition(_MARK)
        head_ids = self._encode(head)
        if self.bos and head_ids[:len(self.bos)] != self.bos:
            head_ids = self.bos + head_ids
        return head_ids, self._encode(input), self._encode(tail)

    def encode_prompt(self, instruction: str, input: str, max_len: int,
                      twin: Optional[str] = None) -> tuple[list[int], bool]:
        """(prompt ids of at most `max_len` tokens, whether anything was cut). With `twin`, the input
        is cut so that the prompt of `twin` (same input) would fit too."""
        head, body, tail = self._parts(instruction, input)
        whole = len(head) + len(body) + len(tail)
        frame = len(head) + len(tail)
        if twin is not None:
            twin_head, _, twin_tail = self._parts(twin, input)
            frame = max(frame, len(twin_head) + len(twin_tail))
        body = cut(body, max_len - frame, self.truncation)
        if len(head) + len(tail) > max_len:  # the instruction alone overflows: cut its middle
            head, body = cut(head, max_len - len(tail), "middle"), []
        ids = (head + body + tail)[:max_len]
        return ids, len(ids) < whole

    def prompt_ids(self, instruction: str, input: str, max_len: int, twin: Optional[str] = None) -> list[int]:
        return self.encode_prompt(instruction, input, max_len, twin)[0]

    def response_ids(self, output: str) -> list[int]:
        return self._encode(output) + [self.tokenizer.eos_token_id]

    def example(self, instruction: str, input: str, output: str, max_len: int,
                twin: Optional[str] = None) -> tuple[list[int], list[int]]:
        """(input_ids, labels) with labels -100 on prompt tokens: the loss is on the response only."""
        resp = self.response_ids(output)
        resp = resp[: max(max_len - 8, 1)]  # a response longer than the window keeps its head
        prompt = self.prompt_ids(instruction, input, max_len - len(resp), twin)
        return prompt + resp, [-100] * len(prompt) + resp
