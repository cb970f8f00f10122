#!/usr/bin/env bash
# Reproduces the bundled VLA checkpoint (`--checkpoint default`,
# policies/vla/checkpoints/default) with our own pipeline: scripted-expert
# demonstrations recorded in the Gymnasium environments (`surgbot data record`,
# LeRobotDataset v3), then `surgbot policy train` (LeRobot's training step).
# Stage 1: STEPS steps on 300 reach, 400 needle_pick and 315 peg_transfer
# episodes drawn 2 : 2 : 2 (peg_transfer's recorded on for PEG_SUCCESS_TAIL_S
# after each success: the release), the action head given the simulator's
# scene summary (SCENE_INPUT=1, `--scene-input`: where the objects are), its
# positions offsets from the tool or from those objects (SCENE_ANCHORED=1), its
# rotation also anchored on the object's yaw (SCENE_ANCHORED_YAW=1), its jaw
# command absolute (JAW_ABSOLUTE=1).
# Stage 3 (the locators): `surgbot policy train-locator` trains a scene locator
# (anchor keypoints and a LOCATOR_GLIMPSE_PX glimpse reading first frames
# rendered at LOCATOR_FRAME_SIZE) for LOCATOR_STEPS steps on first frames of
# LOCATOR_NEEDLE_LAYOUTS needle_pick, LOCATOR_OTHER_LAYOUTS reach and
# LOCATOR_PEG_LAYOUTS peg_transfer layouts, each also through the `sim`
# source's appearance randomisation (LOCATOR_APPEARANCE), once per seed in
# LOCATOR_SEEDS; `policy join-locator` puts them all on stage 1's action head,
# their estimates averaged: the bundled checkpoint needs nothing from the
# simulator.
# (LOCATOR_SEEDS=0 LOCATOR_FRAME_SIZE= LOCATOR_GLIMPSE_PX=: afdbe93424f4, bundled
# until December 2026: one locator on the 96x128 frames; every older recipe
# below needs these three too.)
# (SCENE_ANCHORED_YAW=0 JAW_ABSOLUTE=0 LOCATOR_STEPS= LOCATOR_NEEDLE_LAYOUTS=
# LOCATOR_PEG_LAYOUTS= (train-locator's defaults): aadbeeb61456, bundled until
# December 2026, its locator trained on the SCENE_ANCHORED=0 head;
# SCENE_ANCHORED=0 with those: 5590a298338b;
# NEEDLE_EPISODES=200 PEG_EPISODES=105 WEIGHTS="2 2 1" PEG_SUCCESS_TAIL_S=0
# LOCATOR_GLIMPSE_PX=0 LOCATOR_ANCHOR_WEIGHT=0 LOCATOR_APPEARANCE=none SCENE_ANCHORED=0:
# c16a4f994225; SCENE_INPUT=0 LOCATOR_STEPS=0 with those: 54125c0c6dc0, image and state only.)
# Optional stage 2 (off by default; NEEDLE_MORE=160 PEG_MORE=105 on top of that
# older recipe gave the candidate measured in policies/vla/README.md, not
# bundled): stage 1's run resumed (`--resume`, same optimiser state) for
# FT_STEPS more steps on the same reach data plus more needle_pick and
# peg_transfer layouts, the cosine schedule stretched to STEPS + FT_STEPS (the
# rate restarts part-way down it).
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
NEEDLE_EPISODES=${NEEDLE_EPISODES:-400}     # layouts 3000-3399
PEG_EPISODES=${PEG_EPISODES:-315}           # 105 layouts from 6000 x 3 colours (--each-target)
WEIGHTS=${WEIGHTS:-2 2 2}                   # sampling weights reach needle_pick peg_transfer
WORKERS=${WORKERS:-2}                       # recording processes (the datasets do not depend on it)
SUCCESS_TAIL_S=${SUCCESS_TAIL_S:-0}         # seconds recorded after each reach / needle_pick success (0: this
                                            # checkpoint's, as recorded before `data record` had the tail)
