"""Named Accelerate profiles and the `accelerate launch` command that runs citune under one.

The profiles are Accelerate config files shipped in `citune/profiles/`:

    single-gpu        one process, one GPU, bf16 autocast
    multi-gpu         DDP, one process per GPU (--num_processes N), bf16 autocast
    fsdp              FSDP2 across GPUs, bf16 autocast
    deepspeed-zero2   DeepSpeed ZeRO-2 across GPUs, bf16 (needs deepspeed)
    deepspeed-zero3   DeepSpeed ZeRO-3 across GPUs, bf16 (needs deepspeed)
    cpu-2proc         two CPU processes over gloo, float32 (what CI runs)

`launch_command("multi-gpu", ["run", "cfg.yaml", "-o", "runs/x"], num_processes=4)` returns

    [python, -m, accelerate.commands.launch, --config_file, .../profiles/multi-gpu.yaml,
     --num_processes, 4, -m, citune, run, cfg.yaml, -o, runs/x]

which is the same as `accelerate launch --config_file PROFILE --num_processes 4 -m citune run ...`.
A path to any Accelerate config file is accepted in place of a profile name.

CPU profiles (distributed_type MULTI_CPU) are launched with torchrun instead: `accelerate launch`
starts several CPU processes only through mpirun (`--mpirun_hostfile`); without it, `--cpu
--num_processes 2` starts a single process. The command is then

    ACCELERATE_USE_CPU=true python -m torch.distributed.run --standalone --nproc_per_node 2 -m citune run ...

(the runner also selects the CPU by itself when WORLD_SIZE > 1 and no GPU is present).
"""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Sequence

from citune.errors import InputError

PROFILE_DIR = "profiles"


def profile_names() -> list[str]:
    """The names of the shipped profiles."""
    root = resources.files("citune") / PROFILE_DIR
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def profile_path(profile: str) -> Path:
    """The config file of a named profile, or `profile` itself when it is an existing file."""
    as_file = Path(profile).expanduser()
    if as_file.suffix in (".yaml", ".yml", ".json") and as_file.is_file():
        return as_file
    path = Path(str(resources.files("citune") / PROFILE_DIR / f"{profile}.yaml"))
    if not path.is_file():
        raise InputError(f"unknown Accelerate profile '{profile}' (known: {', '.join(profile_names())}; "
                         "or the path of an Accelerate config file)", "profile")
    return path


def read_profile(profile: str) -> dict:
    import yaml

    path = profile_path(profile)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.suffix != ".json" else None
    if data is None and path.suffix == ".json":
        import json

        data = json.loads(path.read_text(encoding="utf-8"))
    return data or {}


def is_cpu_profile(profile: str) -> bool:
    return str(read_profile(profile).get("distributed_type", "")).upper() == "MULTI_CPU"


def launch_command(profile: str, citune_args: Sequence[str], num_processes: int | None = None,
                   extra_accelerate_args: Sequence[str] = (), python: str | None = None) -> list[str]:
    """The command line that runs `citune <citune_args>` under `profile` (see the module docstring)."""
    if num_processes is not None and num_processes < 1:
        raise InputError("--num-processes must be at least 1", "command line")
    python = python or sys.executable
    if is_cpu_profile(profile):
        n = num_processes or int(read_profile(profile).get("num_processes", 2))
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                *extra_accelerate_args, "-m", "citune", *citune_args]
    cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(profile_path(profile))]
    if num_processes is not None:
        cmd += ["--num_processes", str(num_processes)]
    return [*cmd, *extra_accelerate_args, "-m", "citune", *citune_args]


def launch_env(profile: str, base: dict | None = None) -> dict:
    """The environment for `launch_command` (ACCELERATE_USE_CPU=true for CPU profiles)."""
    env = dict(os.environ if base is None else base)
    if is_cpu_profile(profile):
        env["ACCELERATE_USE_CPU"] = "true"
    return env


def launch(profile: str, citune_args: Sequence[str], num_processes: int | None = None,
           extra_accelerate_args: Sequence[str] = ()) -> int:
    """Run citune under `profile` and return the launcher's exit status."""
    return subprocess.call(launch_command(profile, citune_args, num_processes, extra_accelerate_args),
                           env=launch_env(profile))
