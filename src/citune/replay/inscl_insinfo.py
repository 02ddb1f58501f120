"""InsCL ablation: equal quotas (b per previous task), InsInfo sampling inside each task."""
from citune.replay.base import register
from citune.replay.inscl import InsCLBase


@register("inscl-insinfo")
class InsCLInsInfo(InsCLBase):
    quota_by = "equal"
    sample_by = "insinfo"
