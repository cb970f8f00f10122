"""surgbot tests (a regular package: site-packages may hold another top-level `tests`, e.g. draccus ships one)."""
