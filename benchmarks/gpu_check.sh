#!/usr/bin/env bash
# The GPU check (issue 22): everything citune does differently on a CUDA GPU, in one folder of results,
# in under 8 minutes on one GPU.
#
#   python benchmarks/gpu_assets.py prepare        # here, once: .gpu/ (wheels, model configs, a SuperNI slice)
#   bash benchmarks/gpu_check.sh --dry-run         # here: the steps, the commands, and the carried assets
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]     # on the GPU machine, with .gpu/ carried beside the tree
#
# The GPU machine has PyTorch, transformers, PEFT, Accelerate and sentence-transformers, no network, and takes
# 64 MiB of files: the other dependencies travel as wheels, the models as configs and tokenizers (random
# weights are built there), the data as a slice. Steps (each logged to RESULTS_DIR/<step>.log; one failing
# does not stop the others; RESULTS_DIR/summary.txt lists each step's exit code and seconds):
#   setup      wheels into /tmp/citune-gpu/site, citune built from this tree, random-weight models
#   tests      pytest -m gpu: the tests that need CUDA (bf16 autocast keeps float32 weights, gradient
#              checkpointing, batched decoding equals model.generate, flash-attention when installed)
#   stream     `citune run` of the default 4-task stream on CUDA in bf16 autocast, random replay
#   fsdp1      the same under `accelerate launch` with the fsdp profile and one process
#   train      train_throughput.py: citune, TRL SFTTrainer (padding-free), HF Trainer; 135M and 1.7B, bf16
#   eval       eval_throughput.py at the powered benchmark's shapes: citune against batched model.generate
set -uo pipefail
cd "$(dirname "$0")/.."
ASSETS=${GPU_ASSETS:-.gpu}
WORK=/tmp/citune-gpu
DRY=false
if [ "${1:-}" = "--dry-run" ]; then DRY=true; shift; fi
RESULTS=${1:-${OUT:-gpu_check_results}}
M135=$WORK/models/smollm2-135m
M1700=$WORK/models/smollm2-1.7b
SUPER=$ASSETS/superni
FSDP=src/citune/profiles/fsdp.yaml
STREAM="model.name=$M135 replay.strategy=random train.mixed_precision=bf16 run.quiet=true"

STEPS=(setup tests stream fsdp1 train eval)
declare -A CMD LIMIT
CMD[setup]="python3 -m pip install -q --no-index --no-deps --no-compile --target $WORK/site $ASSETS/wheels/*.whl \
 && PYTHONPATH=$WORK/site python3 -m pip install -q --no-index --no-deps --no-build-isolation --target $WORK/site . \
 && python3 benchmarks/gpu_assets.py models --dir $ASSETS --out $WORK/models && nvidia-smi"
CMD[tests]="CITUNE_GPU_MODEL=$M135 python3 -m pytest -q -m gpu tests -p no:cacheprovider"
CMD[stream]="python3 -m citune run $STREAM -o $WORK/stream && cp $WORK/stream/metrics.json $RESULTS/stream_metrics.json \
 && cp $WORK/stream/manifest.json $RESULTS/stream_manifest.json"
CMD[fsdp1]="python3 -m accelerate.commands.launch --config_file $FSDP --num_processes 1 -m citune run $STREAM \
 train.mixed_precision=auto -o $WORK/fsdp1 && cp $WORK/fsdp1/manifest.json $RESULTS/fsdp1_manifest.json"
CMD[train]="python3 benchmarks/train_throughput.py --superni $SUPER --model $M135 --mixed-precision bf16 \
 --order citune,trl,hf --out $RESULTS/train_135m.json && python3 benchmarks/train_throughput.py --superni $SUPER \
 --model $M1700 --mixed-precision bf16 --order citune,trl,hf --out $RESULTS/train_1.7b.json"
CMD[eval]="python3 benchmarks/eval_throughput.py --superni $SUPER --model $M135 --tasks 8 --per-task 32 \
 --batch-size 32 --max-length 192 --max-new-tokens 16 --hf-batched --no-single --out $RESULTS/eval_135m.json"
LIMIT=([setup]=90 [tests]=60 [stream]=60 [fsdp1]=60 [train]=150 [eval]=60)

if $DRY; then
  echo "GPU check, dry run: nothing runs. Results would go to $RESULTS/ (<step>.log, summary.txt, *.json)."
  total=0
  for s in "${STEPS[@]}"; do
    echo "[$s] (at most ${LIMIT[$s]} s) ${CMD[$s]}"
    total=$((total + LIMIT[$s]))
  done
  echo "at most $total s in all (8 minutes: 480 s)"
  python3 benchmarks/gpu_assets.py check --dir "$ASSETS" || exit 1
  .venv/bin/python -m pytest -q -m gpu tests --collect-only -p no:cacheprovider 2>/dev/null | tail -1
  exit 0
fi

[ -d "$ASSETS/wheels" ] || { echo "$ASSETS: missing; run 'python benchmarks/gpu_assets.py prepare' first" >&2; exit 2; }
mkdir -p "$RESULTS" "$WORK"
export PYTHONPATH=$WORK/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 CITUNE_QUIET=1 CITUNE_CACHE=$WORK/cache
: > "$RESULTS/summary.txt"
for s in "${STEPS[@]}"; do
  start=$(date +%s)
  timeout "${LIMIT[$s]}" bash -c "${CMD[$s]}" > "$RESULTS/$s.log" 2>&1
  rc=$?
  echo "$s rc=$rc seconds=$(( $(date +%s) - start ))" | tee -a "$RESULTS/summary.txt"
done
