#!/usr/bin/env bash
# The SurgWorld-style data of the results study (issue 18), with surgbot's own commands:
#   1. IDM training demos: 15 expert episodes per task, seeds 1000.. (the policy's demos use 0..);
#   2. one IDM trained on them;
#   3. 200 `sim` world-model clips per task (seeds 20000..) for needle_pick and peg_transfer,
#      and a 50-clip subset of each (the first 50, through the folder backend);
#   4. the 50- and 200-clip sets labelled with the IDM -> LeRobotDatasets (source pseudo).
# Every step skips an output that already exists, so a stopped run continues.
#   scripts/pseudo_data.sh [OUT]        (default OUT=runs/pseudo; logs in OUT/logs/)
#   SURGBOT_IDM_EPISODES=15 SURGBOT_CLIPS=200 SURGBOT_SUBSET=50 SURGBOT_IDM_STEPS=3000 override the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/pseudo}
EPISODES=${SURGBOT_IDM_EPISODES:-15}
CLIPS=${SURGBOT_CLIPS:-200}
SUBSET=${SURGBOT_SUBSET:-50}
STEPS=${SURGBOT_IDM_STEPS:-3000}
SB=".venv/bin/surgbot"
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 MUJOCO_GL=${MUJOCO_GL:-osmesa}
mkdir -p "$OUT/logs"

step() {   # step NAME OUTPUT command...
  local name=$1 out=$2; shift 2
  if [ -e "$out" ]; then echo "[pseudo] $name: $out exists, skipped"; return; fi
  local t0=$SECONDS
  echo "[pseudo] $name ..."
  nice -n 10 "$@" >"$OUT/logs/$name.log" 2>&1 || { echo "[pseudo] $name failed: see $OUT/logs/$name.log"; exit 1; }
  echo "[pseudo] $name: $((SECONDS - t0)) s"
}

for task in reach needle_pick peg_transfer; do
  step "record_$task" "$OUT/idm_demos_$task" $SB data record --task "$task" --episodes "$EPISODES" --seed 1000 \
    --out "$OUT/idm_demos_$task"
done
step idm_train "$OUT/idm" $SB idm train --dataset "$OUT/idm_demos_reach" --dataset "$OUT/idm_demos_needle_pick" \
  --dataset "$OUT/idm_demos_peg_transfer" --out "$OUT/idm" --steps "$STEPS"
for task in needle_pick peg_transfer; do
  step "videos_${task}_$CLIPS" "$OUT/clips_${task}_$CLIPS" $SB data videos --task "$task" --episodes "$CLIPS" \
    --seed 20000 --out "$OUT/clips_${task}_$CLIPS"
  step "videos_${task}_$SUBSET" "$OUT/clips_${task}_$SUBSET" $SB data videos --backend folder \
    --source "$OUT/clips_${task}_$CLIPS" --task "$task" --episodes "$SUBSET" --out "$OUT/clips_${task}_$SUBSET"
  for n in "$SUBSET" "$CLIPS"; do
    step "label_${task}_$n" "$OUT/pseudo_${task}_$n" $SB idm label --videos "$OUT/clips_${task}_$n" \
      --idm "$OUT/idm" --out "$OUT/pseudo_${task}_$n"
  done
done
echo "[pseudo] done: IDM $OUT/idm, pseudo datasets $OUT/pseudo_*"
