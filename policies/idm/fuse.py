"""Overlapping IDM windows -> one pose trajectory per clip, and a per-frame confidence.

Unknowns: x_0 .. x_{T-1}, the pose at each frame (x_0 = the robot state at
the first frame, x_t = the pose commanded at t-1; `data.py`).  Observations:
* every window t (frames t and t+k): x_{t+1+i} - x_t = offset_t[i], i < k,
  with the held-out error sigma_delta[i] of that offset;
* every frame: x_t + b = pose head's estimate, error sigma_state *
  pose_inflation, where b is one unknown bias per clip (the pose head's error
  is largely one offset per view: measured 1-10 mm mean, 1-4 mm spread per
  clip); a weak prior b ~ 0 (sigma_state) fixes it when no state is given;
* the first state when the clip's NAME.json gives it (1000 x the pose weight).
Weighted least squares, one sparse solve per pose component.  Then
state_t = x_t and action_t = x_{t+1} (the next commanded pose): consistent
by construction; the last frame gets no action and is not written.

Confidence of action t (= x_{t+1}): how well the windows that predict
x_{t+1} agree with the fused answer, as the RMS of their residuals in units
of each offset's held-out sigma: c = exp(-0.5 max(0, rms - 1)^2) (1 when
they agree to within their usual error, 0.61 at 2 sigma, 0.14 at 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from surgbot.geometry import matrix_to_rot6d, rot6d_to_matrix

ANCHOR_WEIGHT = 1e3
DEFAULT_POSE_INFLATION = 4.0      # 1-4 measured alike (bench: reach/needle_pick, 4 clips each)


@dataclass
class Fused:
    poses: np.ndarray          # [T, D] x_t
    confidence: np.ndarray     # [T-1] of action t = x_{t+1}
    rms: np.ndarray            # [T-1] RMS normalised window residual


def fuse(pose_est: np.ndarray, offsets: np.ndarray, sigma_state: np.ndarray, sigma_delta: np.ndarray,
         first_state: np.ndarray | None, pose_inflation: float = DEFAULT_POSE_INFLATION) -> Fused:
    """pose_est [T, D]; offsets [W, k, D] for windows t = 0..W-1 (W = T - k); see module doc.
    Unknowns: the T poses and the bias b (column T)."""
    T, D = pose_est.shape
    W, k, _ = offsets.shape
    if W != T - k or W < 1:
        raise ValueError(f"{W} windows of k = {k} do not fit {T} frames")
    rows, cols, vals, ids = [], [], [], []
    r = 0
    for t in range(W):                     # relative rows: x_{t+1+i} - x_t
        for i in range(k):
            rows += [r, r]
            cols += [t + 1 + i, t]
            vals += [1.0, -1.0]
            ids.append((t, i))
            r += 1
    n_rel = r
    for t in range(T):                     # pose rows: x_t + b = pose estimate (b: the clip's view bias)
        rows += [r, r]
        cols += [t, T]
        vals += [1.0, 1.0]
        r += 1
    rows.append(r)                         # prior: the bias is of the order of the pose head's error
    cols.append(T)
    vals.append(1.0)
    r += 1
    if first_state is not None:
        rows.append(r)
        cols.append(0)
        vals.append(1.0)
        r += 1
    A = sp.csr_matrix((vals, (rows, cols)), shape=(r, T + 1))
    poses = np.zeros((T, D))
    rel_i = np.array([i for _, i in ids])
    for d in range(D):
        w = np.empty(r)
        w[:n_rel] = 1.0 / sigma_delta[rel_i, d]
        w[n_rel:n_rel + T] = 1.0 / (sigma_state[d] * pose_inflation)
        w[n_rel + T] = 1.0 / sigma_state[d]
        b = np.zeros(r)
        b[:n_rel] = offsets[:, :, d].reshape(-1)
        b[n_rel:n_rel + T] = pose_est[:, d]
        if first_state is not None:
            w[-1] = ANCHOR_WEIGHT / sigma_state[d]
            b[-1] = first_state[d]
        Aw = sp.diags(w) @ A
        poses[:, d] = spsolve((Aw.T @ Aw).tocsc(), Aw.T @ (w * b))[:T]
    # agreement: residual of every window's offset, normalised, per predicted frame
    resid = np.zeros((W, k, D))
    for t in range(W):
        resid[t] = (poses[t + 1:t + 1 + k] - poses[t]) - offsets[t]
    z2 = (resid / sigma_delta[None]) ** 2
    acc = np.zeros(T)
    cnt = np.zeros(T)
    for t in range(W):
        acc[t + 1:t + 1 + k] += z2[t].mean(axis=1)
        cnt[t + 1:t + 1 + k] += 1
    rms = np.sqrt(acc[1:] / np.maximum(cnt[1:], 1))
    conf = np.exp(-0.5 * np.maximum(0.0, rms - 1.0) ** 2)
    return Fused(poses=poses.astype(np.float32), confidence=conf.astype(np.float32), rms=rms.astype(np.float32))


def orthonormalise(poses: np.ndarray) -> np.ndarray:
    """Each row's 6D rotation replaced by the nearest proper one (Gram-Schmidt), jaw and position kept."""
    out = np.asarray(poses, np.float64).copy()
    for row in out:
        try:
            row[3:9] = matrix_to_rot6d(rot6d_to_matrix(row[3:9]))
        except ValueError:                 # degenerate (parallel columns): leave; confidence is low there
            pass
    return out.astype(np.float32)


def segments(keep: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """[start, end) runs of True at least `min_len` long."""
    runs, start = [], None
    for i, ok in enumerate(list(keep) + [False]):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            if i - start >= min_len:
                runs.append((start, i))
            start = None
    return runs
