#!/usr/bin/env bash
# The goal head aimed at the grasp (policies/vla/README.md "Tried, not kept: the goal head aimed at the
# grasp"): the bundled recipe plus --goal-target first_grasp, three variants.
#   docs/results/tried_first_grasp/commands.sh [WORK_DIR]     (default runs/first_grasp)
set -euo pipefail
cd "$(dirname "$0")/../../.."
WORK=${1:-runs/first_grasp}
export MUJOCO_GL=osmesa HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1 WANDB_MODE=disabled
record() {  # task episodes first_seed folder extra...  (as scripts/train_default_policy.sh records them)
    .venv/bin/python -m surgbot.cli data record --task "$1" --episodes "$2" --seed "$3" --image-size 96x128 \
        --workers 2 --success-tail-s 0 --perturb-mm 0 --out "$WORK/data/$4" "${@:5}"
}
record reach 300 0 reach --each-target
record needle_pick 200 3000 needle_pick
record needle_pick 800 3000 needle_pick_800          # layouts 3000-3799 (the first 200 are the bundled ones)
record peg_transfer 105 6000 peg_transfer --each-target
train() {  # out needle_folder extra...
    .venv/bin/python -m surgbot.cli policy train \
      --dataset "$WORK/data/reach" --dataset "$WORK/data/$2" --dataset "$WORK/data/peg_transfer" \
      --weight 2 --weight 2 --weight 1 --out "$WORK/$1" --steps 16000 --batch-size 32 \
      --threads 1 --in-memory --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps 16000 --seed 1000 \
      --image-size 80 88 --crop 0 0.125 0.8333 0.6875 --goal-loss-weight 1 --shift-px 2 \
      --goal-memory-max-jaw-rad 0.3 --goal-from-image --goal-target first_grasp --save-freq 2000 "${@:3}"
}
train shared_200 needle_pick                                   # the shared encoder's goal head, bundled data
train shared_800 needle_pick_800                               # the same, 800 needle_pick layouts
train locator_800 needle_pick_800 --goal-encoder               # the goal head with its own encoder
for run in shared_200 shared_800 locator_800; do
    .venv/bin/python -m surgbot.cli policy eval --checkpoint "$WORK/$run" --task needle_pick --episodes 30 \
      --seed 60000 --threads 1 --json | tail -n 1 > "$WORK/${run}_needle_pick_validation_60000.json"
    scripts/eval_default_policy.sh "$WORK/$run" "$WORK/${run}_eval"
done
