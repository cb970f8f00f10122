"""TEMPORARY closed-loop evaluation, used only while `surgbot policy eval` is not installed.

The results page is meant to be filled with the evaluation harness
(`surgbot.policies.evaluation.harness`, `surgbot policy eval`); until it is
merged, `surgbot results` evaluates with this minimal loop over the Gymnasium
environment and every cell JSON it produces says `"evaluator": "interim"`.
Rule: reset to the seed, ask the policy for a chunk, play its first
`n_action_steps` actions (half the chunk when the policy does not say), ask
again, until the environment terminates (success, failure, fault) or
truncates at the task's horizon.  Last stdout line: one JSON object with
`success_rate`, `episodes`, `task`, `successes`, per-episode outcomes and
the inference milliseconds.

    python -m surgbot.policies.results.interim_eval --checkpoint CKPT --task T --episodes 50 --seed 100000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from surgbot.errors import CliError
from surgbot.policies.results.stats import percentile, wilson_interval


class VLAChunkPolicy:
    """Our VLA's runtime (policies/vla/runtime.py) seen through the ChunkPolicy protocol."""

    def __init__(self, spec: str):
        from surgbot.policies.vla.runtime import PolicyRuntime
        self.runtime = PolicyRuntime(spec)
        self.metadata = dict(self.runtime.metadata())
        self.metadata["n_action_steps"] = int(self.runtime.config.n_action_steps)
        self.image_shape = self.runtime.image_shape

    def reset(self) -> None:
        self.runtime.reset()

    def infer(self, image: np.ndarray, state: np.ndarray, instruction: str) -> np.ndarray:
        if image.shape != self.image_shape:     # the runtime takes its training size only
            import cv2
            image = cv2.resize(image, (self.image_shape[1], self.image_shape[0]), interpolation=cv2.INTER_AREA)
        return self.runtime.infer(image, state, instruction)[0]


def checkpoint_type(spec: str) -> str:
    from surgbot.policies.vla.runtime import resolve_checkpoint
    path = resolve_checkpoint(spec)
    return json.loads((path / "config.json").read_text()).get("type", "?")


def load_policy(spec: str):
    """act/diffusion -> the LeRobot adapter; surgvla (or `default`) -> our runtime."""
    from surgbot.policies.vla.runtime import CheckpointError
    try:
        kind = checkpoint_type(spec)
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    if kind in ("act", "diffusion"):
        from surgbot.policies.evaluation.lerobot_adapter import LeRobotChunkPolicy
        return LeRobotChunkPolicy(spec)
    if kind == "surgvla":
        return VLAChunkPolicy(spec)
    raise CliError(f"{spec}: policy type {kind!r} has no evaluation adapter")


def run_episode(env, policy, seed: int, infer_ms: list[float]) -> dict:
    obs, info = env.reset(seed=seed)
    policy.reset()
    n_exec = int(policy.metadata.get("n_action_steps") or 0)
    steps = 0
    while True:
        t0 = time.perf_counter()
        chunk = policy.infer(obs["image"], obs["state"], info["instruction"])
        infer_ms.append((time.perf_counter() - t0) * 1e3)
        k = n_exec if 0 < n_exec <= len(chunk) else max(1, len(chunk) // 2)
        for action in chunk[:k]:
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
            if terminated or truncated:
                return {"seed": seed, "success": bool(info["success"]), "steps": steps,
                        "failure": info["failure"], "elapsed_s": round(float(info["elapsed_s"]), 3),
                        "rejected": int(info["rejected"])}


def evaluate(checkpoint: str, task: str, episodes: int, seed: int, progress: bool = True) -> dict:
    import gymnasium as gym

    import surgbot.sim.envs  # noqa: F401 - registers the environments
    from surgbot.sim.envs import ENV_IDS
    if task not in ENV_IDS:
        raise CliError(f"unknown task {task!r} (choose from {', '.join(ENV_IDS)})")
    if episodes <= 0:
        raise CliError(f"--episodes must be positive, got {episodes}")
    policy = load_policy(checkpoint)
    h, w = policy.metadata.get("image_size", (128, 128))
    env = gym.make(ENV_IDS[task], image_size=(int(h), int(w)))
    infer_ms: list[float] = []
    results = []
    t0 = time.perf_counter()
    try:
        for i in range(episodes):
            results.append(run_episode(env, policy, seed + i, infer_ms))
            if progress:
                ok = sum(r["success"] for r in results)
                print(f"[interim_eval] {task} episode {i + 1}/{episodes}: successes {ok}, "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        env.close()
    successes = sum(r["success"] for r in results)
    lo, hi = wilson_interval(successes, episodes)
    return {"evaluator": "interim", "task": task, "checkpoint": checkpoint,
            "checkpoint_id": policy.metadata.get("checkpoint_id"), "model": policy.metadata.get("model"),
            "episodes": episodes, "seeds": [seed, seed + episodes - 1], "successes": successes,
            "success_rate": successes / episodes, "wilson95": [lo, hi],
            "infer_ms_p50": percentile(infer_ms, 50), "infer_ms_p99": percentile(infer_ms, 99),
            "wall_s": round(time.perf_counter() - t0, 1), "per_episode": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--task", required=True)
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="last stdout line is the result JSON")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    torch.set_num_threads(max(1, args.threads))
    try:
        out = evaluate(args.checkpoint, args.task, args.episodes, args.seed)
    except CliError as exc:
        print(f"interim_eval: error: {exc}", file=sys.stderr)
        return 2
    line = json.dumps(out)
    print(line if args.json else f"{out['task']}: {out['successes']}/{out['episodes']} "
          f"[{out['wilson95'][0]:.2f}, {out['wilson95'][1]:.2f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
