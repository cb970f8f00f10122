"""A checkpoint under other chunk-execution settings (request fraction, blend weight of overlapping chunks).

    MUJOCO_GL=osmesa .venv/bin/python exec_exp.py CHECKPOINT TASK FIRST_SEED N "0.5,0.7;0.125,0.7"
"""
import json
import sys

from surgbot.control.policy_exec import PolicyExecConfig
from surgbot.policies.evaluation import harness

ckpt, task, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
policy = harness.SurgVLAChunkPolicy(ckpt)
for spec in sys.argv[5].split(";"):
    rf, bw = (float(v) for v in spec.split(","))
    cfg = PolicyExecConfig(request_fraction=rf, blend_new_weight=bw)
    s = harness.evaluate(policy, task, n, seed, exec_config=cfg)
    print(json.dumps({"request_fraction": rf, "blend": bw, "successes": s["successes"], "episodes": n,
                      "fails": [r["seed"] for r in s["results"] if not r["success"]]}), flush=True)
