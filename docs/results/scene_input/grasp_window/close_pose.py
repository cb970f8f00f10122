"""How a checkpoint's jaws meet peg_transfer's block: per episode, when the commanded jaw first falls below
0.3 rad after being above it, the jaw tip's offset from the block's centre in the block's frame (mm; z up),
how far the jaws are turned off the block's faces (deg, -45..45), the block's tilt (deg), then the block's
highest lift (mm) and success.  `expert` instead of a checkpoint: the scripted expert.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/grasp_window/close_pose.py CKPT|expert FIRST_SEED N
"""

import math
import sys

import gymnasium as gym
import numpy as np

from surgbot.policies.evaluation import harness
from surgbot.policies.vla.configuration_surgvla import SurgVLAConfig
from surgbot.sim.envs import ENV_IDS, experts

CLOSING_JAW_RAD = SurgVLAConfig.grasp_jaw_rad
BLOCK, JAW = "block_transfer", "PSM1_jaw"
FACES_DEG = 90.0                                # the block's faces repeat every quarter turn


def yaw_deg(R: np.ndarray) -> float:
    return math.degrees(math.atan2(R[1, 0], R[0, 0]))


def trace(env, run) -> tuple[bool, list]:
    """Run one episode (`run()`, returning a harness or expert result) on `env` with every step logged:
    (commanded jaw, jaw tip in the block's frame (mm), turn off the faces (deg), tilt (deg), lift (mm))."""
    u = env.unwrapped
    step = env.step
    log = []

    def traced(action):
        out = step(action)
        d = u.data
        b, R = d.body(BLOCK).xpos.copy(), d.body(BLOCK).xmat.reshape(3, 3)
        off = R.T @ (u.geo.jaw_tip(d) - b) * 1e3
        turned = (yaw_deg(d.body(JAW).xmat.reshape(3, 3)) - yaw_deg(R) + FACES_DEG / 2) % FACES_DEG - FACES_DEG / 2
        tilt = math.degrees(math.acos(float(np.clip(R[2, 2], -1.0, 1.0))))
        log.append((float(action[9]), off, turned, tilt, (b[2] - u.geo.pad_top) * 1e3))
        return out

    env.step = traced
    try:
        res = run()
    finally:
        env.step = step
    return bool(res.success if hasattr(res, "success") else res["success"]), log


def describe(log: list) -> str:
    """The pose where the commanded jaw first closes (module docstring), and the highest lift."""
    k = next((i for i in range(1, len(log)) if log[i][0] < CLOSING_JAW_RAD <= log[i - 1][0]), None)
    if k is None:
        return "no close"
    _, off, turned, tilt, _ = log[k]
    return (f"off {off[0]:5.1f} {off[1]:5.1f} {off[2]:5.1f} turned {turned:6.1f} "
            f"tilt {tilt:5.1f} lift {max(r[4] for r in log):5.1f}")


def main(checkpoint: str, seeds: range) -> None:
    policy = None if checkpoint == "expert" else harness.SurgVLAChunkPolicy(checkpoint)
    env = (harness.make_env("peg_transfer", policy) if policy is not None
           else gym.make(ENV_IDS["peg_transfer"], render_mode="rgb_array", image_size=(64, 64)))
    for seed in seeds:
        ok, log = trace(env, (lambda s=seed: harness.run_episode(env, policy, s)) if policy is not None
                        else (lambda s=seed: experts.run_episode(env, s)))
        print(seed, int(ok), describe(log), flush=True)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], range(int(sys.argv[2]), int(sys.argv[2]) + int(sys.argv[3])))
