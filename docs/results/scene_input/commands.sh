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
# 3. the bound with the points also relative to the tool
SCENE_INPUT=1 SCENE_RELATIVE=1 scripts/train_default_policy.sh runs/relbound
scripts/eval_default_policy.sh runs/relbound/train/checkpoints/last/pretrained_model out/eval_relbound
# 4. how precise a locator must be: the bound fed the true summary moved by MM / turned by DEG
for err in "2 0" "4 0" "8 0" "0 30" "4 20"; do
    # shellcheck disable=SC2086  # two numbers
    .venv/bin/python docs/results/scene_input/scene_error.py runs/scene/train/checkpoints/last/pretrained_model \
        needle_pick 60000 30 $err
done
# 5. where peg_transfer fails
.venv/bin/python docs/results/scene_input/peg_trace.py runs/scene/train/checkpoints/last/pretrained_model 60000 6
# 6. a locator trained alone on rendered first frames (pad-plane targets), joined to the bound's action head
#    (`surgbot policy train-locator`; the base-frame runs, locator_alone_800_layouts*.jsonl, used the
#    script this stage grew from: docs/results/scene_input/train_locator.py at commit 8e8c5a7, FRAME base)
.venv/bin/python -m surgbot.cli policy train-locator --bound runs/scene/train --out runs/locw \
    --steps 4000 --needle-layouts 800 --other-layouts 200
scripts/eval_default_policy.sh runs/locw out/eval_locw
# 7. the candidate, bundled since (c16a4f994225): the locator trained longer on twice the reach/peg layouts
#    (the command's defaults; scripts/train_default_policy.sh runs it as its stage 3)
.venv/bin/python -m surgbot.cli policy train-locator --bound runs/scene/train --out runs/locw2
scripts/eval_default_policy.sh runs/locw2 out/eval_locw2
# 8. after bundling: the bundled locator on validation needles (direction error), and its validation success
.venv/bin/python docs/results/scene_input/scene_probe.py default needle_pick 60000 30 \
    docs/results/scene_input/bundled_locator_probe_needle_60000.json
.venv/bin/python -m surgbot.cli policy eval --checkpoint default --task needle_pick --episodes 30 --seed 60000 \
    --threads 1 --json | tail -n 1 > docs/results/scene_input/bundled_val_needle_pick_60000.json
# 9. more demonstrations for the action head (reach data as in 1), its bound, the peg trace, the same locator
NEEDLE_EPISODES=400 PEG_EPISODES=315 WEIGHTS="2 2 2" scripts/train_default_policy.sh runs/more
for task in peg_transfer needle_pick; do
    .venv/bin/python -m surgbot.cli policy eval --checkpoint runs/more/train --task $task --episodes 50 \
        --seed 100000 --threads 1 --json | tail -n 1 > docs/results/scene_input/more_data/more_bound_$task.json
done
.venv/bin/python docs/results/scene_input/peg_trace.py runs/more/train 60000 8 \
    > docs/results/scene_input/more_data/peg_trace_60000-60007.txt
.venv/bin/python -m surgbot.cli policy eval --checkpoint runs/more/locator --task needle_pick --episodes 30 \
    --seed 60000 --threads 1 --json | tail -n 1 > docs/results/scene_input/more_data/locator_val_needle_pick_60000.json
# 10. the same with 1 s recorded after each peg_transfer success (the release in the demonstrations)
NEEDLE_EPISODES=400 PEG_EPISODES=315 WEIGHTS="2 2 2" SUCCESS_TAIL_S=1 LOCATOR_STEPS=0 \
    scripts/train_default_policy.sh runs/tail    # (reach and needle_pick data: runs/more's, linked)
.venv/bin/python -m surgbot.cli policy eval --checkpoint runs/tail/train --task peg_transfer --episodes 50 \
    --seed 100000 --threads 1 --json | tail -n 1 > docs/results/scene_input/tail/tail_bound_peg_transfer.json
