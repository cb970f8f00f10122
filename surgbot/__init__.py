"""surgbot: a ROS 2 control stack for a G1 endoscope holder, a dVRK-style PSM and a VLA policy."""

__version__ = "0.1.0"
