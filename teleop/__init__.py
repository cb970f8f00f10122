"""Teleop console server, web page and mapping (later waves)."""
