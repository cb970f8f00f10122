#!/usr/bin/env bash
# Resolution probe (policies/vla/README.md "A first resolution probe"): reach only, the same 300 episodes
# (layouts 0-99 x 3 colours, 1 s tail) recorded at 96x128 and at 144x192, the pad crop seen at 80x88 and
# 120x132 (shift augmentation 2 and 3 px: the same in mm); 6000 steps, cosine over 6000, otherwise the
# bundled recipe.   docs/results/tried_resolution/commands.sh [WORK_DIR]   (default runs/res)
set -euo pipefail
cd "$(dirname "$0")/../../.."
WORK=${1:-runs/res}
export MUJOCO_GL=osmesa HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1 WANDB_MODE=disabled
record() { size=$1 out=$2
  .venv/bin/python -m surgbot.cli data record --task reach --episodes 300 --seed 0 --image-size "$size" --workers 2 \
    --success-tail-s 1 --each-target --out "$out"; }
train() { data=$1 out=$2 h=$3 w=$4 shift=$5
  .venv/bin/python -m surgbot.cli policy train --dataset "$data" --out "$out" --steps 6000 --batch-size 32 --threads 1 \
    --in-memory --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps 6000 --seed 1000 --image-size "$h" "$w" \
    --crop 0 0.125 0.8333 0.6875 --goal-loss-weight 1 --shift-px "$shift" --save-freq 2000; }
record 96x128 "$WORK/data/reach_lo"
record 144x192 "$WORK/data/reach_hi"
train "$WORK/data/reach_lo" "$WORK/low" 80 88 2
train "$WORK/data/reach_hi" "$WORK/high" 120 132 3
for run in low high; do
  .venv/bin/python -m surgbot.cli policy eval --checkpoint "$WORK/$run" --task reach --episodes 50 --seed 100000 \
    --threads 1 --json | tail -n 1 > "$WORK/reach_$run.json"
done
