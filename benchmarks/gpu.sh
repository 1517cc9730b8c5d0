#!/usr/bin/env bash
# The GPU rows of docs/benchmarks.md: every variant side by side, one part per call.
#
#   bash benchmarks/gpu.sh [train|infer|16|all]     # OUT=folder for the JSON (default runs/gpu)
#
# Needs only PyTorch, numpy and tqdm (`gdn bench` imports nothing of the data pipeline), so it
# runs from the source tree on a machine that has a CUDA PyTorch but not this package:
# PYTHONPATH=src. Each part prints the table and saves the JSON rows next to gpu.txt (card,
# driver, PyTorch). A part takes a few minutes, most of it compiling; run them in one session
# so that every ratio compares models measured on the same card in the same minutes.
#   train  8x224, batch 32: training step and inference, eager and compiled (the issue's setting)
#   infer  8x224, batch 64, inference only, BN folded, eager and compiled
#   16     16x224, batch 16: training step and inference, eager and compiled
# A smoke run on a CPU: DEVICE=cpu MODELS=tsn_tiny,gdn_tiny EXTRA="--size 32 --batch 2 --repeats 1"
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
out=${OUT:-runs/gpu}
py=${PYTHON:-python3}
models=${MODELS:-tsn_r50,gdn_r50,tsm_r50}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

{
    date -u
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    fi
    "$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} | tee "$out/gpu.txt"

bench() {  # bench NAME ARGS...: one `gdn bench` run, its JSON saved as NAME.json
    local name=$1
    shift
    echo "== $name: gdn bench --device $device --models $models $*"
    # shellcheck disable=SC2086  # EXTRA: more flags, split on spaces; the last of a flag wins
    "$py" -m gdn bench --device "$device" --models "$models" --compile --save "$out/$name.json" "$@" ${EXTRA:-}
}

case $part in
    train | infer | 16 | all) ;;
    *) echo "unknown part '$part': use train, infer, 16 or all" >&2; exit 2 ;;
esac
if [[ $part == train || $part == all ]]; then
    bench train_8x224_b32 --frames 8 --size 224 --batch 32
fi
if [[ $part == infer || $part == all ]]; then
    bench infer_8x224_b64_foldbn --frames 8 --size 224 --batch 64 --no-train --fold-bn
fi
if [[ $part == 16 || $part == all ]]; then
    bench train_16x224_b16 --frames 16 --size 224 --batch 16
fi