.venv/bin/python docs/results/scene_input/peg_trace.py runs/tail/train 60000 8 \
    > docs/results/scene_input/tail/peg_trace_60000-60007.txt
# 11. where peg_transfer's grasps must land (the expert's own grasps moved off the block's centre), the hold's
#     jaw command, and the tail bound under other chunk-execution settings (peg_window/)
.venv/bin/python docs/results/scene_input/peg_window/peg_offset.py "0,0,0;1,0,0;0,1,0;1.5,0,0;0,1.5,0;2,0,0;0,2,0;0,0,2;0,0,4" \
    60000 8 > docs/results/scene_input/peg_window/offset_60000-60007.txt
.venv/bin/python docs/results/scene_input/peg_window/jaw_exp.py 0.05,0.25,0.55 60000 8 \
    > docs/results/scene_input/peg_window/jaw_squeeze_60000-60007.txt
.venv/bin/python docs/results/scene_input/peg_window/exec_exp.py runs/tail/train peg_transfer 60000 8 \
    "0.5,0.7;0.125,0.7;0.0625,0.5" > docs/results/scene_input/peg_window/exec_runs_tail_60000-60007.jsonl
# 12. the tail bound on the other tasks (its peg_transfer: step 10)
for task in needle_pick reach; do
    .venv/bin/python -m surgbot.cli policy eval --checkpoint runs/tail/train --task $task --episodes 50 \
        --seed 100000 --threads 1 --json | tail -n 1 > "docs/results/scene_input/tail/tail_bound_${task%_pick}.json"
done
for c in red blue; do
    .venv/bin/python -m surgbot.cli policy eval --checkpoint runs/tail/train --task reach --episodes 25 \
        --seed 100000 --threads 1 --json --target $c | tail -n 1 > docs/results/scene_input/tail/tail_bound_lang_$c.json
done
# 13. anchors and glimpse (anchors_glimpse/): needle-only pilots first (the locator's training loop on
#     needle_pick first frames of layouts 3000-3599 / 3000-6999 as it was, plain_*.jsonl; then with
#     keypoints 0/1 anchored and a 24 px glimpse, 3000 layouts, anchors_glimpse_3000_layouts.jsonl: the
#     model and loss that became encoder_surgvla.Locator and train-locator's defaults; the pilot scripts
#     were not kept), then the stage on the tail bound with train-locator's defaults: bundled (e3da7a28f2bc)
.venv/bin/python -m surgbot.cli policy train-locator --bound runs/tail/train --out runs/tail/locator_g --threads 1
cp runs/tail/locator_g/train_summary.json docs/results/scene_input/anchors_glimpse/locator_train_summary.json
scripts/eval_default_policy.sh runs/tail/locator_g out/eval_locg     # -> docs/results/bundled_default/
# 14. the locator also learning from every layout through the appearance randomisation: bundled (5590a298338b);
#     the tail bound with the simulator's summary under that shift first (is the action head robust to it?)
.venv/bin/python -m surgbot.cli policy eval --checkpoint runs/tail/train --task reach --episodes 25 --seed 100000 \
    --threads 1 --appearance strong --json | tail -n 1 > docs/results/scene_input/tail/tail_bound_reach_appearance.json
.venv/bin/python -m surgbot.cli policy train-locator --bound runs/tail/train --out runs/tail/locator_app --threads 1 \
    --appearance strong
cp runs/tail/locator_app/train_summary.json docs/results/scene_input/anchors_glimpse/locator_appearance_train_summary.json
scripts/eval_default_policy.sh runs/tail/locator_app out/eval_app    # -> docs/results/bundled_default/
for task in reach needle_pick peg_transfer; do
    .venv/bin/python -m surgbot.cli policy eval --checkpoint runs/tail/locator_app --task $task --episodes 50 \
        --seed 100000 --threads 1 --appearance strong --json | tail -n 1 > out/eval_app/appearance_$task.json
