"""Real hardware: the G1 bridge on the robot's NIC (DDS domain 0) and the endoscope holder.

The PSM is served by the dVRK console itself (its CRTK ROS 2 interface under
/PSM1); nothing of ours runs in its place.

    ros2 launch surgbot hardware.launch.py g1_interface:=enp3s0
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("surgbot"), "config")
    g1_domain = LaunchConfiguration("g1_domain")
    g1_interface = LaunchConfiguration("g1_interface")
    return LaunchDescription([
        DeclareLaunchArgument("g1_domain", default_value="0"),
        DeclareLaunchArgument("g1_interface", default_value="eth0",
                              description="the NIC on the robot's 192.168.123.0/24 network"),
        Node(package="surgbot", executable="g1_bridge", name="g1_bridge", output="screen",
             parameters=[os.path.join(config, "g1_bridge.yaml"),
                         {"g1_domain": g1_domain, "g1_interface": g1_interface}]),
        Node(package="surgbot", executable="endoscope_holder", name="endoscope_holder",
             output="screen", parameters=[os.path.join(config, "endoscope_holder.yaml")]),
    ])
