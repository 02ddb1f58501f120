"""Tagging (METHODS §3.4): normalisation, keyphrases, DBSCAN merging, the llm tagger against a local server."""

import numpy as np
import pytest

from citune.replay.inscl.config import InsCLConfig
from citune.models.llm import LLMClient
from citune.replay.inscl.tagging import (LLMTagger, TaggerError, candidate_phrases, chat_completions_url,
                                   instruction_tags, keyphrase_tags, merge_tags, normalise_tag, normalise_tags,
                                   parse_tags)


def test_normalisation():
    assert normalise_tag("Sentiment-Classification!") == "sentiment classification"
    assert normalise_tag("  SQL_generation 2 ") == "sql generation"
    assert normalise_tag("Short Stories") == "short story"
    assert normalise_tag("Classifying Tweets") == "classify tweet"
    assert normalise_tag("123 !!") == ""
    assert normalise_tags(["Stories", "story", "", "42", "Math"]) == ["story", "math"]


def test_candidate_phrases_drop_stopwords_and_stay_inside_clauses():
    assert candidate_phrases("Classify the sentiment of the tweet. Answer yes", 2) == [
        "classify", "sentiment", "tweet", "classify sentiment", "sentiment tweet", "answer", "yes", "answer yes"]


def test_keyphrase_tags_rank_by_similarity_to_the_instruction():
    vectors = {"classify": [1, 0, 0], "sentiment": [0.9, 0.1, 0], "tweet": [0, 1, 0],
               "classify sentiment": [0.99, 0.01, 0], "sentiment tweet": [0.5, 0.5, 0],
               "Classify the sentiment of the tweet": [1, 0, 0]}

    def embed(texts):
        x = np.array([vectors[t] for t in texts], dtype=float)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    assert keyphrase_tags(["Classify the sentiment of the tweet"], 3, embed) == [
        ["classify", "classify sentiment", "sentiment"]]


def test_dbscan_merges_every_cluster_into_its_most_frequent_member():
    # two clusters (the second is the last cluster id and must be merged too) and one outlier
    vec = {"sentiment analysis": [1, 0, 0], "sentiment analyse": [0.999, 0.01, 0], "sentiment": [0.998, 0.02, 0],
           "sql": [0, 1, 0], "sql query": [0.01, 0.999, 0], "poetry": [0, 0, 1]}

    def embed(texts):
        return np.array([vec[t] for t in texts], dtype=float)

    lists = [["sentiment analyse", "sentiment analysis"], ["sentiment analysis", "poetry"], ["sentiment analysis"],
             ["sentiment"], ["sql query"], ["sql query", "sql"], ["sql"], ["sql query"]]
    merged = merge_tags(lists, embed, eps=0.1, min_samples=2)
    assert merged == [["sentiment analysis"], ["sentiment analysis", "poetry"], ["sentiment analysis"],
                      ["sentiment analysis"], ["sql query"], ["sql query"], ["sql query"], ["sql query"]]
    # min_samples above every cluster's size: nothing merges
    assert merge_tags(lists, embed, eps=0.1, min_samples=10) == [list(dict.fromkeys(t)) for t in lists]
    assert merge_tags([[], []], embed) == [[], []]


def test_parse_tags():
    good = '[{"tag": "Sentiment", "explanation": "x"}, {"tag": "Classification", "explanation": "y"}]'
    assert parse_tags(good) == ["Sentiment", "Classification"]
    assert parse_tags(f"Here you go:\n```json\n{good}\n```") == ["Sentiment", "Classification"]
    for bad in ["sentiment, classification", "[]", '[{"name": "x"}]', '[{"tag": ""}]', '[{"tag": "a"']:
        with pytest.raises(ValueError):
            parse_tags(bad)


def test_endpoint_url_forms():
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


@pytest.fixture
def server_factory(llm_server):
    return llm_server


VALID = '[{"tag": "Sentiment Analysis", "explanation": "polarity"}, {"tag": "Tweets", "explanation": "source"}]'


def endpoint_tagger(url, model, api_key_env="OPENAI_API_KEY", retries=3):
    return LLMTagger(LLMClient(endpoint_url=url, endpoint_model=model, api_key_env=api_key_env, backoff=0), retries)


def test_endpoint_tagger_retries_invalid_json(server_factory, monkeypatch):
    monkeypatch.setenv("CITUNE_TEST_KEY", "sk-secret-123")
    srv = server_factory(["Sure! The tags are: sentiment, tweets", VALID])
    tagger = endpoint_tagger(srv.url, "tagger-model", "CITUNE_TEST_KEY", retries=2)
    assert tagger("Classify the tweet.") == ["Sentiment Analysis", "Tweets"]
    assert len(srv.requests) == 2
    first = srv.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-secret-123"
    assert first["body"]["model"] == "tagger-model"
    assert "Classify the tweet." in first["body"]["messages"][0]["content"]


