"""Instruction tags, InsTag-style (METHODS §3.4).

Taggers:
- `keyphrase` (default, offline, deterministic): KeyBERT-style — candidate 1..n-grams of content
  words inside each clause (stopwords removed, as KeyBERT's CountVectorizer does), scored by cosine
  similarity of their sentence embedding to the whole instruction's, top-k kept;
- `llm`: an instruction-tuned model prompted with the InsTag prompt to answer
  `[{"tag": ..., "explanation": ...}]` — a local transformers model (`tagger_model`) or an
  OpenAI-compatible endpoint (`endpoint_url`, `endpoint_model`, key from `api_key_env`, never logged).
  Invalid answers are retried, then reported as a `TaggerError`; nothing is dropped silently.

Tags are normalised (lower-case, non-letters → space, simplemma lemmas), near-duplicates merged by
DBSCAN over their embeddings, and each instruction's set de-duplicated. Raw tagger outputs are cached
under `cache_dir / "tags"` by sha256 of (tagger, model, text).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from citune.errors import InputError
from citune.replay.store import content_key, store

if TYPE_CHECKING:
    from citune.config import InsCLConfig

Embed = Callable[[Sequence[str]], np.ndarray]

INSTAG_PROMPT = (
    "You are a tagging system that provides useful tags for instruction intentions to distinguish "
    "instructions for a helpful AI assistant. Below is an instruction:\n[begin]\n{instruction}\n[end]\n"
    'Please provide coarse-grained tags, such as "Spelling and Grammar Check" and "Cosplay", to identify main '
    "intentions of above instruction. Your answer should be a list including titles of tags and a brief "
    "explanation of each tag. Your response have to strictly follow this JSON format: "
    '[{{"tag": str, "explanation": str}}]. Please response in English.'
)
_CHUNK = 32  # tagged instructions written to the cache per batch file

# Words that carry no intention of their own in task definitions, beyond the usual English stopwords.
_BOILERPLATE = {"given", "task", "provided", "following", "based", "example", "examples", "note", "please",
                "asked", "ask", "need", "needs", "using", "use", "also", "like", "make", "sure", "just"}
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_CLAUSE = re.compile(r"[.,;:!?()\[\]{}\"“”‘’`\n]+")


class TaggerError(InputError):
    """The configured tagger gave no usable answer (after its retries)."""


def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | _BOILERPLATE


# ---------------------------------------------------------------- keyphrase tagger

def candidate_phrases(text: str, max_ngram: int = 2) -> list[str]:
    """Distinct n-grams (n ≤ max_ngram) of content words within each clause, in first-seen order."""
    stop = _stopwords()
    out: dict[str, None] = {}
    for clause in _CLAUSE.split(text):
        words = [w for w in (m.group(0).lower() for m in _WORD.finditer(clause)) if w not in stop and len(w) > 1]
        for n in range(1, max_ngram + 1):
            for i in range(len(words) - n + 1):
                out.setdefault(" ".join(words[i:i + n]), None)
    return list(out)


def keyphrase_tags(instructions: Sequence[str], k: int, embed: Embed, max_ngram: int = 2) -> list[list[str]]:
    """Top-k candidate phrases of each instruction by cosine similarity to the instruction (ties: first seen)."""
    cands = [candidate_phrases(s, max_ngram) for s in instructions]
    phrases = list(dict.fromkeys(p for c in cands for p in c))
    if not phrases:
        return [[] for _ in instructions]
    vec = dict(zip(phrases, embed(phrases)))
    whole = embed(list(instructions))
    out = []
    for c, v in zip(cands, whole):
        sims = np.array([float(vec[p] @ v) for p in c])
        out.append([c[i] for i in np.argsort(-sims, kind="stable")[:k]])
    return out


# ---------------------------------------------------------------- llm taggers

def parse_tags(text: str) -> list[str]:
    """The tags of an InsTag JSON answer (code fences and text around the list allowed); ValueError otherwise."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = fenced.group(1) if fenced else text
    start, end = body.find("["), body.rfind("]")
    if start < 0 or end < start:
        raise ValueError("no JSON list in the answer")
    data = json.loads(body[start:end + 1])
    if not isinstance(data, list) or not data:
        raise ValueError("expected a non-empty JSON list")
    tags = []
    for item in data:
        tag = item.get("tag") if isinstance(item, dict) else None
        if not isinstance(tag, str) or not tag.strip():
            raise ValueError('every item needs a non-empty string "tag"')
        tags.append(tag.strip())
    return tags


