"""`surgbot demo`: the main job (see cli.py)."""
