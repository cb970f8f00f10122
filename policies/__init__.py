"""VLA policy, inverse dynamics model, data and serving (later waves)."""
