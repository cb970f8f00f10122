"""The tremor filter's frequency response, measured by driving it with sinusoids.

The filter (`surgbot.control.filters.TremorFilter`, 500 Hz, the holder's
rate) is fed pure tones, one per channel of its vector signal; after the
start-up transient the output is fitted with a sine and a cosine at the
input frequency (least squares), which gives gain and phase without using
the filter's own `frequency_response` helper or its coefficients.

Figures it is designed for (module doc and FACTS.md):
* physiological tremor 6-12 Hz: attenuated by at least 15 dB (to < 18% of
  its amplitude) everywhere in the band;
* deliberate motion: < 0.5 dB loss up to 2 Hz, and a group delay at 0.5 Hz
  equal to the sum of its sections' low-frequency delays, 1/(Q w0) per notch
  and sqrt(2)/w_c for the second-order Butterworth low-pass (~44 ms for
  notches at 6.5/8.5/11.5 Hz, Q 1.5, and a 40 Hz low-pass), well under the
  60-90 ms a low-pass that removes 8 Hz would cost.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from surgbot.control.filters import TremorFilter

pytestmark = pytest.mark.unit

FS = 500.0
NOTCHES = ((6.5, 1.5), (8.5, 1.5), (11.5, 1.5))
LOWPASS_HZ = 40.0


def measured_response(freqs: np.ndarray, seconds: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """(gain, phase in rad) of the filter at each frequency, from its output to pure tones."""
    flt = TremorFilter(len(freqs), FS, NOTCHES, LOWPASS_HZ)
    t = np.arange(int(seconds * FS)) / FS
    u = np.sin(2 * np.pi * np.outer(t, freqs))
    flt.reset(np.zeros(len(freqs)))
    y = np.array([flt(row) for row in u])
    keep = t >= seconds / 2                       # the notches ring for ~1 s: fit the second half
    gain, phase = np.zeros(len(freqs)), np.zeros(len(freqs))
    for i, f in enumerate(freqs):
        A = np.column_stack([np.sin(2 * np.pi * f * t[keep]), np.cos(2 * np.pi * f * t[keep])])
        a, b = np.linalg.lstsq(A, y[keep, i], rcond=None)[0]
        gain[i], phase[i] = math.hypot(a, b), math.atan2(b, a)
    return gain, phase


def test_tremor_band_6_to_12_hz_is_attenuated_by_15_db():
    band = np.arange(6.0, 12.0 + 1e-9, 0.25)
    gain, _ = measured_response(band)
    db = 20 * np.log10(gain)
    assert db.max() < -15.0, dict(zip(band.round(2).tolist(), db.round(1).tolist(), strict=True))


def test_deliberate_motion_passes_with_the_designed_delay():
    low = np.array([0.25, 0.5, 1.0, 2.0])
    gain, phase = measured_response(low)
    assert np.all(20 * np.log10(gain) > -0.5)
    delay_05 = -phase[1] / (2 * np.pi * 0.5)
    designed = sum(1.0 / (q * 2 * np.pi * f0) for f0, q in NOTCHES) + math.sqrt(2) / (2 * np.pi * LOWPASS_HZ)
    assert delay_05 == pytest.approx(designed, abs=2e-3), (delay_05, designed)
    assert delay_05 < 0.050


def test_a_constant_command_passes_unchanged():
    flt = TremorFilter(4, FS, NOTCHES, LOWPASS_HZ)
    u = np.array([0.1, -0.2, 0.0, 0.05])
    flt.reset(u)
    for _ in range(100):
        y = flt(u)
    np.testing.assert_allclose(y, u, atol=1e-12)
