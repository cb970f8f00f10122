"""`ros2 launch surgbot teleop.launch.py [name:=value ...]`: the teleop node set of `surgbot.stack`.

The same node set and parameters as `surgbot up` (surgbot/stack.py is the one
definition); `ros2 launch surgbot teleop.launch.py --show-args` lists the arguments.
"""

from surgbot.stack import generate_launch_description_for


def generate_launch_description():
    return generate_launch_description_for("teleop")
