#!/usr/bin/env bash
# The real model shapes in bf16 on one GPU, preftune against TRL's defaults and TRL at its best:
# pairs/s, peak GPU memory and model FLOPs utilization (H100 bf16 dense peak), medians of 3.
#
#     bench/gpu.sh [OUT_DIR]        # default: bench-gpu-results
#
# Sizes are those of the CPU table scaled to a GPU: sequences of 1024 tokens on average, batch 8,
# 160 pairs (20 steps). Each data shape, full fine-tuning and LoRA, writes one JSON and one log.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-gpu-results}"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
for data in long-prompt short-prompt; do
  for mode in full lora; do
    flags=(); [ "$mode" = lora ] && flags=(--lora)
    python bench/dpo_vs_trl.py --device cuda --dtype bf16 --shape all --data "$data" \
      --seq-len 1024 --batch-size 8 --pairs 160 --runs 3 "${flags[@]}" \
      --out "$out/$data-$mode.json" 2>&1 | tee "$out/$data-$mode.log"
  done
done
python bench/head_memory.py --device cuda --dtype bf16 --batch 8 --seq 1024 \
  --chunks 256,512,1024,2048 \
  --out "$out/head-memory.json" 2>&1 | tee "$out/head-memory.log"
