"""Endoscope render time vs image size, for whatever GL backend MUJOCO_GL names.

Needs only mujoco + numpy (no ROS, no DDS), so it also runs on a lent GPU
machine whose Python lacks the rest of the stack:

    MUJOCO_GL=egl python -m bench.render_sizes --json
"""

from __future__ import annotations

import argparse
import json
import os
import time

SIZES = ((320, 240), (640, 480), (1280, 720))


def measure(n: int = 100) -> list[dict]:
    # imported here so that `--help` works on a machine whose Python lacks mujoco
    import mujoco
    import numpy as np

    from surgbot.sim.scene import build_model

    model = build_model("box_trainer", 0)
    data = mujoco.MjData(model)
    key = model.key("stand").id
    mujoco.mj_resetDataKeyframe(model, data, key)
    mujoco.mj_forward(model, data)
    figures = []
    for w, h in SIZES:
        model.vis.global_.offwidth, model.vis.global_.offheight = max(w, 640), max(h, 480)
        renderer = mujoco.Renderer(model, h, w)
        for _ in range(5):
            renderer.update_scene(data, camera="endoscope_camera")
            renderer.render()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            renderer.update_scene(data, camera="endoscope_camera")
            img = renderer.render()
            times.append((time.perf_counter() - t0) * 1e3)
        renderer.close()
        a = np.array(times)
        figures.append({"name": f"render.{w}x{h}", "unit": "ms", "median": float(np.median(a)),
                        "p99": float(np.percentile(a, 99)), "n": n, "std_pixels": float(img.std()),
                        "backend": os.environ.get("MUJOCO_GL", "")})
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-n", type=int, default=100)
    args = ap.parse_args()
    figs = measure(args.n)
    for f in figs:
        print(f"{f['name']:>16}  {f['median']:7.2f} ms  p99 {f['p99']:7.2f} ms  ({f['backend']})")
    if args.json:
        print(json.dumps({"figures": figs}))


if __name__ == "__main__":
    main()
