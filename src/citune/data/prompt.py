"""Prompt = instruction + "\\n\\n" + input, wrapped in the chat template when asked; encoding with
truncation of the input only (never of the instruction's head or of the response)."""
from __future__ import annotations

from dataclasses import dataclass

_MARK = "\x00CITUNE_INPUT\x00"


def prompt_text(instruction: str, input: str) -> str:
    return f"{instruction}\n\n{input}" if input else instruction


@dataclass
class PromptEncoder:
    tokenizer: object
    chat: bool

    def _parts(self, instruction: str, input: str) -> tuple[list[int], list[int], list[int]]:
        """Token ids before the input, of the input, and after it (template tail included)."""
        tok = self.tokenizer
        text = prompt_text(instruction, _MARK if input else "")
        if self.chat and getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        head, _, tail = text.partition(_MARK)
        enc = lambda s: tok(s, add_special_tokens=False)["input_ids"] if s else []  # noqa: E731
        return enc(head), enc(input), enc(tail)

    def prompt_ids(self, instruction: str, input: str, max_len: int) -> list[int]:
        head, body, tail = self._parts(instruction, input)
        room = max_len - len(head) - len(tail)
        if room < len(body):
            body = body[: max(room, 0)]
        ids = head + body + tail
        # An instruction longer than max_len keeps its head and the template tail.
        return ids if len(ids) <= max_len else head[: max_len - len(tail)] + tail

    def response_ids(self, output: str) -> list[int]:
        ids = self.tokenizer(output, add_special_tokens=False)["input_ids"]
        return ids + [self.tokenizer.eos_token_id]

    def example(self, instruction: str, input: str, output: str, max_len: int) -> tuple[list[int], list[int]]:
        """(input_ids, labels) with labels -100 on prompt tokens: the loss is on the response only."""
        resp = self.response_ids(output)
        resp = resp[: max(max_len - 8, 1)]  # a response longer than the window keeps its head
        prompt = self.prompt_ids(instruction, input, max_len - len(resp))
        return prompt + resp, [-100] * len(prompt) + resp
