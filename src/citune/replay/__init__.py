"""Replay strategies behind one registry. Every module of this package is imported here, so a strategy
registers itself with `@register("name")` wherever it lives (a file for a small baseline, a package
for a large method): adding one needs no other edit."""
import importlib
import pkgutil

from citune.replay.base import ReplayRecord, ReplayStrategy, StageContext, register, strategy_names
from citune.replay.compose import get_strategy

for _module in pkgutil.walk_packages(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)

__all__ = ["ReplayRecord", "ReplayStrategy", "StageContext", "get_strategy", "register", "strategy_names"]
