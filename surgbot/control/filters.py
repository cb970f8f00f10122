"""Command conditioning for the scope: tremor suppression and speed limiting.

The tremor filter is a cascade of second-order notch sections spread over
the physiological tremor band (6-12 Hz) plus a second-order low-pass well
above it.  Notches instead of one low-pass because a low-pass that removes
8 Hz delays a 0.5 Hz deliberate motion by ~60-90 ms, while notches centred
in the band delay it by ~30 ms (group delay near DC of a notch is
1/(Q*w0)).  Sections are direct-form II transposed biquads over a vector
signal, preallocated, so one update costs a few small numpy operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Section = tuple[np.ndarray, np.ndarray]      # (b, a) of one biquad


def notch_biquad(f0: float, q: float, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of a unity-DC-gain notch at f0 Hz with quality q (f0/bandwidth)."""
    w0 = 2 * math.pi * f0 / fs
    alpha = math.sin(w0) / (2 * q)
    c = math.cos(w0)
    b = np.array([1.0, -2 * c, 1.0])
    a = np.array([1 + alpha, -2 * c, 1 - alpha])
    return b / a[0], a / a[0]


def lowpass_biquad(fc: float, fs: float, q: float = 1 / math.sqrt(2)) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of a second-order Butterworth low-pass (bilinear transform)."""
    w0 = 2 * math.pi * fc / fs
    alpha = math.sin(w0) / (2 * q)
    c = math.cos(w0)
    b = np.array([(1 - c) / 2, 1 - c, (1 - c) / 2])
    a = np.array([1 + alpha, -2 * c, 1 - alpha])
    return b / a[0], a / a[0]


def frequency_response(sections: Sequence[Section], f: np.ndarray, fs: float) -> np.ndarray:
    """Complex response of a biquad cascade at frequencies f (Hz)."""
    z = np.exp(-1j * 2 * np.pi * np.asarray(f, float) / fs)
    h = np.ones_like(z)
    for b, a in sections:
        h *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    return h


def cascade_state_space(sections: Sequence[Section]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(A, B, C, D) of a biquad cascade (DF-II transposed states, 2 per section)."""
    n = 2 * len(sections)
    A = np.zeros((n, n))
    B = np.zeros(n)
    C = np.zeros(n)
    D = 1.0
    # output of section k: y_k = b0 u_k + z0_k, with u_k = y_{k-1}; express u_k = Cu x + Du u
    Cu, Du = np.zeros(n), 1.0
    for k, (b, a) in enumerate(sections):
        i = 2 * k
        Cy = b[0] * Cu
        Cy[i] += 1.0
        Dy = b[0] * Du
        # z0' = b1 u - a1 y + z1 ;  z1' = b2 u - a2 y
        A[i] = b[1] * Cu - a[1] * Cy
        A[i, i + 1] += 1.0
        B[i] = b[1] * Du - a[1] * Dy
        A[i + 1] = b[2] * Cu - a[2] * Cy
        B[i + 1] = b[2] * Du - a[2] * Dy
        Cu, Du = Cy, Dy
    C, D = Cu, Du
    return A, B, C, D


class BiquadCascade:
    """Vector signal through a fixed cascade of biquads, as one state-space update.

    The state and the input share one buffer `[x; u]`, so a sample is a
    single product with `[[C, D], [A, B]]` (output row first, next state
    below) instead of a Python loop over sections.
    """

    def __init__(self, sections: Sequence[Section], dim: int):
        self.sections = [(np.asarray(b, float), np.asarray(a, float)) for b, a in sections]
        self.dim = dim
        self.A, self.B, self.C, self.D = cascade_state_space(self.sections)
        n = len(self.A)
        self._n = n
        self._M = np.zeros((n + 1, n + 1))
        self._M[0, :n] = self.C
        self._M[0, n] = self.D
        self._M[1:, :n] = self.A
        self._M[1:, n] = self.B
        self._xu = np.zeros((n + 1, dim))      # rows 0..n-1: state, row n: the input
        self.primed = False

    def reset(self, u: np.ndarray) -> None:
        """Steady state at a constant input u (no start-up transient)."""
        u = np.asarray(u, float)
        n = self._n
        xs = np.linalg.solve(np.eye(n) - self.A, self.B)      # state per unit constant input
        self._xu[:n] = np.outer(xs, u)
        self.primed = True

    def __call__(self, u) -> np.ndarray:
        if not self.primed:
            self.reset(u)
        xu = self._xu
        xu[self._n] = u
        z = self._M.dot(xu)
        xu[:self._n] = z[1:]
        return z[0]


def tremor_sections(fs: float, notches: Sequence[tuple[float, float]], lowpass_hz: float) -> list[Section]:
    """Tremor filter sections: a notch per (centre Hz, quality), plus a low-pass above the band."""
    secs = [notch_biquad(f0, q, fs) for f0, q in notches]
    if lowpass_hz and lowpass_hz < fs / 2:
        secs.append(lowpass_biquad(lowpass_hz, fs))
    return secs


class TremorFilter(BiquadCascade):
    """Suppresses 6-12 Hz content of a command signal sampled at `fs` Hz."""

    def __init__(self, dim: int, fs: float, notches: Sequence[tuple[float, float]], lowpass_hz: float):
        super().__init__(tremor_sections(fs, notches, lowpass_hz), dim)
        self.fs = fs


def rate_limit(current: np.ndarray, target: np.ndarray, max_step: float) -> np.ndarray:
    """Move `current` toward `target` by at most `max_step` (Euclidean)."""
    d = target - current
    n = float(np.linalg.norm(d))
    if n <= max_step or n == 0.0:
        return target.copy()
    return current + d * (max_step / n)