PEG_SUCCESS_TAIL_S=${PEG_SUCCESS_TAIL_S:-1}  # the same for peg_transfer's episodes: 1 s of the expert letting go
                                            # and backing off (without it no checkpoint ever opened its jaws)
PERTURB_MM=${PERTURB_MM:-0}                 # DART bumps of up to this many mm in the experts' executed commands
                                            # (0: this checkpoint's data; see docs/data.md)
GOAL_LOSS_WEIGHT=${GOAL_LOSS_WEIGHT:-1}     # auxiliary "where does the episode end" head (0: none)
GOAL_MEMORY_MAX_JAW=${GOAL_MEMORY_MAX_JAW-0.3}    # the goal memory bends only closed-jaw chunks (rad; empty: any)
GOAL_TARGET=${GOAL_TARGET:-episode_end}    # what the goal head learns: episode_end or first_grasp
GOAL_FROM_IMAGE=${GOAL_FROM_IMAGE:-0}       # 1: the goal head sees the image and instruction only (no state)
GOAL_ENCODER=${GOAL_ENCODER:-0}             # 1: the goal head has its own image encoder (trained by its loss alone)
SCENE_INPUT=${SCENE_INPUT:-1}               # 1: the action head also gets the simulator's scene summary
SCENE_NOISE_MM=${SCENE_NOISE_MM:-0}         # with SCENE_INPUT: noise on its positions in training (mm, std)
SCENE_YAW_NOISE_DEG=${SCENE_YAW_NOISE_DEG:-0}   # with SCENE_INPUT: noise on its object yaw in training (deg, std)
SCENE_LOCATOR=${SCENE_LOCATOR:-0}           # with SCENE_INPUT: a locator gives it from the first image instead
SCENE_RELATIVE=${SCENE_RELATIVE:-0}         # with SCENE_INPUT: also its points relative to the tool
SCENE_ANCHORED=${SCENE_ANCHORED:-1}         # with SCENE_INPUT: positions also as offsets from its points
SCENE_ANCHORED_YAW=${SCENE_ANCHORED_YAW:-1} # with SCENE_ANCHORED: the rotation also anchored on the object's yaw
JAW_ABSOLUTE=${JAW_ABSOLUTE:-1}             # the jaw command absolute, not an offset from the measured jaw
# Stage 3 settings; empty: `surgbot policy train-locator`'s defaults (policies/vla/configuration_locator.py:
# 8000 steps, 800 needle_pick layouts from seed 3000, 400 reach (from 0) and peg_transfer (from 6000) layouts)
LOCATOR_STEPS=${LOCATOR_STEPS-12000}        # 0: no stage 3 (with SCENE_INPUT=1 the result then needs the
                                            # simulator's summary at evaluation: the bound)
LOCATOR_NEEDLE_LAYOUTS=${LOCATOR_NEEDLE_LAYOUTS-1600}
LOCATOR_PEG_LAYOUTS=${LOCATOR_PEG_LAYOUTS-1200}
LOCATOR_OTHER_LAYOUTS=${LOCATOR_OTHER_LAYOUTS-}
LOCATOR_GLIMPSE_PX=${LOCATOR_GLIMPSE_PX-32} # (0 with LOCATOR_ANCHOR_WEIGHT=0: the locator without anchors or glimpse)
LOCATOR_ANCHOR_WEIGHT=${LOCATOR_ANCHOR_WEIGHT-}
LOCATOR_APPEARANCE=${LOCATOR_APPEARANCE:-strong}   # none: one look (e3da7a28f2bc, bundled before this one)
LOCATOR_SHIFT_PX=${LOCATOR_SHIFT_PX-}       # training image shifts of the locator (empty: the head's SHIFT_PX)
LOCATOR_FRAME_SIZE=${LOCATOR_FRAME_SIZE-240x320}   # HxW: first frames rendered at it, the glimpse reading
                                            # them (empty: SIZE); the result asks for such frames
