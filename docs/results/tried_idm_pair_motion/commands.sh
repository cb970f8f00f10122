#!/usr/bin/env bash
# Issue 14, December 2026 (session 28 of wave 2): four changes to the 15-episode IDM, each trained
# 1500 steps on the same recordings as the tree's IDM and labelled on the same held-out clips
# (results.json; docs/world_model.md, "Frame pairs, a motion encoder, no random crop").  None is in
# the tree: the two code changes are the diffs here.  From the repository root; W keeps the data.
set -euo pipefail
H=docs/results/tried_idm_pair_motion
export W=${W:-out/idm_tried} MUJOCO_GL=osmesa HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 SVT_LOG=1
mkdir -p "$W"
for t in reach needle_pick; do .venv/bin/python $H/prep.py $t; done     # 8 real clips + 15 demos per task
.venv/bin/python $H/exp.py base1500 1500                                 # the tree's IDM
.venv/bin/python $H/exp.py crop1_1500 1500 crop_scale=1.0                # no random crop
.venv/bin/python $H/exp.py res120 1500 "image_size=[120,120]"            # nearly the full 128 px frame
git apply $H/pair_head.diff && .venv/bin/python $H/exp.py pair1500 1500; git apply -R $H/pair_head.diff
git apply $H/motion_encoder.diff && .venv/bin/python $H/exp.py mot1500 1500; git apply -R $H/motion_encoder.diff
# Probes (the matching code applied): .venv/bin/python $H/probes.py pair|gain|fusion|scale CKPT [TASK]
