"""Kinematics: PSM modified DH, G1 arm via pinocchio from the shared MJCF."""