done
# 15. anchored positions (anchored/): the tail bound's data, steps and seed with --scene-anchored; the simulator's
#     summary first, then joined with the bundled checkpoint's locator (5590a298338b's: the same data, so the
#     same normalisation) -> aadbeeb61456; traces on validation layouts
mkdir -p runs/anch/data && for t in reach needle_pick peg_transfer; do ln -sfn "$(readlink -f runs/tail/data/$t)" runs/anch/data/$t; done
SCENE_ANCHORED=1 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/anch
for task in peg_transfer needle_pick reach; do
    .venv/bin/python -m surgbot.cli policy eval --checkpoint runs/anch/train --task $task --episodes 50 --seed 100000 \
        --threads 1 --json | tail -n 1 > docs/results/scene_input/anchored/bound_$task.json
done
.venv/bin/surgbot policy join-locator --bound runs/anch/train --locator-from runs/tail/locator_app --out runs/anch/located
scripts/eval_default_policy.sh runs/anch/located out/eval_anch     # -> anchored/located_*.json
.venv/bin/python docs/results/scene_input/peg_trace.py runs/anch/train 60000 12 \
    > docs/results/scene_input/anchored/peg_trace_bound_60000-60011.txt
.venv/bin/python docs/results/scene_input/peg_trace.py runs/anch/located 60000 12 \
    > docs/results/scene_input/anchored/peg_trace_located_60000-60011.txt
.venv/bin/python docs/results/scene_input/anchored/anchor_weights.py runs/anch/train/checkpoints/010000/pretrained_model \
    peg_transfer 60002 > docs/results/scene_input/anchored/anchor_weights_peg_60002.txt
.venv/bin/python docs/results/scene_input/anchored/yaw_trace.py runs/anch/train 60000 12 \
    > docs/results/scene_input/anchored/yaw_trace_bound_60000-60011.txt
# 16. tried, not bundled: rotation anchors (same data), and with twice the peg_transfer layouts (the second half
#     appended to a copy of the peg data: layouts 6105-6209 x 3 colours)
mkdir -p runs/anchy/data && for t in reach needle_pick peg_transfer; do ln -sfn "$(readlink -f runs/tail/data/$t)" runs/anchy/data/$t; done
SCENE_ANCHORED=1 SCENE_ANCHORED_YAW=1 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/anchy
.venv/bin/surgbot policy join-locator --bound runs/anchy/train --locator-from runs/tail/locator_app --out runs/anchy/located
scripts/eval_default_policy.sh runs/anchy/located out/eval_anchy      # -> anchored/yaw_anchored_located_*.json
.venv/bin/python docs/results/scene_input/anchored/yaw_trace.py runs/anchy/train 60000 12 \
    > docs/results/scene_input/anchored/yaw_trace_yaw_anchored_bound_60000-60011.txt
.venv/bin/python docs/results/scene_input/peg_trace.py runs/anchy/train 60000 6 \
    > docs/results/scene_input/anchored/peg_trace_yaw_anchored_bound_60000-60005.txt
mkdir -p runs/peg2/data && cp -a runs/tail/data/peg_transfer runs/peg2/data/peg_transfer
for t in reach needle_pick; do ln -sfn "$(readlink -f runs/tail/data/$t)" runs/peg2/data/$t; done
.venv/bin/python -m surgbot.cli data record --task peg_transfer --episodes 315 --seed 6105 --image-size 96x128 \
    --workers 2 --success-tail-s 1 --out runs/peg2/data/peg_transfer --append --each-target
SCENE_ANCHORED=1 SCENE_ANCHORED_YAW=1 PEG_EPISODES=630 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/peg2
.venv/bin/python docs/results/scene_input/peg_trace.py runs/peg2/train 60000 12 \
    > docs/results/scene_input/anchored/peg_trace_yaw_anchored_630peg_bound_60000-60011.txt
