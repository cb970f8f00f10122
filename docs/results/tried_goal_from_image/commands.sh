#!/usr/bin/env bash
# Goal head without the state (policies/vla/README.md "Tried, not kept: the goal head without the state"):
# the bundled recipe on the bundled checkpoint's data (scripts/train_default_policy.sh records it into
# WORK/data) plus --goal-from-image.   docs/results/tried_goal_from_image/commands.sh [WORK_DIR] (default runs/gimg)
set -euo pipefail
cd "$(dirname "$0")/../../.."
WORK=${1:-runs/gimg}
export MUJOCO_GL=osmesa HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1 WANDB_MODE=disabled
record() {  # task episodes first_seed extra...  (as scripts/train_default_policy.sh records them)
    .venv/bin/python -m surgbot.cli data record --task "$1" --episodes "$2" --seed "$3" --image-size 96x128 \
        --workers 2 --success-tail-s 0 --perturb-mm 0 --out "$WORK/data/$1" "${@:4}"
}
record reach 300 0 --each-target
record needle_pick 200 3000
record peg_transfer 105 6000 --each-target
.venv/bin/python -m surgbot.cli policy train \
  --dataset "$WORK/data/reach" --dataset "$WORK/data/needle_pick" --dataset "$WORK/data/peg_transfer" \
  --weight 2 --weight 2 --weight 1 --out "$WORK/gimg" --steps 16000 --batch-size 32 \
  --threads 1 --in-memory --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps 16000 --seed 1000 \
  --image-size 80 88 --crop 0 0.125 0.8333 0.6875 --goal-loss-weight 1 --shift-px 2 \
  --goal-memory-max-jaw-rad 0.3 --goal-from-image --save-freq 2000
scripts/eval_default_policy.sh "$WORK/gimg" "$WORK/eval"
.venv/bin/python -m surgbot.cli policy eval --checkpoint "$WORK/gimg" --task needle_pick --episodes 30 --seed 60000 \
  --threads 1 --json | tail -n 1 > "$WORK/eval/needle_pick_validation_60000.json"
