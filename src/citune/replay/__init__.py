"""Replay strategies behind one registry; importing a module registers it."""
from citune.replay import multitask, none, random  # noqa: F401
from citune.replay import kpig  # noqa: F401
from citune.replay import diverse_instruction, inscl, inscl_dynamic, inscl_insinfo  # noqa: F401
from citune.replay import prototype_data, prototype_instruction  # noqa: F401
from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext, get_strategy, register, strategy_names

__all__ = ["ReplayRecord", "ReplayStrategy", "StageContext", "get_strategy", "register", "strategy_names"]
