#!/usr/bin/env bash
# The real model shapes in bf16 on one GPU, preftune against TRL's defaults and TRL at its best:
# pairs/s, peak GPU memory and model FLOPs utilization (H100 bf16 dense peak), then the LM head's
# memory at a 262k vocabulary.
#
#     bench/gpu.sh [OUT_DIR]                      # default: bench-gpu-results
#     RUNS=3 DATA="long-prompt short-prompt" MODES="full lora" bench/gpu.sh
#
# Sequences of 1024 tokens on average, batch 8, 160 pairs (20 steps). The defaults (one run,
# long-prompt pairs, full fine-tuning: 9 trainer processes) are sized for a 10-minute slot; the
# variables above run the whole table, medians over RUNS. Each data shape and tuning mode writes
# one JSON and one log.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-gpu-results}"
runs="${RUNS:-1}"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
for data in ${DATA:-long-prompt}; do
  for mode in ${MODES:-full}; do
    flags=(); [ "$mode" = lora ] && flags=(--lora)
    python bench/dpo_vs_trl.py --device cuda --dtype bf16 --shape all --data "$data" \
      --seq-len 1024 --batch-size 8 --pairs 160 --runs "$runs" "${flags[@]}" \
      --out "$out/$data-$mode.json" 2>&1 | tee "$out/$data-$mode.log"
  done
done
python bench/head_memory.py --device cuda --dtype bf16 --batch 8 --seq 1024 \
  --chunks 256,512,1024,2048 --out "$out/head-memory.json" 2>&1 | tee "$out/head-memory.log"