LOCATOR_SEEDS=${LOCATOR_SEEDS:-0 1}         # one locator per seed, their estimates averaged
SHIFT_PX=${SHIFT_PX:-2}                     # training image shift augmentation, +- px
STEPS=${STEPS:-16000}
COSINE_STEPS=${COSINE_STEPS:-$STEPS}        # length of the LR schedule (longer: stop part-way along it)
NEEDLE_MORE=${NEEDLE_MORE:-0}               # stage 2: needle_pick episodes from seed 3000 (0: no stage 2)
PEG_MORE=${PEG_MORE:-0}                     # stage 2: peg_transfer episodes from seed 6000 (--each-target)
FT_STEPS=${FT_STEPS:-10000}                 # stage 2: steps after stage 1's
FT_WEIGHTS=${FT_WEIGHTS:-3 2 2}             # stage 2: sampling weights reach needle_pick peg_transfer
BATCH=${BATCH:-32}
export MUJOCO_GL=${MUJOCO_GL:-osmesa} HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1 WANDB_MODE=disabled

record() {  # task episodes first_seed folder extra...
    local task=$1 n=$2 seed=$3 dir=$WORK/data/$4 tail=$SUCCESS_TAIL_S; shift 4
    [ "$task" = peg_transfer ] && tail=$PEG_SUCCESS_TAIL_S
    if [ -f "$dir/meta/info.json" ]; then echo "== $task: $dir exists, kept"; return; fi
    echo "== record $task: $n episodes from seed $seed ($(date -u +%T))"
    "$PY" -m surgbot.cli data record --task "$task" --episodes "$n" --seed "$seed" --image-size "$SIZE" \
        --workers "$WORKERS" --success-tail-s "$tail" --perturb-mm "$PERTURB_MM" --out "$dir" "$@"
}