def test_endpoint_tagger_retries_server_errors(server_factory):
    srv = server_factory([503, VALID])
    assert endpoint_tagger(srv.url, "m", "CITUNE_UNSET_KEY", retries=1)("x") == ["Sentiment Analysis",
                                                                                         "Tweets"]
    assert srv.requests[0]["auth"] is None  # no key in the environment: no header


def test_always_invalid_output_is_reported(server_factory, monkeypatch):
    monkeypatch.setenv("CITUNE_TEST_KEY", "sk-secret-123")
    srv = server_factory(["not json at all"])
    with pytest.raises(TaggerError) as err:
        endpoint_tagger(srv.url, "m", "CITUNE_TEST_KEY", retries=2)("Summarise the article.")
    msg = str(err.value)
    assert "3 attempts" in msg and "invalid tag JSON" in msg and "Summarise the article" in msg
    assert "sk-secret" not in msg
    assert len(srv.requests) == 3


def test_client_errors_are_not_retried(server_factory):
    srv = server_factory([401])
    with pytest.raises(TaggerError, match="HTTP 401"):
        endpoint_tagger(srv.url, "m", retries=3)("x")
    assert len(srv.requests) == 1


def test_llm_pipeline_normalises_and_caches(server_factory, tmp_path):
    srv = server_factory([VALID])
    cfg = InsCLConfig(tagger="llm", endpoint_url=srv.url, endpoint_model="m", retries=0)
    embed = lambda texts: np.eye(len(texts))  # noqa: E731 (orthogonal: nothing merges)
    tags = instruction_tags(["Classify the tweet.", "Classify the review."], cfg, tmp_path, embed)
    assert tags == {"Classify the tweet.": ["sentiment analysis", "tweet"],
                    "Classify the review.": ["sentiment analysis", "tweet"]}
    assert len(srv.requests) == 2
    assert instruction_tags(["Classify the review."], cfg, tmp_path, embed) == {
        "Classify the review.": ["sentiment analysis", "tweet"]}
    assert len(srv.requests) == 2  # served from the tag cache
    assert list((tmp_path / "tags").glob("*.json"))


def test_llm_tagger_needs_a_model_or_an_endpoint():
    with pytest.raises(ValueError, match="llm tagger"):
        InsCLConfig(tagger="llm")


def test_local_transformers_tagger_reports_invalid_output(tmp_path):
    """The tiny random model cannot answer JSON: the failure is reported after the retry, not dropped."""
    from citune.paths import cache_root
    tagger = LLMTagger(LLMClient(local_model="tiny", cache_dir=cache_root(), max_new_tokens=4), retries=1)
    with pytest.raises(TaggerError, match="2 attempts"):
        tagger("Classify the tweet.")


def test_the_keyphrase_tagger_keeps_as_many_tags_as_are_relevant():
    """Issue 21, defect 1: the tagger returned k tags for every instruction, so InsInfo's complexity term
    (the tag count) was a constant; now a phrase must reach the relevance threshold (the best one always
    counts), in MMR order."""
    axes = {"sentiment": [1, 0, 0], "tweet": [0.8, 0.6, 0], "classify": [0.6, 0, 0.8], "sentiment tweet": [0.9, 0.43589, 0]}

    def embed(texts):
        return np.array([axes.get(t, [0.0, 0.0, 1.0]) for t in texts], dtype=np.float32)

    axes["Classify the sentiment of the tweet"] = [1, 0, 0]
    axes["Tweet"] = [0.8, 0.6, 0]
    tags = keyphrase_tags(["Classify the sentiment of the tweet", "Tweet"], 5, embed, threshold=0.7)
    assert tags[0][0] == "sentiment" and "classify" not in tags[0]  # relevance 0.6 < 0.7
    assert tags[1] == ["tweet"]  # a single candidate: one tag, not k
    assert len({len(t) for t in tags}) > 1
    # MMR: with weight on novelty the near-duplicate "sentiment tweet" comes after the distinct "tweet"
    assert keyphrase_tags(["Classify the sentiment of the tweet"], 3, embed, threshold=0.7, diversity=0.9)[0][:2] == [
        "sentiment", "tweet"]


def test_tag_and_key_part_caches_are_keyed_by_the_code_that_made_them(monkeypatch):
    """Issue 21, defect 6: a hand-kept version string keyed the caches, so a changed heuristic read stale
    entries; the key now holds a digest of the producing code."""
    import inspect

    from citune.cache import code_digest
    from citune.replay.inscl.tagging import tagger_identity
    from citune.replay.kpig.config import KPIGConfig
    from citune.replay.kpig.keyparts import KeyPartExtractor

    cfg = InsCLConfig()
    before = tagger_identity(cfg), KeyPartExtractor(KPIGConfig()).model_id
    assert tagger_identity(InsCLConfig(keyphrase_threshold=0.2)) != before[0]  # settings are in the key
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: real(obj) + "\n# edited")
    code_digest.cache_clear()
    try:
        assert tagger_identity(cfg) != before[0] and KeyPartExtractor(KPIGConfig()).model_id != before[1]
    finally:
        monkeypatch.setattr(inspect, "getsource", real)
        code_digest.cache_clear()