def chat_completions_url(url: str) -> str:
    """Accept a server root, a `/v1` base or the full `/v1/chat/completions` path."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


class _Transient(Exception):
    """A failure worth retrying after a pause (connection, timeout, 408/429/5xx)."""


class EndpointTagger:
    """Tags from an OpenAI-compatible `/v1/chat/completions` endpoint (stdlib urllib only)."""

    def __init__(self, url: str, model: str, api_key_env: str = "OPENAI_API_KEY", retries: int = 3,
                 timeout: float = 60.0, backoff: float = 1.0):
        self.url, self.model, self.api_key_env = chat_completions_url(url), model, api_key_env
        self.retries, self.timeout, self.backoff = retries, timeout, backoff

    def _request(self, instruction: str, attempt: int) -> str:
        payload = {"model": self.model, "temperature": 0.0 if attempt == 0 else 0.7,
                   "messages": [{"role": "user", "content": INSTAG_PROMPT.format(instruction=instruction)}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(payload).encode("utf-8"), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as e:
            if e.code in (408, 429) or e.code >= 500:
                raise _Transient(f"HTTP {e.code}") from None
            raise TaggerError(f"the tagger endpoint refused the request: HTTP {e.code} {e.reason}",
                              self.url, "replay.inscl.endpoint_url") from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
            raise _Transient(f"cannot reach the endpoint ({getattr(e, 'reason', e)})") from None
        try:
            return json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError("the response is not an OpenAI chat completion") from None

    def __call__(self, instruction: str) -> list[str]:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return parse_tags(self._request(instruction, attempt))
            except _Transient as e:
                last = str(e)
                time.sleep(self.backoff * 2 ** attempt)
            except ValueError as e:
                last = f"invalid tag JSON: {e}"
        raise TaggerError(f"no valid tags after {self.retries + 1} attempts ({last})", self.url,
                          f"instruction {instruction[:60]!r}")


class LocalTagger:
    """Tags from a local causal LM (`tagger_model`: a directory, a .gguf file or the embedded model)."""

    def __init__(self, model_name: str, cache_dir: Path, retries: int = 3, max_new_tokens: int = 256):
        from citune.config import ModelConfig
        from citune.models.loading import load_base

        self.name, self.retries, self.max_new_tokens = model_name, retries, max_new_tokens
        self.model, self.tok, _ = load_base(ModelConfig(name=model_name), Path(cache_dir))
        self.model.eval()

    def _generate(self, instruction: str, attempt: int) -> str:
        import torch

        prompt = INSTAG_PROMPT.format(instruction=instruction)
        if getattr(self.tok, "chat_template", None):
            prompt = self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)
        enc = self.tok(prompt, return_tensors="pt", add_special_tokens=False)
        # retries sample (greedy would repeat the same answer); fork_rng keeps the global RNG untouched
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(int(content_key(instruction, str(attempt))[:8], 16))
            out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=attempt > 0,
                                      temperature=0.7 if attempt > 0 else None, top_p=None, top_k=None,
                                      pad_token_id=self.tok.pad_token_id)
        return self.tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def __call__(self, instruction: str) -> list[str]:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return parse_tags(self._generate(instruction, attempt))
            except ValueError as e:
                last = f"invalid tag JSON: {e}"
        raise TaggerError(f"no valid tags after {self.retries + 1} attempts ({last})", self.name,
                          f"instruction {instruction[:60]!r}")


# ---------------------------------------------------------------- normalisation and merging

def normalise_tag(tag: str) -> str:
    """Lower-case, non-letters → space, lemmatise each word (simplemma, offline), strip."""
    import simplemma

    words = re.sub(r"[\W\d_]+", " ", tag.lower()).split()
    return " ".join(simplemma.lemmatize(w, lang="en").lower() for w in words).strip()


def normalise_tags(tags: Sequence[str]) -> list[str]:
    """Normalised, empty ones dropped, duplicates removed (first kept)."""
    return list(dict.fromkeys(t for t in map(normalise_tag, tags) if t))


def merge_tags(tag_lists: Sequence[Sequence[str]], embed: Embed, eps: float = 0.1,
               min_samples: int = 5) -> list[list[str]]:
    """DBSCAN (cosine) over the unique tags; every member of a cluster becomes the cluster's most frequent
    member (frequency = instructions carrying it; ties: first seen). Every cluster id is used."""
    from sklearn.cluster import DBSCAN

    freq = Counter(t for tags in tag_lists for t in dict.fromkeys(tags))
    unique = list(freq)
    if not unique:
        return [[] for _ in tag_lists]
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(embed(unique)).labels_
    rep: dict[str, str] = {}
    for label in sorted(set(labels.tolist()) - {-1}):
        members = [unique[i] for i in np.flatnonzero(labels == label)]
        best = max(members, key=lambda t: freq[t])
        rep.update({m: best for m in members})
    return [list(dict.fromkeys(rep.get(t, t) for t in tags)) for tags in tag_lists]


# ---------------------------------------------------------------- the tagging pipeline

def tagger_identity(cfg: "InsCLConfig") -> tuple[str, str]:
    """(tagger, model) naming what produced a raw tag list — the cache key's first two parts."""
    if cfg.tagger == "keyphrase":
        from citune.replay.embeddings import SENTENCE_MODEL

        return f"keyphrase:k={cfg.tags_per_instruction}:n={cfg.keyphrase_max_ngram}", SENTENCE_MODEL
    if cfg.endpoint_url:
        return "llm:instag", f"{cfg.endpoint_model}@{chat_completions_url(cfg.endpoint_url)}"
    from citune.config import ModelConfig
    from citune.replay.embeddings import model_id

    return "llm:instag", model_id(ModelConfig(name=cfg.tagger_model))


