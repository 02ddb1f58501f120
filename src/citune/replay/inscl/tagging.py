"""Instruction tags, InsTag-style (METHODS §3.4).

Taggers:
- `keyphrase` (default, offline, deterministic): KeyBERT-style — candidate 1..n-grams of content
  words inside each clause (stopwords removed, as KeyBERT's CountVectorizer does), scored by cosine
  similarity of their sentence embedding to the whole instruction's, top-k kept;
- `llm`: an instruction-tuned model prompted with the InsTag prompt to answer
  `[{"tag": ..., "explanation": ...}]` through `models.llm` — a local model (`tagger_model`) or an
  OpenAI-compatible endpoint (`endpoint_url`, `endpoint_model`, key from `api_key_env`, never logged).
  Invalid answers are retried, then reported as a `TaggerError`; nothing is dropped silently.

Tags are normalised (lower-case, non-letters → space, simplemma lemmas), near-duplicates merged by
DBSCAN over their embeddings, and each instruction's set de-duplicated. Raw tagger outputs are cached
under `cache_dir / "tags"` by sha256 of (tagger, model, text).
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from citune.errors import InputError
from citune.models.llm import LLMClient, LLMError, NoValidAnswer, chat_completions_url
from citune.cache import code_digest, content_key, store

if TYPE_CHECKING:
    from citune.replay.inscl.config import InsCLConfig

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


def keyphrase_tags(instructions: Sequence[str], k: int, embed: Embed, max_ngram: int = 2, threshold: float = -1.0,
                   diversity: float = 0.0) -> list[list[str]]:
    """KeyBERT-style tags (METHODS.md §3.4): candidate phrases of each instruction whose cosine similarity to the
    whole instruction reaches `threshold`, taken in maximal-marginal-relevance order — each next phrase maximises
    (1 - diversity) * relevance - diversity * (its highest similarity to a phrase already taken) — at most k
    (ties: first seen); the most relevant phrase is always a tag. How many pass the threshold varies with the
    instruction, and so does InsInfo."""
    cands = [candidate_phrases(s, max_ngram) for s in instructions]
    phrases = list(dict.fromkeys(p for c in cands for p in c))
    if not phrases:
        return [[] for _ in instructions]
    vec = dict(zip(phrases, embed(phrases)))
    whole = embed(list(instructions))
    return [mmr([vec[p] for p in c], v, c, k, threshold, diversity) for c, v in zip(cands, whole)]


def mmr(points: Sequence[np.ndarray], doc: np.ndarray, names: Sequence[str], k: int, threshold: float,
        diversity: float) -> list[str]:
    """The most relevant of `names` (unit vectors `points`) to `doc`, then those relevant by `threshold`, in MMR
    order, at most k."""
    if not names:
        return []
    p = np.stack(points).astype(np.float64)
    relevance = p @ doc.astype(np.float64)
    best_first = int(np.argmax(relevance))  # every instruction has an intention: its most relevant phrase
    left = [i for i in range(len(names)) if relevance[i] >= threshold and i != best_first]
    taken: list[int] = [best_first][:k]
    while left and len(taken) < k:
        novelty = (p[left] @ p[taken].T).max(axis=1) if taken else np.zeros(len(left))
        score = (1 - diversity) * relevance[left] - diversity * novelty
        best = left[int(np.argmax(score))]  # the first of equal scores
        taken.append(best)
        left.remove(best)
    return [names[i] for i in taken]


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


class LLMTagger:
    """Tags from a language model asked the InsTag prompt (`models.llm`: an endpoint or a local model);
    invalid answers are retried, then reported as a TaggerError."""

    def __init__(self, client: LLMClient, retries: int = 3):
        self.client, self.retries = client, retries

    def __call__(self, instruction: str) -> list[str]:
        where = f"instruction {instruction[:60]!r}"
        try:
            return self.client.ask(INSTAG_PROMPT.format(instruction=instruction), parse_tags, self.retries)
        except NoValidAnswer as e:
            raise TaggerError(f"no valid tags after {e.attempts} attempts (invalid tag JSON: {e.reason})",
                              self.client.name, where) from None
        except LLMError as e:
            raise TaggerError(e.problem, e.file, where) from None


def llm_client(cfg: "InsCLConfig", cache_dir: Path | None = None) -> LLMClient:
    return LLMClient(endpoint_url=cfg.endpoint_url, endpoint_model=cfg.endpoint_model, local_model=cfg.tagger_model,
                     api_key_env=cfg.api_key_env, timeout=cfg.endpoint_timeout, cache_dir=cache_dir,
                     config_key="replay.inscl.endpoint_url" if cfg.endpoint_url else "replay.inscl.tagger_model")


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
        from citune.models.embeddings import SENTENCE_MODEL

        settings = (f"k={cfg.tags_per_instruction}:n={cfg.keyphrase_max_ngram}:t={cfg.keyphrase_threshold}:"
                    f"d={cfg.keyphrase_diversity}")
        return f"keyphrase:{settings}:{code_digest(sys.modules[__name__])}", SENTENCE_MODEL
    if cfg.endpoint_url:
        return "llm:instag", f"{cfg.endpoint_model}@{chat_completions_url(cfg.endpoint_url)}"
    from citune.config import ModelConfig
    from citune.models.embeddings import model_id

    return "llm:instag", model_id(ModelConfig(name=cfg.tagger_model))


def _tag_function(cfg: "InsCLConfig", cache_dir: Path, embed: Embed) -> Callable[[list[str]], list[list[str]]]:
    if cfg.tagger == "keyphrase":
        return lambda texts: keyphrase_tags(texts, cfg.tags_per_instruction, embed, cfg.keyphrase_max_ngram,
                                            cfg.keyphrase_threshold, cfg.keyphrase_diversity)
    one = LLMTagger(llm_client(cfg, cache_dir), cfg.retries)
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
    from citune.models.embeddings import sentence_embeddings

    embed = embed or (lambda texts: sentence_embeddings(texts, cache_dir))
    unique = list(dict.fromkeys(instructions))
    normed = [normalise_tags(t) for t in raw_tags(unique, cfg, cache_dir, embed)]
    merged = merge_tags(normed, embed, cfg.dbscan_eps, cfg.dbscan_min_samples)
    return dict(zip(unique, merged))
