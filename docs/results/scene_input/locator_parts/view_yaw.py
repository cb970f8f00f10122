"""How much of the located block yaw's error is the episode's endoscope view: locator_ensemble.py's JSONs
(every member's first-frame estimate and the truth), each layout's view (pan, tilt, roll about the shaft,
insertion: sim/tasks/base.py) from its seed, the signed yaw error of the members' mean regressed on them.

    python docs/results/scene_input/locator_parts/view_yaw.py ENSEMBLE.json [ENSEMBLE.json ...]
"""
import json
import sys

import numpy as np

from surgbot.sim.tasks import get_task

SYMMETRY = 4          # the summary holds (cos, sin) of 4 x the block's yaw

runs = [json.load(open(f)) for f in sys.argv[1:]]
task = get_task(runs[0]["task"])
scenes, seeds, success = [], [], []
for d in runs:
    scenes += d["scene"]
    seeds += range(d["first_seed"], d["first_seed"] + d["episodes"])
    success += d["success"]
est = np.array([s["estimates"] for s in scenes])          # [N, M, 8]
tru = np.array([s["truth"] for s in scenes])              # [N, 8]
ok = np.array(success)
turn = np.arctan2(est[..., 4], est[..., 3]) - np.arctan2(tru[:, None, 4], tru[:, None, 3])
yaw = np.degrees(np.angle(np.exp(1j * turn))) / SYMMETRY  # [N, M] signed, deg
mean = yaw.mean(axis=1)
views = np.array([task.layout(s, np.zeros(2)).view for s in seeds])
if yaw.shape[1] > 1:
    c = np.corrcoef(yaw.T)
    print(f"members' signed yaw errors correlate {c[np.triu_indices_from(c, 1)].min():.2f}-"
          f"{c[np.triu_indices_from(c, 1)].max():.2f}")
for i, name in enumerate(("pan", "tilt", "roll", "insertion")):
    print(f"{name}: correlation with the mean's yaw error {np.corrcoef(views[:, i], mean)[0, 1]:+.2f}")
design = np.c_[views, np.ones(len(views))]
coef = np.linalg.lstsq(design, mean, rcond=None)[0]
rest = mean - design @ coef
print(f"yaw error {mean.std():.2f} deg rms about its mean; {rest.std():.2f} deg once the view's linear part is "
      f"taken out (roll: {coef[2]:+.2f} deg per deg of roll)")
big = np.abs(mean) > 4.0
print(f"|yaw error| > 4 deg: {big.sum()} of {len(mean)} layouts, {ok[big].sum()} transferred "
      f"(the others: {ok[~big].sum()} of {(~big).sum()})")