def _tag_function(cfg: "InsCLConfig", cache_dir: Path, embed: Embed) -> Callable[[list[str]], list[list[str]]]:
    if cfg.tagger == "keyphrase":
        return lambda texts: keyphrase_tags(texts, cfg.tags_per_instruction, embed, cfg.keyphrase_max_ngram)
    if cfg.endpoint_url:
        one = EndpointTagger(cfg.endpoint_url, cfg.endpoint_model, cfg.api_key_env, cfg.retries,
                             cfg.endpoint_timeout)
    else:
        one = LocalTagger(cfg.tagger_model, cache_dir, cfg.retries)
    return lambda texts: [one(t) for t in texts]


def raw_tags(instructions: Sequence[str], cfg: "InsCLConfig", cache_dir: Path, embed: Embed) -> list[list[str]]:
    """The tagger's own tags per instruction, from the cache where present (written in batches as they come)."""
    tagger, model = tagger_identity(cfg)
    keys = [content_key(tagger, model, s) for s in instructions]
    cache = store(Path(cache_dir) / "tags", "json")
    found = cache.get_many(keys)
    todo = list(dict.fromkeys(s for s, k in zip(instructions, keys) if k not in found))
    if todo:
        tag = _tag_function(cfg, cache_dir, embed)
        for i in range(0, len(todo), _CHUNK):
            chunk = todo[i:i + _CHUNK]
            new = {content_key(tagger, model, s): t for s, t in zip(chunk, tag(chunk))}
            cache.put_many(new)
            found.update(new)
    return [list(found[k]) for k in keys]


def instruction_tags(instructions: Sequence[str], cfg: "InsCLConfig", cache_dir: Path,
                     embed: Embed | None = None) -> dict[str, list[str]]:
    """Normalised, merged tags of every instruction of a pool (merging is over this pool)."""
    from citune.replay.embeddings import sentence_embeddings

    embed = embed or (lambda texts: sentence_embeddings(texts, cache_dir))
    unique = list(dict.fromkeys(instructions))
    normed = [normalise_tags(t) for t in raw_tags(unique, cfg, cache_dir, embed)]
    merged = merge_tags(normed, embed, cfg.dbscan_eps, cfg.dbscan_min_samples)
    return dict(zip(unique, merged))
