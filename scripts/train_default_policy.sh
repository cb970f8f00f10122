#!/usr/bin/env bash
# Reproduces the bundled VLA checkpoint (`--checkpoint default`,
# policies/vla/checkpoints/default) with our own pipeline: scripted-expert
# demonstrations recorded in the Gymnasium environments (`surgbot data record`,
# LeRobotDataset v3), then `surgbot policy train` (LeRobot's training step).
#
#   scripts/train_default_policy.sh [WORK_DIR]        (default runs/default_policy)
#
# Seeds: recording uses layout seeds 0-9999 only (evaluation uses >= 100000).
# Deterministic on one machine: seeded layouts and experts, seeded training with
# one torch thread.  A stage whose output exists is skipped (delete it to redo).
# Counts and steps can be overridden through the environment (names below).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=${1:-runs/default_policy}
SIZE=${IMAGE_SIZE:-96x128}                  # HxW recorded: the twin's 240x320 view (4:3), scaled by 0.4
CROP=${CROP:-0 0.125 0.8333 0.6875}          # top left height width (fractions): the pad, 80x88 px of 96x128
MODEL_SIZE=${MODEL_SIZE:-80x88}             # HxW the image encoder sees (the crop, resized inside the model)
REACH_EPISODES=${REACH_EPISODES:-300}       # 100 layouts x 3 colours (--each-target)
NEEDLE_EPISODES=${NEEDLE_EPISODES:-16}
PEG_EPISODES=${PEG_EPISODES:-12}            # layouts 6000-6006 x the colours each allows
WEIGHTS=${WEIGHTS:-3 1 1}                   # sampling weights reach needle_pick peg_transfer
WORKERS=${WORKERS:-1}                       # recording processes (the datasets do not depend on it)
GOAL_LOSS_WEIGHT=${GOAL_LOSS_WEIGHT:-1}     # auxiliary "where does the episode end" head (0: none)
SHIFT_PX=${SHIFT_PX:-2}                     # training image shift augmentation, +- px
STEPS=${STEPS:-12000}
COSINE_STEPS=${COSINE_STEPS:-$STEPS}        # length of the LR schedule (longer: stop part-way along it)
BATCH=${BATCH:-32}
export MUJOCO_GL=${MUJOCO_GL:-osmesa} HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1 WANDB_MODE=disabled

record() {  # task episodes first_seed extra...
    local task=$1 n=$2 seed=$3; shift 3
    if [ -f "$WORK/data/$task/meta/info.json" ]; then echo "== $task: $WORK/data/$task exists, kept"; return; fi
    echo "== record $task: $n episodes from seed $seed ($(date -u +%T))"
    "$PY" -m surgbot.cli data record --task "$task" --episodes "$n" --seed "$seed" --image-size "$SIZE" \
        --workers "$WORKERS" --out "$WORK/data/$task" "$@"
}

record reach "$REACH_EPISODES" 0 --each-target
record needle_pick "$NEEDLE_EPISODES" 3000
record peg_transfer "$PEG_EPISODES" 6000 --each-target

if [ ! -f "$WORK/train/train_summary.json" ]; then
    echo "== train $STEPS steps ($(date -u +%T))"
    H=${MODEL_SIZE%x*}; W=${MODEL_SIZE#*x}
    read -r W_REACH W_NEEDLE W_PEG <<< "$WEIGHTS"
    # shellcheck disable=SC2086  # CROP is four numbers
    "$PY" -m surgbot.cli policy train \
        --dataset "$WORK/data/reach" --dataset "$WORK/data/needle_pick" --dataset "$WORK/data/peg_transfer" \
        --weight "$W_REACH" --weight "$W_NEEDLE" --weight "$W_PEG" --out "$WORK/train" --steps "$STEPS" --batch-size "$BATCH" \
        --threads 1 --in-memory --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps "$COSINE_STEPS" --seed 1000 \
        --image-size "$H" "$W" --crop $CROP --goal-loss-weight "$GOAL_LOSS_WEIGHT" --shift-px "$SHIFT_PX" \
        --save-freq 2000
fi

DEST=policies/vla/checkpoints/default
mkdir -p "$DEST"
rm -f "$DEST"/*
cp "$WORK/train/checkpoints/last/pretrained_model/"* "$DEST/"
rm -f "$DEST/train_config.json"
cp "$WORK/train/train_summary.json" "$DEST/train_summary.json"
echo "== bundled checkpoint: $DEST ($(du -sh "$DEST" | cut -f1)) ($(date -u +%T))"