# 17. the jaw and the grasp height (grasp_height/; validation layouts 60000-60039, 40 episodes per run; not bundled)
G=docs/results/scene_input/grasp_height
val() { .venv/bin/surgbot policy eval --checkpoint "$1" --task "$2" --seed 60000 --episodes 40 --threads 1 --json | tail -n 1 > "$G/$3"; }
.venv/bin/python $G/jaw_trace.py default peg_transfer 60004 9; .venv/bin/python $G/jaw_trace.py default needle_pick 60018 20
.venv/bin/python $G/expert_squeeze.py 0.05,0.12,0.19,0.25,0.3,0.35,0.4 60000 12 > $G/expert_squeeze_60000-60011.txt
.venv/bin/python $G/close_height.py default 60000 16 expert > $G/close_height_aadbeeb61456_60000-60015.txt
.venv/bin/python $G/locator_error.py default peg_transfer 60000 30 > $G/locator_error_aadbeeb61456_peg_transfer_60000-60029.txt
for t in peg_transfer needle_pick; do val default $t val_located_aadbeeb61456_$t.json; val runs/anch/train $t val_bound_anchored_$t.json; done
for r in jabs jrel jnoise; do mkdir -p runs/$r/data; for t in reach needle_pick peg_transfer; do ln -sfn "$(readlink -f runs/anch/data/$t)" runs/$r/data/$t; done; done
JAW_ABSOLUTE=1 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/jabs
JAW_ABSOLUTE=1 SCENE_RELATIVE=1 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/jrel
JAW_ABSOLUTE=1 SCENE_RELATIVE=1 SCENE_NOISE_MM=1 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/jnoise
for t in peg_transfer needle_pick; do val runs/jabs/train $t val_bound_jaw_absolute_$t.json; val runs/jrel/train $t val_bound_jaw_absolute_relative_$t.json; done
val runs/jnoise/train needle_pick val_bound_jnoise_needle.json
.venv/bin/python $G/close_height.py runs/jrel/train 60000 12        # -> close_height_jaw_absolute_relative_*.txt
.venv/bin/surgbot policy join-locator --bound runs/jrel/train --locator-from default --out runs/jrel/located
scripts/eval_default_policy.sh runs/jrel/located $G/jaw_absolute_relative_located
.venv/bin/surgbot policy train-locator --bound runs/anch/train --out runs/loc_p1200 --threads 1 --appearance strong --peg-layouts 1200
.venv/bin/surgbot policy train-locator --bound runs/anch/train --out runs/loc_p1200_n1600 --threads 1 --appearance strong \
    --peg-layouts 1200 --needle-layouts 1600 --steps 12000
