import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CITUNE_QUIET", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SUPERNI = SHARED / "data" / "superni"


@pytest.fixture(scope="session")
def superni_dir() -> Path:
    if not (SUPERNI / "tasks").is_dir():
        pytest.skip("../shared/data/superni is not beside the checkout")
    return SUPERNI


@pytest.fixture(scope="session")
def tiny_cfg():
    from citune.config import load_config

    return load_config(None, ["model.name=tiny", "model.chat_template=true"])


@pytest.fixture(scope="session")
def tiny_bundle(tiny_cfg):
    """A tiny random Llama with the real SmolLM2 tokenizer, LoRA attached."""
    from citune.models import load_model
    from citune.paths import cache_root

    return load_model(tiny_cfg.model, cache_root())


@pytest.fixture
def llm_server(monkeypatch):
    """`llm_server(replies=..., answer=...)` starts a fake OpenAI-compatible endpoint (tests/fake_llm.py)."""
    from fake_llm import PROXY_VARS, FakeOpenAI

    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    made = []

    def make(replies=(), answer=None):
        made.append(FakeOpenAI(replies, answer))
        return made[-1]

    yield make
    for s in made:
        s.close()
