"""The one LLM client: URL forms, retries (transient failures pause, invalid answers retry, client
errors are final), the key never in an error, and KPIG and InsCL asking through it alike."""
import json

import pytest

from citune.replay.inscl.config import InsCLConfig
from citune.replay.kpig.config import KPIGConfig
from citune.models.llm import LLMClient, LLMError, NoValidAnswer, chat_completions_url


@pytest.fixture
def server(llm_server):
    return llm_server()


def json_list(answer: str) -> list:
    value = json.loads(answer)
    if not isinstance(value, list):
        raise ValueError("not a list")
    return value


def test_url_forms():
    assert chat_completions_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


def test_a_server_error_pauses_and_retries_then_an_invalid_answer_retries(server, monkeypatch):
    monkeypatch.setenv("T_KEY", "sk-secret-9")
    server.replies = [503, "not json", '["a"]']
    client = LLMClient(endpoint_url=server.url, endpoint_model="m", api_key_env="T_KEY", backoff=0)
    assert client.ask("q", json_list, retries=2) == ["a"]
    temperatures = [r["body"]["temperature"] for r in server.requests]
    assert temperatures == [0.0, 0.7, 0.7]  # a retry samples, so that it can answer differently
    assert {r["auth"] for r in server.requests} == {"Bearer sk-secret-9"}
    assert server.requests[0]["path"] == "/v1/chat/completions" and server.requests[0]["body"]["max_tokens"] == 256


def test_invalid_answers_only_raise_no_valid_answer(server):
    server.replies = ["x", "y"]
    with pytest.raises(NoValidAnswer) as err:
        LLMClient(endpoint_url=server.url, backoff=0).ask("q", json_list, retries=1)
    assert err.value.attempts == 2 and len(server.requests) == 2


def test_a_client_error_is_final_and_the_key_is_never_said(server, monkeypatch):
    monkeypatch.setenv("T_KEY", "sk-secret-9")
    server.replies = [401]
    with pytest.raises(LLMError, match="HTTP 401") as err:
        LLMClient(endpoint_url=server.url, api_key_env="T_KEY", backoff=0).ask("q", json_list, retries=3)
    assert len(server.requests) == 1 and "sk-secret" not in str(err.value)


def test_an_endpoint_that_never_answers_is_an_error_naming_it():
    client = LLMClient(endpoint_url="http://127.0.0.1:9", backoff=0, timeout=2, config_key="replay.kpig")
    with pytest.raises(LLMError, match="no answer after 2 attempts") as err:
        client.ask("q", json_list, retries=1)
    assert "127.0.0.1:9/v1/chat/completions" in str(err.value) and "replay.kpig" in str(err.value)


def test_kpig_and_inscl_ask_through_the_same_client(server, tmp_path):
    from citune.replay.inscl.tagging import llm_client as inscl_client
    from citune.replay.kpig.keyparts import llm_client as kpig_client

    kpig = kpig_client(KPIGConfig(extractor="llm", endpoint_url=server.url, endpoint_model="m"), tmp_path)
    inscl = inscl_client(InsCLConfig(tagger="llm", endpoint_url=server.url, endpoint_model="m"), tmp_path)
    assert type(kpig) is type(inscl) is LLMClient and kpig.url == inscl.url == server.url + "/v1/chat/completions"


def test_a_local_model_answers_greedily_then_samples(tmp_path):
    from citune.paths import cache_root

    client = LLMClient(local_model="tiny", cache_dir=cache_root(), max_new_tokens=4)
    assert client.complete("Say hi.") == client.complete("Say hi.")  # greedy: the same answer
    assert isinstance(client.complete("Say hi.", attempt=1), str)
