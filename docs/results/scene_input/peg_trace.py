"""Where peg_transfer fails: per episode, where the jaws first hold the block (the jaw tip's offset in the
block's frame, mm), the highest lift, when and where the hold is lost, when the jaws open after it, and
the final distance from the block to its target.

    MUJOCO_GL=osmesa .venv/bin/python docs/results/scene_input/peg_trace.py CHECKPOINT FIRST_SEED N
"""

import sys

import numpy as np

from surgbot.policies.evaluation import harness


def main(checkpoint: str, first_seed: int, n: int) -> None:
    policy = harness.SurgVLAChunkPolicy(checkpoint)
    env = harness.make_env("peg_transfer", policy)
    u = env.unwrapped
    step = env.step
    for seed in range(first_seed, first_seed + n):
        log = []

        def traced(action, log=log):
            out = step(action)
            d = u.data
            b = d.body("block_transfer").xpos.copy()
            R = d.body("block_transfer").xmat.reshape(3, 3)
            target = d.body(f"target_{u.layout.target}").xpos
            block = u.geo.body_geoms["block_transfer"]
            log.append({"t": u.elapsed_s, "off": (R.T @ (u.geo.jaw_tip(d) - b))[:2] * 1e3, "jaw": float(action[9]),
                        "h": (b[2] - u.geo.pad_top) * 1e3, "dist": float(np.linalg.norm(b[:2] - target[:2])) * 1e3,
                        "held": all(u.geo.touching(d, block, [f]) for f in u.geo.fingers)})
            return out
        env.step = traced
        res = harness.run_episode(env, policy, seed)
        first = next((r for r in log if r["held"]), None)
        lost = next((r for k, r in enumerate(log) if k and log[k - 1]["held"] and not r["held"]), None)
        closed = next((r for r in log if first and r["t"] >= first["t"] and r["jaw"] < 0.3), None)
        opened = next((r for r in log if closed and r["t"] > closed["t"] and r["jaw"] > 0.5), None)   # a release
        parts = [str(seed), str(res.success),
                 f"first hold t={first['t']:.1f} off(block frame)={np.round(first['off'], 1)}" if first
                 else "never held", f"max h {max(r['h'] for r in log):.1f}",
                 f"lost t={lost['t']:.1f} h={lost['h']:.1f} dist={lost['dist']:.1f} jaw={lost['jaw']:.2f}" if lost
                 else "not lost",
                 f"opened t={opened['t']:.1f} dist={opened['dist']:.1f}" if opened else "never opened",
                 f"final dist {log[-1]['dist']:.1f}"]
        print(" ".join(parts), flush=True)
    env.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
