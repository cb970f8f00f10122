"""Small statistics for the results page: Wilson score interval, percentiles."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054     # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (n trials); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside 0..{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exactly 0 / 1 at the ends (mathematically so; the float difference is ~1e-17 off)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def percentile(values, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None
