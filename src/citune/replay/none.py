"""Sequential fine-tuning: no replay."""
from citune.replay.base import ReplayStrategy, register


@register("none")
class NoReplay(ReplayStrategy):
    def select(self, ctx):
        return []
