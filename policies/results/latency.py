"""Inference latency of one checkpoint on a real observation: p50/p99 of `infer`, 1 torch thread.

    python -m surgbot.policies.results.latency --checkpoint CKPT --task T [--calls 30] --json

The observation is the first frame of the task's environment at a seed outside
training and evaluation (99999); the policy is loaded the way the evaluation
loads it (the harness's `load_chunk_policy` when installed, else the
interim loader).  Last stdout line: `{"infer_ms_p50", "infer_ms_p99", "calls", "threads"}`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time

from surgbot.policies.results.stats import percentile

OBS_SEED = 99_999
WARMUP_CALLS = 3


def load_policy(spec: str):
    try:
        harness = importlib.import_module("surgbot.policies.evaluation.harness")
    except ImportError:
        harness = None
    if harness is not None and hasattr(harness, "load_chunk_policy"):
        return harness.load_chunk_policy(spec)
    from surgbot.policies.results.interim_eval import load_policy as interim
    return interim(spec)


def measure(spec: str, task: str, calls: int) -> dict:
    import gymnasium as gym

    import surgbot.sim.envs  # noqa: F401 - registers the environments
    from surgbot.sim.envs import ENV_IDS
    policy = load_policy(spec)
    h, w = policy.metadata.get("image_size", (128, 128))
    env = gym.make(ENV_IDS[task], image_size=(int(h), int(w)))
    obs, info = env.reset(seed=OBS_SEED)
    env.close()
    ms = []
    for i in range(WARMUP_CALLS + calls):
        policy.reset()
        t0 = time.perf_counter()
        policy.infer(obs["image"], obs["state"], info["instruction"])
        if i >= WARMUP_CALLS:
            ms.append((time.perf_counter() - t0) * 1e3)
    return {"infer_ms_p50": percentile(ms, 50), "infer_ms_p99": percentile(ms, 99), "calls": calls,
            "threads": 1, "image_size": [int(h), int(w)], "model": policy.metadata.get("model")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    torch.set_num_threads(1)
    out = measure(args.checkpoint, args.task, max(1, args.calls))
    print(json.dumps(out) if args.json else f"p50 {out['infer_ms_p50']} ms, p99 {out['infer_ms_p99']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
