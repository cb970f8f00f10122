"""locator_ensemble.py's JSONs against a `policy eval --json` run of one member on the same layouts:
successes, discordant layouts and McNemar's exact p; each member's and the mean's first-frame errors.

    python docs/results/scene_input/locator_parts/ensemble_summary.py SINGLE.json [SINGLE.json ...] \
        -- ENSEMBLE.json [ENSEMBLE.json ...]
"""
import json
import math
import sys

import numpy as np

cut = sys.argv.index("--")
h = {}
for f in sys.argv[1:cut]:
    d = json.load(open(f))
    for part in d.get("parts", [d]):             # commands.sh step 20's merged halves, or one run
        for r in part["results"]:
            h[r["seed"]] = r["success"]
runs = [json.load(open(f)) for f in sys.argv[cut + 1:]]
e, scenes = {}, []
for d in runs:
    for i, ok in enumerate(d["success"]):
        e[d["first_seed"] + i] = ok
    scenes += d["scene"]
seeds = sorted(e)
a = sum(e[s] and not h[s] for s in seeds)
b = sum(h[s] and not e[s] for s in seeds)
n = a + b
p = min(1.0, 2 * sum(math.comb(n, k) for k in range(0, min(a, b) + 1)) / 2 ** n) if n else 1.0
print(f"{len(seeds)} layouts: ensemble {sum(e[s] for s in seeds)}, single {sum(h[s] for s in seeds)}; "
      f"discordant {a} / {b}, exact McNemar p = {p:.3f}")
# first-frame errors: grasp point (mm), the block's yaw (deg; the summary holds cos/sin of 4 x yaw), place (mm)
est = np.array([s["estimates"] for s in scenes])      # [N, M, 8]
tru = np.array([s["truth"] for s in scenes])          # [N, 8]


def err(x):
    g = np.linalg.norm(x[:, 0:3] - tru[:, 0:3], axis=1) * 1e3
    p_ = np.linalg.norm(x[:, 5:8] - tru[:, 5:8], axis=1) * 1e3
    turn = np.arctan2(x[:, 4], x[:, 3]) - np.arctan2(tru[:, 4], tru[:, 3])
    ang = np.degrees(np.abs(np.angle(np.exp(1j * turn)))) / 4
    return g, ang, p_


names = [f"member {i}" for i in range(est.shape[1])] + ["mean"]
for name, x in zip(names, [est[:, i] for i in range(est.shape[1])] + [est.mean(axis=1)], strict=True):
    g, ang, p_ = err(x)
    print(f"{name}: grasp {np.median(g):.2f} mm (p90 {np.percentile(g, 90):.2f}), yaw {np.median(ang):.2f} deg "
          f"(p90 {np.percentile(ang, 90):.2f}), place {np.median(p_):.2f} mm")
