"""InsCL's two ablations (METHODS.md §3.5): `inscl-dynamic`, Wasserstein-weighted quotas with uniform random
sampling inside each task; `inscl-insinfo`, equal quotas (b per previous task) with InsInfo sampling."""
from citune.replay.base import register
from citune.replay.inscl.strategy import InsCLBase


@register("inscl-dynamic")
class InsCLDynamic(InsCLBase):
    quota_by = "distance"
    sample_by = "uniform"


@register("inscl-insinfo")
class InsCLInsInfo(InsCLBase):
    quota_by = "equal"
    sample_by = "insinfo"
