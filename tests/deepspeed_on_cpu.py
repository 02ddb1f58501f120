"""`python -m torch.distributed.run ... tests/deepspeed_on_cpu.py STAGE run CONFIG -o DIR`: citune
under DeepSpeed ZeRO stage STAGE (2 or 3) on CPU processes (gloo), for tests/test_multiprocess.py.

Accelerate turns DeepSpeed on only for accelerator devices: on CPU processes it counts a single
process under `ACCELERATE_USE_DEEPSPEED`, since it sets no backend then. Here the run's
Accelerator is made over gloo as for DDP and its state is switched to DeepSpeed right after, with
a plugin of the shipped profiles' settings less bf16 (float32 here), so that citune's DeepSpeed path
(one engine, its optimizer reset per stage, ZeRO-3's gathered checkpoints and evaluation in
lockstep) runs without a GPU.
"""
import importlib
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DeepSpeedPlugin, DistributedType

import citune.runs.runner as runner

# On CPU processes DeepSpeed JIT-compiles a shared-memory all-reduce kernel (for its inference engine; ZeRO
# training goes through torch.distributed) into ~/.cache/torch_extensions, keyed by the include paths: on a
# fresh machine, or from a checkout whose site-packages path differs, that is 60-90 s of g++ in every run.
# (`deepspeed.comm.torch` as an attribute is the torch package: the module is taken by its name.)
importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None

_make = runner.make_accelerator
STAGE = int(sys.argv.pop(1))


def make_deepspeed_accelerator(cfg, run_dir):
    accelerator = _make(cfg, run_dir)
    state = AcceleratorState()
    # both shared states: a later AcceleratorState() copies PartialState's over its own
    state.distributed_type = PartialState._shared_state["distributed_type"] = DistributedType.DEEPSPEED
    plugin = DeepSpeedPlugin(zero_stage=STAGE, gradient_clipping=cfg.train.max_grad_norm,
                             offload_optimizer_device="none", offload_param_device="none", zero3_init_flag=False)
    plugin.set_mixed_precision("no")
    plugin.select(_from_accelerator_state=True)
    state.deepspeed_plugins = plugin
    accelerator.deepspeed_engine_wrapped = None  # set by Accelerator() only under a DeepSpeed launch
    return accelerator


runner.make_accelerator = make_deepspeed_accelerator

if __name__ == "__main__":
    from citune.cli import main

    main()
