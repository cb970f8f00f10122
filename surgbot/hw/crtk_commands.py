"""What a CRTK client puts on the wire: the link's message types and the checked, stamped commands.

`message_types()` imports the ROS classes once crtk_msgs is on the path;
`CommandPublisher` publishes one arm namespace's commands after the ground
layer's checks (`surgbot.safety.checks`): a bad value raises ValueError naming
the cause and nothing is published.  `surgbot.hw.crtk.PSMClient` is the API.
"""

from __future__ import annotations

import numpy as np

from surgbot import geometry
from surgbot.contract import PSM_BASE_FRAME, psm_topic
from surgbot.hw.crtk_link import QUEUE_DEPTH
from surgbot.hw.crtk_msgs_path import ensure_crtk_msgs
from surgbot.safety import checks


def message_types() -> dict:
    """The ROS message and service classes of the CRTK link, by name, imported once crtk_msgs is
    on the path (so importing this module neither needs ROS nor a built crtk_msgs; a client does)."""
    ensure_crtk_msgs()
    from crtk_msgs.msg import OperatingState, StringStamped
    from crtk_msgs.srv import QueryForwardKinematics, QueryInverseKinematics
    from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Empty, Float64, Float64MultiArray, String
    return dict(OperatingState=OperatingState, StringStamped=StringStamped, JointState=JointState,
                PoseStamped=PoseStamped, TwistStamped=TwistStamped, WrenchStamped=WrenchStamped,
                Bool=Bool, Empty=Empty, Float64=Float64, Float64MultiArray=Float64MultiArray, String=String,
                QueryForwardKinematics=QueryForwardKinematics, QueryInverseKinematics=QueryInverseKinematics)


COMMAND_TYPES = {"servo_jp": "JointState", "servo_jr": "JointState", "move_jp": "JointState",
                 "move_jr": "JointState", "servo_jf": "JointState", "servo_cp": "PoseStamped",
                 "move_cp": "PoseStamped", "servo_cv": "TwistStamped", "jaw/servo_jp": "JointState",
                 "jaw/move_jp": "JointState", "jaw/servo_jf": "JointState", "spatial/servo_cf": "WrenchStamped",
                 "body/servo_cf": "WrenchStamped"}


class CommandPublisher:
    """Stamped, checked CRTK command messages on one arm namespace: nothing is published
    from a bad value (ValueError naming the cause)."""

    def __init__(self, node, namespace: str, types: dict):
        self.node, self._t = node, types
        t = lambda name: psm_topic(name, namespace)  # noqa: E731
        topics = dict(COMMAND_TYPES, state_command="StringStamped", hold="Empty", free="Empty",
                      use_gravity_compensation="Bool", **{"trajectory_j/set_ratio": "Float64"})
        self.pub = {name: node.create_publisher(types[typ], t(name), QUEUE_DEPTH) for name, typ in topics.items()}

    def stamped(self, msg):
        msg.header.stamp = self.node.get_clock().now().to_msg()
        return msg

    @staticmethod
    def checked(what: str, values, size: int) -> list[float]:
        """`values` as `size` finite floats, or ValueError with the cause (nothing is sent)."""
        r = checks.finite(what, values, size)
        if not r:
            raise ValueError(f"{what} not sent: {r.reason}")
        return [float(v) for v in r.value.ravel()]

    def joints(self, topic: str, names, positions=None, efforts=None) -> None:
        msg = self.stamped(self._t["JointState"]())
        msg.name = list(names)
        if positions is not None:
            msg.position = self.checked(topic, positions, len(msg.name))
        if efforts is not None:
            msg.effort = self.checked(topic, efforts, len(msg.name))
        self.pub[topic].publish(msg)

    def pose(self, topic: str, T) -> None:
        m = np.asarray(self.checked(topic, T, 16)).reshape(4, 4)
        r = checks.rotation_matrix(topic, m[:3, :3])
        if not r:
            raise ValueError(f"{topic} not sent: {r.reason}")
        msg = self.stamped(self._t["PoseStamped"]())
        msg.header.frame_id = PSM_BASE_FRAME
        self.pub[topic].publish(geometry.matrix_to_pose_msg(m, msg))

    def twist(self, topic: str, values) -> None:
        """(vx, vy, vz, wx, wy, wz) as a TwistStamped in PSM1_base."""
        msg = self.stamped(self._t["TwistStamped"]())
        msg.header.frame_id = PSM_BASE_FRAME
        self._six(topic, values, msg, msg.twist.linear, msg.twist.angular)

    def wrench(self, topic: str, values) -> None:
        """(fx, fy, fz, tx, ty, tz) as a WrenchStamped."""
        msg = self.stamped(self._t["WrenchStamped"]())
        self._six(topic, values, msg, msg.wrench.force, msg.wrench.torque)

    def _six(self, topic: str, values, msg, first, second) -> None:
        first.x, first.y, first.z, second.x, second.y, second.z = self.checked(topic, values, 6)
        self.pub[topic].publish(msg)

    def close(self) -> None:
        for pub in self.pub.values():
            self.node.destroy_publisher(pub)
        self.pub = {}
