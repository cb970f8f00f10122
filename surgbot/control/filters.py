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

import numpy as np


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


def frequency_response(sections, f: np.ndarray, fs: float) -> np.ndarray:
    """Complex response of a biquad cascade at frequencies f (Hz)."""
    z = np.exp(-1j * 2 * np.pi * np.asarray(f, float) / fs)
    h = np.ones_like(z)
    for b, a in sections:
        h *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    return h


class BiquadCascade:
    """Vector signal through a fixed cascade of biquads (DF-II transposed)."""

    def __init__(self, sections, dim: int):
        self.sections = [(np.asarray(b, float), np.asarray(a, float)) for b, a in sections]
        self.dim = dim
        self._z = np.zeros((len(self.sections), 2, dim))
        self.primed = False

    def reset(self, x: np.ndarray) -> None:
        """Steady state at a constant input x (no start-up transient)."""
        x = np.asarray(x, float)
        for k, (b, a) in enumerate(self.sections):
            # steady state of DF-II T with constant input x and output y = x * dc gain
            g = b.sum() / a.sum()
            y = g * x
            self._z[k, 1] = b[2] * x - a[2] * y
            self._z[k, 0] = b[1] * x - a[1] * y + self._z[k, 1]
            x = y
        self.primed = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self.primed:
            self.reset(x)
        y = np.asarray(x, float)
        for k, (b, a) in enumerate(self.sections):
            z = self._z[k]
            out = b[0] * y + z[0]
            z[0] = b[1] * y - a[1] * out + z[1]
            z[1] = b[2] * y - a[2] * out
            y = out
        return y


def tremor_sections(fs: float, notches=((6.5, 1.5), (8.5, 1.5), (11.5, 1.5)), lowpass_hz: float = 40.0):
    """The default tremor filter: notches across 6-12 Hz plus a low-pass above the band."""
    secs = [notch_biquad(f0, q, fs) for f0, q in notches]
    if lowpass_hz and lowpass_hz < fs / 2:
        secs.append(lowpass_biquad(lowpass_hz, fs))
    return secs


class TremorFilter(BiquadCascade):
    """Suppresses 6-12 Hz content of a command signal sampled at `fs` Hz."""

    def __init__(self, dim: int, fs: float, notches=((6.5, 1.5), (8.5, 1.5), (11.5, 1.5)),
                 lowpass_hz: float = 40.0):
        super().__init__(tremor_sections(fs, notches, lowpass_hz), dim)
        self.fs = fs


def rate_limit(current: np.ndarray, target: np.ndarray, max_step: float) -> np.ndarray:
    """Move `current` toward `target` by at most `max_step` (Euclidean)."""
    d = target - current
    n = float(np.linalg.norm(d))
    if n <= max_step or n == 0.0:
        return target.copy()
    return current + d * (max_step / n)
