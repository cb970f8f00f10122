"""Inverse dynamics model (IDM): pseudo-kinematics for world-model video (the SurgWorld pipeline)."""
