#!/usr/bin/env bash
# resolution probe: reach only, the same 300 episodes (layouts 0-99 x 3 colours, 1 s tail) at 96x128 and 144x192,
# the pad crop seen at 80x88 vs 120x132; 6000 steps, cosine over 6000, otherwise the bundled recipe
cd /work/main
export MUJOCO_GL=osmesa HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1 WANDB_MODE=disabled
train() { data=$1 out=$2 h=$3 w=$4 shift=$5
  .venv/bin/python -m surgbot.cli policy train --dataset $data --out $out --steps 6000 --batch-size 32 --threads 1 \
    --in-memory --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps 6000 --seed 1000 --image-size $h $w \
    --crop 0 0.125 0.8333 0.6875 --goal-loss-weight 1 --shift-px $shift --save-freq 2000; }
date -u
train /work/wt/learn2/runs/tail300/data/reach runs/res/low 80 88 2 > runs/res/low.log 2>&1 &
.venv/bin/python -m surgbot.cli data record --task reach --episodes 300 --seed 0 --image-size 144x192 --workers 2 \
    --success-tail-s 1 --each-target --out runs/res/data/reach_hi > runs/res/record.log 2>&1
date -u
train runs/res/data/reach_hi runs/res/high 120 132 3 > runs/res/high.log 2>&1
wait; date -u
