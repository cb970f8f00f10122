"""Safety checks: finite values, limits, rate clamps, staleness. Pure functions."""
