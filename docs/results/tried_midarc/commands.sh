#!/usr/bin/env bash
# Mid-arc needle grasp (policies/vla/README.md "Tried: grasping the needle at the middle of its arc"):
# the bundled recipe (scripts/train_default_policy.sh defaults) with the needle_pick demonstrations
# recorded by the expert of commit 0ed3d6f (grasps the middle of the arc every episode; reverted in d1b7845),
# the reach and peg_transfer datasets the bundled checkpoint was trained on.
#   docs/results/tried_midarc/commands.sh [WORK_DIR]   (default runs/mid; needs a clean working tree)
set -euo pipefail
cd "$(dirname "$0")/../../.."
WORK=${1:-runs/mid}
git checkout 0ed3d6f -- sim/envs/experts.py sim/tasks/base.py
trap 'git checkout HEAD -- sim/envs/experts.py sim/tasks/base.py' EXIT
scripts/train_default_policy.sh "$WORK"          # (copies its result into policies/vla/checkpoints/default:
git checkout HEAD -- policies/vla/checkpoints/default   #  the bundled checkpoint is put back)
scripts/eval_default_policy.sh "$WORK/train" "$WORK/eval"
MUJOCO_GL=osmesa OMP_NUM_THREADS=1 .venv/bin/python -m surgbot.cli policy eval --checkpoint "$WORK/train" \
    --task needle_pick --episodes 30 --seed 60000 --threads 1 --json | tail -n 1 > "$WORK/eval/needle_pick_validation_60000.json"
