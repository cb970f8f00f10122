"""exp.py NAME STEPS [key=value ...]: train an IDM on train_reach+train_needle_pick (15 each), evaluate on real_*."""
import json
import os
import sys
import time
from pathlib import Path

from surgbot.bench.idm import evaluate
from surgbot.policies.idm.configuration_idm import IDMConfig
from surgbot.policies.idm.train import train

work = Path(os.environ.get("W", "out/idm_tried"))
name, steps = sys.argv[1], int(sys.argv[2])
kw = {}
for a in sys.argv[3:]:
    k, v = a.split("=")
    kw[k] = json.loads(v)
ckpt = work / name
tasks = ("reach", "needle_pick")
if not (ckpt / "metrics.json").is_file():
    t0 = time.time()
    s = train([work / f"train_{t}" for t in tasks], ckpt, IDMConfig(steps=steps, **kw), per_dataset=15, progress=False)
    print("trained", time.time() - t0, s["loss_first"], s["loss_last"], flush=True)
m = json.loads((ckpt / "metrics.json").read_text())
for key in ("val_chunk_with_state", "val_chunk_without_state", "val_pose_head"):
    print(key, {a: round(b["median"], 2) for a, b in m[key].items()})
res = {}
for t in tasks:
    ev = evaluate(ckpt, work / f"real_{t}", 0.5)
    res[t] = ev
    print(t, "action", {a: round(b["median"], 2) for a, b in ev["action_all"].items()}, flush=True)
(ckpt / "real_eval.json").write_text(json.dumps(res, indent=1))
