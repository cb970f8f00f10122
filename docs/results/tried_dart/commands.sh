#!/usr/bin/env bash
# DART runs (policies/vla/README.md "DART demonstrations and 3x the layouts"): reach 900 episodes with 6 mm
# bumps, needle_pick 16 and peg_transfer 12 without, all with the 1 s tail; the bundled recipe at keypoint
# stride 8 and 4.   docs/results/tried_dart/commands.sh [WORK_DIR]   (default runs/dart)
set -euo pipefail
cd "$(dirname "$0")/../../.."
WORK=${1:-runs/dart}
export MUJOCO_GL=osmesa HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1 WANDB_MODE=disabled
rec() { .venv/bin/python -m surgbot.cli data record --image-size 96x128 --workers 2 --success-tail-s 1 "$@"; }
rec --task reach --episodes 900 --seed 0 --each-target --perturb-mm 6 --out "$WORK/data/reach"
rec --task needle_pick --episodes 16 --seed 3000 --out "$WORK/data/needle_pick"
rec --task peg_transfer --episodes 12 --seed 6000 --each-target --out "$WORK/data/peg_transfer"
train() { out=$1; shift
  .venv/bin/python -m surgbot.cli policy train --dataset "$WORK/data/reach" --dataset "$WORK/data/needle_pick" \
    --dataset "$WORK/data/peg_transfer" --weight 3 --weight 1 --weight 1 --out "$out" --steps 12000 --batch-size 32 \
    --threads 1 --in-memory --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps 12000 --seed 1000 \
    --image-size 80 88 --crop 0 0.125 0.8333 0.6875 --goal-loss-weight 1 --shift-px 2 --save-freq 2000 "$@"; }
train "$WORK/stride8"
train "$WORK/stride4" --keypoint-stride 4
for run in stride8 stride4; do
  .venv/bin/python -m surgbot.cli policy eval --checkpoint "$WORK/$run" --task reach --episodes 50 --seed 100000 \
    --threads 1 --json | tail -n 1 > "$WORK/reach_$run.json"
done
