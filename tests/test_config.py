"""The config: method sections come from the registered methods, every key is described, and the
strategy is checked when the config is loaded."""
from typing import Literal

import pytest
from pydantic import Field

from citune import config
from citune.config import Strict, describe_keys, load_config
from citune.errors import InputError
from citune.replay import base
from citune.replay.base import ReplayStrategy, register


def test_every_config_key_has_a_description():
    undescribed = [key for key, _, _, description in describe_keys() if not description.strip()]
    assert not undescribed
    keys = {key for key, *_ in describe_keys()}
    assert {"seed", "replay.strategy", "replay.inscl.encoder", "replay.kpig.lambda", "data.benchmark.root"} <= keys


def test_the_method_sections_are_those_the_strategies_registered():
    cfg = load_config()
    assert type(cfg.replay).model_fields.keys() >= {"inscl", "kpig"}
    assert cfg.to_dict()["replay"]["kpig"]["lambda"] == 0.1
    with pytest.raises(InputError, match=r"replay\.inscl\.nope: unknown key"):
        load_config(overrides=["replay.inscl.nope=1"])


def test_an_unknown_strategy_is_refused_when_the_config_is_loaded():
    with pytest.raises(InputError, match=r"replay\.strategy: unknown replay strategy 'magic' \(known: .*inscl"):
        load_config(overrides=["replay.strategy=magic"])


def test_a_new_strategy_brings_its_section_without_an_edit_of_config(monkeypatch):
    monkeypatch.setattr(config, "_SECTIONS", dict(config._SECTIONS))
    monkeypatch.setattr(config, "_STRATEGIES", dict(config._STRATEGIES))
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))

    class ProbeConfig(Strict):
        """A test method."""

        width: int = Field(3, gt=0, description="how wide")
        mode: Literal["a", "b"] = Field("a", description="which mode")

    @register("probe", config=ProbeConfig)
    class Probe(ReplayStrategy):
        pass

    cfg = load_config(overrides=["replay.strategy=probe", "replay.probe.width=5"])
    assert cfg.replay.probe == ProbeConfig(width=5) and cfg.replay.inscl.encoder == "sentence"
    assert ("replay.probe.width", "int", "3", "how wide") in describe_keys()
    with pytest.raises(InputError, match=r"replay\.probe\.width: Input should be greater than 0"):
        load_config(overrides=["replay.strategy=probe", "replay.probe.width=0"])
    with pytest.raises(ValueError, match="two config classes"):
        config.register_method("other", "probe", type("Other", (Strict,), {}))
