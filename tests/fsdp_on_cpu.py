"""`python -m torch.distributed.run ... tests/fsdp_on_cpu.py run CONFIG -o DIR`: citune with
Accelerate's FSDP2 on CPU processes (gloo), for tests/test_multiprocess.py.

Accelerate turns FSDP on only for accelerator devices (on CPU processes it gives MULTI_CPU, i.e.
DDP), but its FSDP2 code (`fully_shard`, DTensor parameters) runs on CPU over gloo. Here the run's
Accelerate state is switched to FSDP2 right after the runner makes its Accelerator, with the
settings of the shipped `fsdp` profile, so that citune's sharded path (optimizer over sharded
parameters, gathered checkpoints, evaluation in lockstep) is exercised without a GPU.
"""
import sys

from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

import citune.runs.runner as runner

_make = runner.make_accelerator


def make_fsdp2_accelerator(cfg, run_dir):
    accelerator = _make(cfg, run_dir)
    state = AcceleratorState()
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True,
        state_dict_type="FULL_STATE_DICT")
    return accelerator


runner.make_accelerator = make_fsdp2_accelerator

if __name__ == "__main__":
    from citune.cli import main

    main()
