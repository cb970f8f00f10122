"""Closed-loop policy evaluation (the harness) and adapters for LeRobot's policies."""
