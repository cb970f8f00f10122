"""Sim-in-the-loop stack: the MuJoCo twin, the G1 bridge and the endoscope holder.

    ros2 launch surgbot sim.launch.py scene:=endonasal g1_domain:=1
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("surgbot"), "config")
    scene = LaunchConfiguration("scene")
    g1_domain = LaunchConfiguration("g1_domain")
    g1_interface = LaunchConfiguration("g1_interface")
    return LaunchDescription([
        DeclareLaunchArgument("scene", default_value="box_trainer",
                              description="box_trainer or endonasal"),
        DeclareLaunchArgument("g1_domain", default_value="1"),
        DeclareLaunchArgument("g1_interface", default_value="lo"),
        Node(package="surgbot", executable="sim_node", name="sim_node", output="screen",
             parameters=[os.path.join(config, "psm.yaml"),
                         {"scene": scene, "headless": True, "g1_domain": g1_domain,
                          "g1_interface": g1_interface}]),
        Node(package="surgbot", executable="g1_bridge", name="g1_bridge", output="screen",
             parameters=[os.path.join(config, "g1_bridge.yaml"),
                         {"g1_domain": g1_domain, "g1_interface": g1_interface}]),
        Node(package="surgbot", executable="endoscope_holder", name="endoscope_holder",
             output="screen",
             parameters=[os.path.join(config, "endoscope_holder.yaml"), {"scene": scene}]),
    ])
