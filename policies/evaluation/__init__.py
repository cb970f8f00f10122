"""Closed-loop policy evaluation: `surgbot policy eval` (in-process Gymnasium episodes, or the ROS stack)."""
