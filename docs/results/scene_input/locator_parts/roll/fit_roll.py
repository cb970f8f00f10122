"""The roll read-out: a ridge from the locator's head inputs (keypoints + pooled features, probe.py) to the
episode's camera roll about the scope's shaft, fitted on training layouts; the block yaw's error regressed on
its read-out (slope deg/deg, intercept deg); the yaw corrected that way on the validation probe.

    python fit_roll.py TRAIN.json TRAIN_EST.json VAL.json ENSEMBLE.json [ENSEMBLE.json ...] -- OUT.npz
"""
import json
import sys

import numpy as np

RIDGE = 10.0
SYMMETRY = 4          # the block's: the summary holds (cos, sin) of 4 x its yaw
cut = sys.argv.index("--")
train, train_est, val = (json.load(open(f)) for f in sys.argv[1:4])
ensembles = [json.load(open(f)) for f in sys.argv[4:cut]]


def features(rows, which=("kp", "pool")):
    return np.array([sum((r[k] for k in which), []) for r in rows])


def yaw_error(est, truth):
    turn = np.arctan2(est[:, 4], est[:, 3]) - np.arctan2(truth[:, 4], truth[:, 3])
    return np.degrees(np.angle(np.exp(1j * turn))) / SYMMETRY


def ridge(x, y):
    a = np.c_[x, np.ones(len(x))]
    return np.linalg.solve(a.T @ a + RIDGE * np.eye(a.shape[1]), a.T @ y)


roll_train = np.array([r["view"][2] for r in train])
roll_val = np.array([r["view"][2] for r in val])
for which in (("kp",), ("pool",), ("kp", "pool")):
    x = features(train, which)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    w = ridge((x - mu) / sd, roll_train)
    pred = np.c_[(features(val, which) - mu) / sd, np.ones(len(val))] @ w
    print(f"roll from {'+'.join(which)}: held-out rms error {np.sqrt(((pred - roll_val) ** 2).mean()):.2f} deg "
          f"(roll std {roll_val.std():.2f}), R2 {1 - ((pred - roll_val) ** 2).mean() / roll_val.var():.2f}")
x = features(train)
mu, sd = x.mean(0), x.std(0) + 1e-6
w = ridge((x - mu) / sd, roll_train)
read = lambda rows: np.c_[(features(rows) - mu) / sd, np.ones(len(rows))] @ w   # noqa: E731
est = np.array([r["est"] for r in train_est])
truth = np.array([r["truth"] for r in train_est])
c = np.polyfit(read(train_est), yaw_error(est, truth), 1)
print(f"training layouts: the block yaw's error = {c[0]:.2f} x the read-out roll {c[1]:+.2f} deg")
np.savez(sys.argv[cut + 1], w=w, mu=mu, sd=sd, c=c)
scenes = [s for d in ensembles for s in d["scene"]]
seeds = [s for d in ensembles for s in range(d["first_seed"], d["first_seed"] + d["episodes"])]
if [r["seed"] for r in val] != seeds:
    raise SystemExit("VAL.json and the ensemble runs must cover the same seeds in the same order")
mean = np.array([s["estimates"] for s in scenes]).mean(axis=1)
truth = np.array([s["truth"] for s in scenes])
for name, err in (("as located", yaw_error(mean, truth)),
                  ("corrected", yaw_error(mean, truth) - np.polyval(c, read(val)))):
    print(f"validation, members' mean {name}: |yaw error| median {np.median(np.abs(err)):.2f} deg, "
          f"p90 {np.percentile(np.abs(err), 90):.2f}, > 4 deg on {int((np.abs(err) > 4).sum())} of {len(err)}")
