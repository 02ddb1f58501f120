"""Sequential fine-tuning: no replay."""
from citune.replay.base import ReplayStrategy, register


@register("none")
class NoReplay(ReplayStrategy):
    paper = "sequential fine-tuning (SeqFT, or SeqLoRA with one adapter), the lower reference"
    def select(self, ctx):
        return []
