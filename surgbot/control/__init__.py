"""ROS-free controller cores."""
