"""One client for every method that asks a language model for text (InsCL's llm tagger, KPIG's key-part
extractor and instruction rewriter): an OpenAI-compatible `/v1/chat/completions` endpoint (stdlib
urllib), or a local causal LM loaded by `models.loading` (a directory, a .gguf file, the embedded or the
tiny model).

The first attempt is greedy; a retry samples (temperature 0.7; a local model seeded by the prompt and the
attempt, the global RNG untouched), so that it can answer differently. A connection failure, a timeout or
HTTP 408/429/5xx pauses (exponential backoff) before the next attempt; any other HTTP error is final.
The API key is read from the environment variable the config names and is never logged or stored.
"""
from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

from citune.errors import InputError
from citune.seeds import stable_seed

T = TypeVar("T")

_LOCAL: dict[tuple[str, str], tuple] = {}  # (model name, cache dir) -> (model, tokenizer), loaded once


class LLMError(InputError):
    """The model cannot be asked: the endpoint refused the request or never answered."""


class NoValidAnswer(Exception):
    """Every attempt answered, but no answer was valid; `reason` is the last one's problem."""

    def __init__(self, attempts: int, reason: str):
        self.attempts, self.reason = attempts, reason
        super().__init__(f"no valid answer after {attempts} attempts ({reason})")


class _Transient(Exception):
    """A failure worth retrying after a pause."""


def chat_completions_url(url: str) -> str:
    """Accept a server root, a `/v1` base or the full `/v1/chat/completions` path."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


class LLMClient:
    """`complete(prompt, attempt)`: one answer; `ask(prompt, parse, retries)`: the first valid one."""

    def __init__(self, *, endpoint_url: str | None = None, endpoint_model: str | None = None,
                 local_model: str | None = None, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_new_tokens: int = 256, cache_dir: Path | None = None, backoff: float = 1.0,
                 config_key: str = "replay"):
        if not endpoint_url and not local_model:
            raise InputError("an llm needs a local model or an endpoint_url", "config", config_key)
        self.url = chat_completions_url(endpoint_url) if endpoint_url else None
        self.endpoint_model, self.local_model, self.api_key_env = endpoint_model or "", local_model, api_key_env
        self.timeout, self.max_new_tokens, self.backoff = timeout, max_new_tokens, backoff
        self.cache_dir, self.config_key = cache_dir, config_key

    @property
    def name(self) -> str:
        """What answers, as error lines name it: the endpoint's URL or the local model."""
        return self.url or str(self.local_model)

    def complete(self, prompt: str, attempt: int = 0) -> str:
        return self._endpoint(prompt, attempt) if self.url else self._local(prompt, attempt)

    def ask(self, prompt: str, parse: Callable[[str], T], retries: int) -> T:
        """`parse(answer)` of the first answer it accepts (it raises ValueError otherwise) within
        `retries + 1` attempts; NoValidAnswer when every attempt answered invalidly, LLMError when the
        last attempt failed to get an answer at all."""
        last = ""
        for attempt in range(retries + 1):
            try:
                return parse(self.complete(prompt, attempt))
            except _Transient as e:
                last = str(e)
                if attempt == retries:
                    raise LLMError(f"no answer after {retries + 1} attempts ({last})", self.name,
                                   self.config_key) from None
                time.sleep(self.backoff * 2 ** attempt)
            except ValueError as e:
                last = str(e)
        raise NoValidAnswer(retries + 1, last)

    def _endpoint(self, prompt: str, attempt: int) -> str:
        payload = {"model": self.endpoint_model, "temperature": 0.0 if attempt == 0 else 0.7,
                   "max_tokens": self.max_new_tokens, "messages": [{"role": "user", "content": prompt}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode("utf-8"), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                body = resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            if e.code in (408, 429) or e.code >= 500:
                raise _Transient(f"HTTP {e.code}") from None
            raise LLMError(f"the endpoint refused the request: HTTP {e.code} {e.reason}", self.url,
                           self.config_key) from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
            raise _Transient(f"cannot reach the endpoint ({getattr(e, 'reason', e)})") from None
        try:
            return json.loads(body)["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError("the response is not an OpenAI chat completion") from None

    def _local(self, prompt: str, attempt: int) -> str:
        import torch

        model, tok = self._local_model()
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
        seed = stable_seed(prompt, attempt, bits=32)
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(seed)
            out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=attempt > 0,
                                 temperature=0.7 if attempt > 0 else None, top_p=None, top_k=None,
                                 pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def _local_model(self):
        from citune.config import ModelConfig
        from citune.models.loading import load_base
        from citune.paths import cache_root

        cache = Path(self.cache_dir) if self.cache_dir else cache_root()
        key = (str(self.local_model), str(cache))
        if key not in _LOCAL:
            model, tok, _ = load_base(ModelConfig(name=self.local_model), cache)
            _LOCAL[key] = (model.eval(), tok)
        return _LOCAL[key]
