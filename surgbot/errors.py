"""Errors shared by every layer (ground layer: imports nothing of surgbot)."""

from __future__ import annotations


class CliError(Exception):
    """Bad input to a command: `surgbot` reports it as one line and exits 2."""