for h in anch jrel jnoise; do for l in L1:loc_p1200 L2:loc_p1200_n1600; do
    .venv/bin/surgbot policy join-locator --bound runs/$h/train --locator-from runs/${l#*:} --out runs/${h}_${l%%:*}; done; done
val runs/anch_L1 peg_transfer val_anch_L1_peg.json; val runs/jrel_L1 peg_transfer val_jrel_L1_peg.json
for h in anch jrel jnoise; do val runs/${h}_L2 needle_pick val_${h}_L2_needle.json; val runs/${h}_L2 peg_transfer val_${h}_L2_peg.json; done
.venv/bin/python $G/close_height.py runs/jrel_L1 60000 12          # -> close_height_jaw_absolute_relative_*.txt
.venv/bin/python $G/locator_error.py runs/anch_L2 peg_transfer 60000 30 > $G/locator_error_L2_peg_transfer_60000-60029.txt
for h in jrel:jrel anch:anchored; do
    .venv/bin/python docs/results/scene_input/scene_error.py runs/${h%%:*}/train peg_transfer 60000 40 0.9 0 > $G/scene_error_${h#*:}_bound_0.9mm.json
    .venv/bin/python docs/results/scene_input/scene_error.py runs/${h%%:*}/train peg_transfer 60000 40 0 5.5 > $G/scene_error_${h#*:}_bound_5.5deg.json
done

# 18. the jaws square to the block (grasp_window/; bundled as afdbe93424f4)
W=docs/results/scene_input/grasp_window
valw() { .venv/bin/surgbot policy eval --checkpoint "$1" --task "$2" --seed 60000 --episodes 40 --threads 1 --json | tail -n 1 > "$W/$3"; }
.venv/bin/python $W/grasp_window.py 3.0:0,2.5:0,2.0:0,1.9:0,1.5:0,1.2:0,0.8:0,0.0:0,-0.5:0,-1.0:0,-2.0:0 50000 12
.venv/bin/python $W/grasp_window.py 0.8:15,0.8:30,0.8:45,-0.5:20,1.2:20,-0.5:30,0.4:30,1.2:30,1.5:30 50000 12
.venv/bin/python $W/grasp_window.py -1.0:40,-0.5:40,0.0:40,0.4:40,0.8:40,1.5:40,1.9:40 50000 12   # -> grasp_window_*.txt
.venv/bin/python $W/close_pose.py runs/jrel/train 60000 40 > $W/close_pose_jrel_bound_60000-60039.txt
for r in jay jry; do mkdir -p runs/$r/data; for t in reach needle_pick peg_transfer; do ln -sfn "$(readlink -f runs/anch/data/$t)" runs/$r/data/$t; done; done
JAW_ABSOLUTE=1 SCENE_ANCHORED_YAW=1 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/jay
JAW_ABSOLUTE=1 SCENE_ANCHORED_YAW=1 SCENE_RELATIVE=1 LOCATOR_STEPS=0 scripts/train_default_policy.sh runs/jry
for t in peg_transfer needle_pick; do valw runs/jay/train $t val_bound_jaw_absolute_yaw_$t.json
    valw runs/jry/train $t val_bound_jaw_absolute_yaw_relative_$t.json; done
.venv/bin/surgbot policy join-locator --bound runs/jay/train --locator-from runs/loc_p1200_n1600 --out runs/jay_L2
mkdir -p runs/prev_aadbeeb61456   # the previous bundled checkpoint's files, from git
for f in $(git ls-tree --name-only e3a4b18 policies/vla/checkpoints/default/); do git show "e3a4b18:$f" > runs/prev_aadbeeb61456/"${f##*/}"; done
.venv/bin/surgbot policy join-locator --bound runs/jay/train --locator-from runs/prev_aadbeeb61456 --out runs/jay_Lb
valw runs/jay_L2 peg_transfer val_jay_L2_peg_transfer.json; valw runs/jay_L2 needle_pick val_jay_L2_needle_pick.json
valw runs/jay_Lb peg_transfer val_jay_Laadbeeb61456_peg_transfer.json
# _a2: the same checkpoints with "scene_locator_average_px": 2 written into config.json
for t in peg_transfer needle_pick; do valw runs/jay_L2_a2 $t val_jay_L2_a2_$t.json; done; valw runs/jrel_L2_a2 peg_transfer val_jrel_L2_a2_peg_transfer.json
TASKS=peg_transfer LANG_EPISODES=0 scripts/eval_default_policy.sh runs/jay_L2 out/eval_jay_L2 &
TASKS="needle_pick reach" scripts/eval_default_policy.sh runs/jay_L2 out/eval_jay_L2; wait   # -> docs/results/bundled_default/
for t in peg_transfer needle_pick; do .venv/bin/surgbot policy eval --checkpoint runs/jay/train --task $t --seed 100000 \
    --episodes 50 --threads 1 --json | tail -n 1 > $W/bound_afdbe93424f4_head_${t}_100000-100049.json; done
for c in runs/jay/train:jay_bound default:afdbe93424f4 runs/prev_aadbeeb61456:aadbeeb61456; do
    .venv/bin/python $W/close_pose.py ${c%%:*} 60000 40 > $W/close_pose_${c#*:}_60000-60039.txt; done
for t in peg_transfer needle_pick; do .venv/bin/python $W/locator_average.py default $t 60000 30 2 > $W/locator_average_afdbe93424f4_${t}_60000-60029.txt; done
.venv/bin/python $W/locator_average.py runs/prev_aadbeeb61456 peg_transfer 60000 30 2 > $W/locator_average_aadbeeb61456_peg_transfer_60000-60029.txt

# 19. the located yaw (locator_parts/): runs/jay/train is afdbe93424f4's action head; the same head is
# `surgbot policy strip-locator --checkpoint default --out runs/jay_bound` (weight for weight)
P=docs/results/scene_input/locator_parts
mix() { .venv/bin/python $P/scene_mix.py "$1" "$2" peg_transfer 60000 40 "$3" | tail -n 1 > "$P/$4"; }
for parts in gyp g y p; do mix runs/jay/train policies/vla/checkpoints/default $parts mix_$parts.json; done
for e in "0.3 0" "0 2" "0 5.5" "0 11"; do set -- $e
    .venv/bin/python docs/results/scene_input/scene_error.py runs/jay/train peg_transfer 60000 40 $1 $2 | tail -n 1 \
        > $P/scene_error_jay_bound_${1}mm_${2}deg.json; done
for d in 0 5.5; do .venv/bin/python $P/close_pose_turned.py runs/jay/train 60000 12 $d > $P/close_pose_jay_bound_turned${d}_60000-60011.txt; done
for s in 60004 60001; do .venv/bin/python $P/yaw_gain.py runs/jay/train $s 5.5; done > $P/yaw_gain_jay_bound_60004_60001.txt
for t in peg_transfer needle_pick; do .venv/bin/python $P/frame_size_bound.py runs/jay/train $t 60000 40 240 320 | tail -n 1 \
    > $P/bound_jay_frame240x320_$t.json; done
# the finer-glimpse locator ("hr"): first frames at the twin's 240x320, a 32 px glimpse of the crop at full size
.venv/bin/surgbot policy strip-locator --checkpoint default --out runs/jay_bound
.venv/bin/surgbot policy train-locator --bound runs/jay_bound --out runs/loc_hr --threads 1 --steps 12000 \
    --needle-layouts 1600 --peg-layouts 1200 --appearance strong --frame-size 240x320 --glimpse-px 32
cp runs/loc_hr/train_summary.json $P/locator_hr_train_summary.json
valp() { .venv/bin/surgbot policy eval --checkpoint "$1" --task "$2" --seed "$3" --episodes "$4" --threads 1 --json | tail -n 1 > "$P/$5"; }
for t in peg_transfer needle_pick; do valp runs/loc_hr $t 60000 40 val_jay_hr_${t}_60000.json; done
mix runs/jay_bound runs/loc_hr y mix_hr_y.json; mix runs/jay_bound runs/loc_hr gp mix_hr_gp.json
valp runs/loc_hr peg_transfer 60040 80 val_jay_hr_peg_transfer_60040.json
valp default peg_transfer 60040 80 val_afdbe93424f4_peg_transfer_60040.json
# hr2: the same locator after 2a5cbd7 (the head told where the finer glimpse looked)
.venv/bin/surgbot policy train-locator --bound runs/jay_bound --out runs/loc_hr2 --threads 1 --steps 12000 \
    --needle-layouts 1600 --peg-layouts 1200 --appearance strong --frame-size 240x320 --glimpse-px 32
cp runs/loc_hr2/train_summary.json $P/locator_hr2_train_summary.json
# val_jay_hr2_*.json hold the two halves, run side by side: peg_transfer 60000+60 and 60060+60, needle_pick 60000+20 and 60020+20
.venv/bin/surgbot policy eval --checkpoint runs/loc_hr2 --task peg_transfer --seed 60000 --episodes 60 --threads 1 --json | tail -n 1
.venv/bin/surgbot policy eval --checkpoint runs/loc_hr2 --task peg_transfer --seed 60060 --episodes 60 --threads 1 --json | tail -n 1
.venv/bin/surgbot policy eval --checkpoint runs/loc_hr2 --task needle_pick --seed 60000 --episodes 20 --threads 1 --json | tail -n 1
.venv/bin/surgbot policy eval --checkpoint runs/loc_hr2 --task needle_pick --seed 60020 --episodes 20 --threads 1 --json | tail -n 1

# 20. heads trained for a located yaw (D = 4 and 8 deg), joined to hr2's locator (same normalisation stats)
sed '/^DEST=policies/,$d' scripts/train_default_policy.sh > scripts/.stage1.sh   # stage 1 only: nothing bundled
for D in 4 8; do    # (the data is the same for both: runs/yaw8/data may be a link to runs/yaw4/data)
    SCENE_YAW_NOISE_DEG=$D LOCATOR_STEPS=0 bash scripts/.stage1.sh runs/yaw$D
    cp runs/yaw$D/train/train_summary.json $P/head_yaw_noise${D}_train_summary.json
    .venv/bin/surgbot policy join-locator --bound runs/yaw$D/train --locator-from runs/loc_hr2 --out runs/yaw${D}_hr2
    # val_jyn_hr2_* (D = 4) and val_jyn8_hr2_* (D = 8) hold these halves ({"parts": [...]}), run side by side
    for s in 60000 60060; do valp runs/yaw${D}_hr2 peg_transfer $s 60 yaw${D}_peg_transfer_$s.json; done
    for s in 60000 60020; do valp runs/yaw${D}_hr2 needle_pick $s 20 yaw${D}_needle_pick_$s.json; done
done
rm scripts/.stage1.sh

# 21. two locators averaged (bundled as 8ffafa3be380). Steps 18-20's `default` is afdbe93424f4 (the
# checkpoint of commit 1941a39); its action head is this one's, so `strip-locator` gives runs/jay_bound either way.
.venv/bin/surgbot policy train-locator --bound runs/jay_bound --out runs/loc_hr2s1 --threads 2 --seed 1 --steps 12000 \
    --needle-layouts 1600 --peg-layouts 1200 --appearance strong --frame-size 240x320 --glimpse-px 32
# the probe (the bound fed the mean of both locators' estimates), run in two halves side by side
E=docs/results/scene_input/locator_parts
for s in 60000 60060; do
    .venv/bin/python $E/locator_ensemble.py runs/jay_bound peg_transfer $s 60 $P/val_ens_hr2_hr2s1_peg_transfer_$s.json \
        runs/loc_hr2/checkpoints/last/pretrained_model runs/loc_hr2s1/checkpoints/last/pretrained_model
done
python $E/ensemble_summary.py $P/val_jay_hr2_peg_transfer_60000-60119.json -- $P/val_ens_hr2_hr2s1_peg_transfer_600*.json
python $E/ensemble_summary.py $E/../grasp_window/val_jay_L2_peg_transfer.json $P/val_afdbe93424f4_peg_transfer_60040.json \
    -- $P/val_ens_hr2_hr2s1_peg_transfer_600*.json      # against afdbe93424f4 (60000-60039 and 60040-60119)
.venv/bin/surgbot policy join-locator --bound runs/jay_bound --locator-from runs/loc_hr2/checkpoints/last/pretrained_model \
    --locator-from runs/loc_hr2s1/checkpoints/last/pretrained_model --out runs/jay_ens2
TASKS=peg_transfer LANG_EPISODES=0 scripts/eval_default_policy.sh runs/jay_ens2 out/eval_ens2 &
TASKS="needle_pick reach" scripts/eval_default_policy.sh runs/jay_ens2 out/eval_ens2; wait   # -> docs/results/bundled_default/

# 22. a third locator seed, and the view's roll (not bundled): P as in step 21
.venv/bin/surgbot policy train-locator --bound runs/jay_bound --out runs/loc_hr2s2 --threads 2 --seed 2 --steps 12000 \
    --needle-layouts 1600 --peg-layouts 1200 --appearance strong --frame-size 240x320 --glimpse-px 32
L3="runs/loc_hr2/checkpoints/last/pretrained_model runs/loc_hr2s1/checkpoints/last/pretrained_model
    runs/loc_hr2s2/checkpoints/last/pretrained_model"
for s in 60000 60060; do
    .venv/bin/python $E/locator_ensemble.py runs/jay_bound peg_transfer $s 60 \
        $P/val_ens_hr2_hr2s1_hr2s2_peg_transfer_$s.json $L3
done
python $E/ensemble_summary.py $P/val_jay_hr2_peg_transfer_60000-60119.json -- $P/val_ens_hr2_hr2s1_hr2s2_peg_transfer_600*.json
.venv/bin/python $P/view_yaw.py $P/val_ens_hr2_hr2s1_hr2s2_peg_transfer_600*.json     # the yaw error against the view
R=$P/roll        # the roll read-out: probe member 0 (hr2) on training and validation layouts, fit, run
.venv/bin/python $R/probe.py runs/loc_hr2/checkpoints/last/pretrained_model out/roll_train.json 6000:6400
.venv/bin/python $R/probe.py runs/loc_hr2/checkpoints/last/pretrained_model out/roll_train_est.json 6000:6300
.venv/bin/python $R/probe.py runs/loc_hr2/checkpoints/last/pretrained_model out/roll_val.json 60000:60120
.venv/bin/python $R/fit_roll.py out/roll_train.json out/roll_train_est.json out/roll_val.json \
    $P/val_ens_hr2_hr2s1_hr2s2_peg_transfer_600*.json -- $R/roll_head_hr2.npz
for s in 60000 60060; do
    .venv/bin/python $R/ens_roll.py $R/roll_head_hr2.npz runs/jay_bound peg_transfer $s 60 \
        $R/val_ens3_roll_peg_transfer_$s.json $L3
done
.venv/bin/python $R/jitter.py out/roll_jitter.json runs/loc_hr2/checkpoints/last/pretrained_model \
    runs/loc_hr2s1/checkpoints/last/pretrained_model      # glimpse-centre jitter averaging, offline

# 23. the action head fine-tuned on located summaries (not bundled). runs/jyn/data: stage 1's recordings
# (commands.sh step 20); the two bundled locators' mean estimate per episode, then 3000 steps from the bound
H=$P/located_head
L2="runs/loc_hr2/checkpoints/last/pretrained_model runs/loc_hr2s1/checkpoints/last/pretrained_model"
for t in reach needle_pick peg_transfer; do .venv/bin/python $H/rows.py runs/jyn/data/$t out/located_rows/$t.npy $L2; done
.venv/bin/python $H/finetune.py runs/jay_bound/checkpoints/last/pretrained_model out/located_rows \
    --dataset runs/jyn/data/reach --dataset runs/jyn/data/needle_pick --dataset runs/jyn/data/peg_transfer \
    --weight 2 --weight 2 --weight 2 --out runs/located_ft3000 --steps 3000 --batch-size 32 --threads 2 --in-memory \
    --first-frames 8 --first-frames-weight 3 --cosine --cosine-steps 3000 --seed 1000 --image-size 80 88 \
    --crop 0 0.125 0.8333 0.6875 --goal-loss-weight 1 --shift-px 2 --goal-memory-max-jaw-rad 0.3 \
    --goal-target episode_end --scene-input --scene-noise-mm 0 --scene-yaw-noise-deg 0 --scene-anchored \
    --scene-anchored-yaw --jaw-absolute --save-freq 3000 --lr 1e-4
.venv/bin/surgbot policy join-locator --bound runs/located_ft3000 --locator-from runs/loc_hr2/checkpoints/last/pretrained_model \
    --locator-from runs/loc_hr2s1/checkpoints/last/pretrained_model --out runs/located_ft3000_ens2
for s in 60000 60060; do
    .venv/bin/surgbot policy eval --checkpoint runs/located_ft3000_ens2 --task peg_transfer --seed $s --episodes 60 \
        --threads 1 --json | tail -n 1 > $H/val_ft3000_ens2_peg_transfer_$s.json
done
