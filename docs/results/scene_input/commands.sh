#!/usr/bin/env bash
# The scene input (policies/vla/README.md, "The scene input"): the bundled recipe with the action head
# also given where the objects are (observation.environment_state, sim/envs/scene_state.py).
# Run from a copy of scripts/ outside the checkout (scripts/run_tests.py stops processes of the checkout).
set -euo pipefail
# 1. the bound: the simulator's summary in training and in evaluation (the harness passes it)
SCENE_INPUT=1 scripts/train_default_policy.sh runs/scene
# 2. deployable: a locator learns the summary; the action head trains on the true one + 2 mm noise;
#    evaluation uses the locator's estimate from the first image (same recorded data as 1)
SCENE_INPUT=1 SCENE_LOCATOR=1 SCENE_NOISE_MM=2 scripts/train_default_policy.sh runs/locator
for run in scene locator; do
    CKPT=runs/$run/train/checkpoints/last/pretrained_model
    .venv/bin/python -m surgbot.cli policy eval --checkpoint "$CKPT" --task needle_pick --episodes 30 \
        --seed 60000 --threads 1 --json | tail -n 1 > docs/results/scene_input/${run}_val_needle_pick.json
    scripts/eval_default_policy.sh "$CKPT" "out/eval_$run"
done
for task in needle_pick peg_transfer reach; do
    .venv/bin/python docs/results/scene_input/scene_probe.py runs/locator/train/checkpoints/last/pretrained_model \
        "$task" 60000 30 "docs/results/scene_input/locator_probe_$task.json"
done
