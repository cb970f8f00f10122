#!/usr/bin/env bash
# The 15-episode IDM of docs/results.md "IDM" trained 6000 steps instead of 1500 (session 8 of wave 2).
# Same recordings, clips and seeds as the bench's study (bench/idm.py: training seeds 1000.., held-out
# "real" clips 100000.., "sim" clips 29000..); reach and needle_pick, 8 clips per set.
# From the repository root; W keeps the recordings (reused when present, several minutes each to make).
set -euo pipefail
W=${W:-out/idm_6000_steps}
.venv/bin/python -m surgbot.bench.idm --workdir "$W" --tasks reach,needle_pick --sizes 15 --steps 6000 --eval-clips 8
cp "$W/idm_results.json" docs/results/tried_idm_6000_steps/