train() {  # out steps cosine_steps "weights" needle_dir peg_dir extra...
    local out=$1 steps=$2 cosine=$3 weights=$4 needle=$5 peg=$6; shift 6
    local H=${MODEL_SIZE%x*} W=${MODEL_SIZE#*x} W_REACH W_NEEDLE W_PEG
    read -r W_REACH W_NEEDLE W_PEG <<< "$weights"
    echo "== train $out to step $steps ($(date -u +%T))"
    # shellcheck disable=SC2086  # CROP is four numbers
    "$PY" -m surgbot.cli policy train \
        --dataset "$WORK/data/reach" --dataset "$WORK/data/$needle" --dataset "$WORK/data/$peg" \
        --weight "$W_REACH" --weight "$W_NEEDLE" --weight "$W_PEG" --out "$out" --steps "$steps" --batch-size "$BATCH" \
        --threads 1 --in-memory --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps "$cosine" --seed 1000 \
        --image-size "$H" "$W" --crop $CROP --goal-loss-weight "$GOAL_LOSS_WEIGHT" --shift-px "$SHIFT_PX" \
        ${GOAL_MEMORY_MAX_JAW:+--goal-memory-max-jaw-rad "$GOAL_MEMORY_MAX_JAW"} \
        --goal-target "$GOAL_TARGET" $([ "$GOAL_FROM_IMAGE" = 1 ] && echo --goal-from-image) \
        $([ "$GOAL_ENCODER" = 1 ] && echo --goal-encoder) \
        $([ "$SCENE_INPUT" = 1 ] && echo --scene-input --scene-noise-mm "$SCENE_NOISE_MM" \
            --scene-yaw-noise-deg "$SCENE_YAW_NOISE_DEG") \
        $([ "$SCENE_LOCATOR" = 1 ] && echo --scene-locator) \
        $([ "$SCENE_RELATIVE" = 1 ] && echo --scene-relative) \
        $([ "$SCENE_ANCHORED" = 1 ] && echo --scene-anchored) \
        $([ "$SCENE_ANCHORED_YAW" = 1 ] && echo --scene-anchored-yaw) \
        $([ "$JAW_ABSOLUTE" = 1 ] && echo --jaw-absolute) \
        --save-freq 2000 "$@"
}

record reach "$REACH_EPISODES" 0 reach --each-target
record needle_pick "$NEEDLE_EPISODES" 3000 needle_pick
record peg_transfer "$PEG_EPISODES" 6000 peg_transfer --each-target
[ -f "$WORK/train/train_summary.json" ] || train "$WORK/train" "$STEPS" "$COSINE_STEPS" "$WEIGHTS" needle_pick peg_transfer
FINAL=$WORK/train
if [ "$NEEDLE_MORE" -gt 0 ] && [ "$PEG_MORE" -gt 0 ] && [ "$FT_STEPS" -gt 0 ]; then
    record needle_pick "$NEEDLE_MORE" 3000 needle_pick_more
    record peg_transfer "$PEG_MORE" 6000 peg_transfer_more --each-target
    FINAL=$WORK/finetune
    if [ ! -f "$FINAL/train_summary.json" ]; then   # (an interrupted stage 2 resumes from its last checkpoint)
        if [ ! -d "$FINAL" ]; then   # stage 1's folder (checkpoints, optimiser state) continued in a copy
            cp -a "$WORK/train" "$FINAL" && rm -f "$FINAL/train_summary.json"
        fi
        TOTAL=$((STEPS + FT_STEPS))
        train "$FINAL" "$TOTAL" "$TOTAL" "$FT_WEIGHTS" needle_pick_more peg_transfer_more --resume
    fi
fi

TRAINED=$FINAL
if [ "$SCENE_INPUT" = 1 ] && [ "$SCENE_LOCATOR" != 1 ] && [ "${LOCATOR_STEPS:-1}" != 0 ]; then
    FROM=()
    for seed in $LOCATOR_SEEDS; do
        LOC=$WORK/locator_s$seed
        FROM+=(--locator-from "$LOC/checkpoints/last/pretrained_model")
        [ -f "$LOC/train_summary.json" ] && continue
        echo "== train scene locator $seed for $TRAINED ($(date -u +%T))"
        rm -rf "$LOC"
        "$PY" -m surgbot.cli policy train-locator --bound "$TRAINED" --out "$LOC" --threads 1 --seed "$seed" \
            ${LOCATOR_STEPS:+--steps "$LOCATOR_STEPS"} \
            ${LOCATOR_NEEDLE_LAYOUTS:+--needle-layouts "$LOCATOR_NEEDLE_LAYOUTS"} \
            ${LOCATOR_OTHER_LAYOUTS:+--other-layouts "$LOCATOR_OTHER_LAYOUTS"} \
            ${LOCATOR_PEG_LAYOUTS:+--peg-layouts "$LOCATOR_PEG_LAYOUTS"} \
            ${LOCATOR_GLIMPSE_PX:+--glimpse-px "$LOCATOR_GLIMPSE_PX"} \
            ${LOCATOR_ANCHOR_WEIGHT:+--anchor-weight "$LOCATOR_ANCHOR_WEIGHT"} \
            ${LOCATOR_SHIFT_PX:+--shift-px "$LOCATOR_SHIFT_PX"} \
            ${LOCATOR_FRAME_SIZE:+--frame-size "$LOCATOR_FRAME_SIZE"} --appearance "$LOCATOR_APPEARANCE"
    done
    FINAL=$WORK/locator
    if [ ! -f "$FINAL/train_summary.json" ]; then
        echo "== join the locators of seeds $LOCATOR_SEEDS to $TRAINED ($(date -u +%T))"
        rm -rf "$FINAL"
        "$PY" -m surgbot.cli policy join-locator --bound "$TRAINED" "${FROM[@]}" --out "$FINAL"
    fi
fi

DEST=policies/vla/checkpoints/default
mkdir -p "$DEST"
rm -f "$DEST"/*
cp "$FINAL/checkpoints/last/pretrained_model/"* "$DEST/"
rm -f "$DEST/train_config.json"
cp "$TRAINED/train_summary.json" "$DEST/train_summary.json"
if [ "$FINAL" != "$TRAINED" ]; then cp "$FINAL/train_summary.json" "$DEST/locator_summary.json"; fi
echo "== bundled checkpoint: $DEST ($(du -sh "$DEST" | cut -f1)) ($(date -u +%T))"
