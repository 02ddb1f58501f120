"""InsCL ablation: Wasserstein-weighted quotas, uniform random sampling inside each task."""
from citune.replay.base import register
from citune.replay.inscl import InsCLBase


@register("inscl-dynamic")
class InsCLDynamic(InsCLBase):
    quota_by = "distance"
    sample_by = "uniform"
