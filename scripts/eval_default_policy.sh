#!/usr/bin/env bash
# Evaluates a VLA checkpoint the way the bundled one is reported (policies/vla/README.md):
# EPISODES seeded closed-loop episodes per task with `surgbot policy eval` (seeds from 100000,
# disjoint from every training seed), one JSON per task, an MP4 per reach episode, and the
# language check: the same reach layouts told "red" and then "blue" (`--target`).
# Then one summary JSON and a PNG of the success rates with their Wilson 95 % intervals.
#
#   scripts/eval_default_policy.sh [CHECKPOINT] [OUT_DIR]     (default: default out/eval_default)
#
# One torch thread, one process at a time (the shared 2-core machine); EPISODES, LANG_EPISODES,
# SEED and TASKS can be overridden through the environment (LANG_EPISODES=0 skips the language check).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
CKPT=${1:-default}
OUT=${2:-out/eval_default}
EPISODES=${EPISODES:-50}
LANG_EPISODES=${LANG_EPISODES:-25}
SEED=${SEED:-100000}
TASKS=${TASKS:-reach needle_pick peg_transfer}
export MUJOCO_GL=${MUJOCO_GL:-osmesa} HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"

evaluate() {  # name extra-args...
    local name=$1; shift
    if [ -s "$OUT/$name.json" ]; then echo "== $name: $OUT/$name.json exists, kept"; return; fi
    echo "== $name ($(date -u +%T))"
    "$PY" -m surgbot.cli policy eval --checkpoint "$CKPT" --seed "$SEED" --threads 1 --json "$@" \
        > "$OUT/$name.json.partial"
    tail -n 1 "$OUT/$name.json.partial" > "$OUT/$name.json" && rm -f "$OUT/$name.json.partial"
}

for task in $TASKS; do
    video=()
    [ "$task" = reach ] && video=(--video "$OUT/videos")
    evaluate "$task" --task "$task" --episodes "$EPISODES" "${video[@]}"
done
if [ "$LANG_EPISODES" -gt 0 ]; then   # LANG_EPISODES=0: no language check
    evaluate language_red --task reach --episodes "$LANG_EPISODES" --target red
    evaluate language_blue --task reach --episodes "$LANG_EPISODES" --target blue
fi

"$PY" - "$OUT" <<'EOF'
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

out = Path(sys.argv[1])
runs = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem != "summary"}
rows = {k: {"successes": v["successes"], "episodes": v["episodes"], "success_rate": v["success_rate"],
            "wilson95": v["wilson95"], "seed": v["seed"], "target": v.get("target"),
            "checkpoint_id": v["checkpoint_id"], "wall_s": round(v["wall_s"], 1),
            "failures": {f: sum(r["failure"] == f for r in v["results"])
                         for f in sorted({r["failure"] for r in v["results"] if r["failure"]})}}
        for k, v in runs.items()}
if "language_red" in runs and "language_blue" in runs:
    # per layout: told red and told blue, did it touch the one it was told both times
    red = {r["seed"]: r["success"] for r in runs["language_red"]["results"]}
    blue = {r["seed"]: r["success"] for r in runs["language_blue"]["results"]}
    both = [s for s in red if s in blue]
    rows["language_pairs"] = {"layouts": len(both), "both_followed": sum(red[s] and blue[s] for s in both),
                              "neither": sum(not red[s] and not blue[s] for s in both)}
(out / "summary.json").write_text(json.dumps(rows, indent=1))
names = [k for k in rows if "wilson95" in rows[k]]
fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.5), dpi=100)
rates = [rows[k]["success_rate"] for k in names]
# clipped at 0: at 50/50 the rounded upper bound can sit a hair under the rate (matplotlib refuses < 0)
err = [[max(0.0, r - rows[k]["wilson95"][0]) for k, r in zip(names, rates)],
       [max(0.0, rows[k]["wilson95"][1] - r) for k, r in zip(names, rates)]]
ax.bar(names, rates, yerr=err, capsize=4, color="#4a7fb5")
for i, k in enumerate(names):
    ax.text(i, rates[i] + 0.02, f"{rows[k]['successes']}/{rows[k]['episodes']}", ha="center", fontsize=8)
ax.set_ylim(0, 1.05)
ax.set_ylabel("success (Wilson 95 %)")
ax.set_title(f"checkpoint {next(iter(rows.values()))['checkpoint_id']}, seeds from {runs[names[0]]['seed']}")
plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
fig.tight_layout()
fig.savefig(out / "success.png")
print(json.dumps(rows))
EOF
