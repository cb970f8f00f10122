"""`surgbot ctl ...`: the service calls and one-shot messages a user needs, without the `ros2` CLI.

Each action is one row of `ACTIONS` (contract sections 1, 2.2, 4, 8, 10):
the service it calls (or the message it sends) and what success means.  A
call that fails or times out exits non-zero with the reason, so scripts and
the README can chain them:

    surgbot ctl engage && surgbot ctl hold && surgbot ctl psm-enable && surgbot ctl psm-home

`ros2` equivalents are printed by `surgbot ctl --help`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from surgbot import contract
from surgbot.errors import CliError

# rclpy and the message packages are imported in `run`: `surgbot --help` builds
# every subcommand's parser, and loading ROS for that costs ~0.5 s.

DEFAULT_TIMEOUT_S = 5.0
POLICY_ENABLE = "/policy/enable"
POLICY_INSTRUCTION = "/policy/instruction"
STATE_TOPICS = {"safety": contract.SAFETY_STATE, "endoscope_mode": contract.ENDOSCOPE_MODE}


@dataclass(frozen=True)
class Action:
    help: str
    ros2: str                                    # the equivalent `ros2` command, for the README and --help
    service: str = ""
    srv_type: str = ""                           # "Trigger" or "SetBool" (std_srvs)
    data: bool | None = None                     # SetBool request value
    takes_text: bool = False


ACTIONS: dict[str, Action] = {
    "engage": Action("G1 bridge: ramp the arm_sdk weight 0 -> 1 over 2 s", "ros2 service call /g1/engage "
                     "std_srvs/srv/Trigger", contract.G1_ENGAGE, "Trigger"),
    "release": Action("G1 bridge: ramp the weight back to 0", "ros2 service call /g1/release std_srvs/srv/Trigger",
                      contract.G1_RELEASE, "Trigger"),
    "hold": Action("endoscope holder: HOLD the view", "ros2 service call /endoscope/hold std_srvs/srv/SetBool "
                   "'{data: true}'", contract.ENDOSCOPE_HOLD, "SetBool", True),
    "idle": Action("endoscope holder: IDLE (stop commanding; the bridge holds the arm)",
                   "ros2 service call /endoscope/hold std_srvs/srv/SetBool '{data: false}'",
                   contract.ENDOSCOPE_HOLD, "SetBool", False),
    "follow-tool": Action("endoscope holder: TOOL_FOLLOW (keep the PSM tool in view)",
                          "ros2 service call /endoscope/follow_tool std_srvs/srv/SetBool '{data: true}'",
                          contract.ENDOSCOPE_FOLLOW_TOOL, "SetBool", True),
    "estop": Action("safety: e-stop (everything holds until reset)",
                    "ros2 service call /safety/estop std_srvs/srv/Trigger", contract.SAFETY_ESTOP, "Trigger"),
    "reset": Action("safety: reset (refused while a cause persists)",
                    "ros2 service call /safety/reset std_srvs/srv/Trigger", contract.SAFETY_RESET, "Trigger"),
    "state": Action("print the safety state, endoscope mode and PSM operating state as JSON",
                    "ros2 topic echo --once /safety/state; ... /endoscope/mode; ... /PSM1/operating_state"),
    "psm-enable": Action("PSM: power up (state_command enable) and wait for ENABLED",
                         "ros2 topic pub --once /PSM1/state_command crtk_msgs/msg/StringStamped "
                         "'{string: enable}'"),
    "psm-home": Action("PSM: home and wait until homed", "ros2 topic pub --once /PSM1/state_command "
                       "crtk_msgs/msg/StringStamped '{string: home}'"),
    "policy-enable": Action("policy node: start driving the PSM", "ros2 service call /policy/enable "
                            "std_srvs/srv/SetBool '{data: true}'", POLICY_ENABLE, "SetBool", True),
    "policy-disable": Action("policy node: stop (the PSM holds)", "ros2 service call /policy/enable "
                             "std_srvs/srv/SetBool '{data: false}'", POLICY_ENABLE, "SetBool", False),
    "policy-instruction": Action("policy node: set the instruction TEXT", "ros2 topic pub --once "
                                 "/policy/instruction std_msgs/msg/String '{data: TEXT}'", takes_text=True),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "ros2 equivalents:\n" + "\n".join(f"  {name:19s} {a.ros2}" for name, a in ACTIONS.items())
    p.add_argument("action", choices=list(ACTIONS), help="what to do")
    p.add_argument("text", nargs="?", help="the instruction for policy-instruction")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to wait for the stack to answer (default {DEFAULT_TIMEOUT_S:g})")


class _Session:
    """One rclpy node spun in a background thread for the duration of a command."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        # one service client or latched reader is all a command needs: without the parameter
        # services (six, a request and a reply endpoint each) and /rosout the node offers 13 DDS
        # endpoints fewer, each of which every process of the running stack would have to
        # discover and match while it runs its loops
        # (the fault suite's `surgbot ctl estop` tripped the stack's 50 ms watchdogs at start-up)
        self.node = rclpy.create_node("surgbot_ctl", context=self.context, enable_rosout=False,
                                      start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass                     # close() shut the context down: the normal way out

    def close(self) -> None:
        # the spin thread must have left rclpy before the context goes, or
        # rclpy's C++ side aborts the process at exit
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()


def _wait(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def call_service(s: _Session, action: Action, timeout: float) -> tuple[bool, str]:
    import std_srvs.srv

    srv_type = getattr(std_srvs.srv, action.srv_type)
    client = s.node.create_client(srv_type, action.service)
    if not client.wait_for_service(timeout_sec=timeout):
        raise CliError(f"{action.service} is not available within {timeout:g} s: is the stack up "
                       f"(surgbot up / ros2 launch surgbot ...) on ROS_DOMAIN_ID the same as this shell's?")
    request = srv_type.Request()
    if action.data is not None:
        request.data = action.data
    future = client.call_async(request)
    if not _wait(future.done, timeout):
        raise CliError(f"{action.service} did not answer within {timeout:g} s")
    response = future.result()
    return bool(response.success), response.message


def read_state(s: _Session, timeout: float) -> dict:
    """Latest latched state messages (whatever arrives within `timeout`)."""
    from std_msgs.msg import String

    from surgbot.hw.crtk import PSMClient
    from surgbot.rosutil import latched_qos

    out: dict = {}
    for key, topic in STATE_TOPICS.items():
        s.node.create_subscription(String, topic, lambda m, k=key: out.__setitem__(k, m.data), latched_qos())
    psm = PSMClient(s.node)
    _wait(lambda: len(out) == len(STATE_TOPICS) and psm.operating_state() is not None, timeout)
    if "safety" in out:
        try:
            out["safety"] = json.loads(out["safety"])
        except ValueError:
            pass
    out["psm"] = psm.operating_state()
    return out


def publish_once(s: _Session, topic: str, text: str, timeout: float) -> None:
    """Publish when a subscriber is matched, so the message is not lost on an empty graph."""
    from std_msgs.msg import String

    from surgbot.rosutil import latched_qos

    pub = s.node.create_publisher(String, topic, latched_qos())
    if not _wait(lambda: pub.get_subscription_count() > 0, timeout):
        raise CliError(f"nobody subscribes to {topic} within {timeout:g} s: is the policy node up?")
    pub.publish(String(data=text))
    time.sleep(0.2)        # let reliable delivery finish before the node goes away


def run(args: argparse.Namespace) -> int:
    action = ACTIONS[args.action]
    if action.takes_text and not (args.text or "").strip():
        raise CliError(f"{args.action} needs the instruction text, e.g. surgbot ctl {args.action} "
                       "'pick up the needle'")
    if not action.takes_text and args.text is not None:
        raise CliError(f"{args.action} takes no argument (got {args.text!r})")
    if not args.timeout > 0:
        raise CliError("--timeout must be > 0")
    s = _Session()
    try:
        if action.service:
            ok, message = call_service(s, action, args.timeout)
            print(f"{args.action}: {'ok' if ok else 'refused'}{': ' + message if message else ''}",
                  file=sys.stdout if ok else sys.stderr)
            return 0 if ok else 1
        if args.action == "state":
            print(json.dumps(read_state(s, args.timeout)))
            return 0
        if args.action == "policy-instruction":
            publish_once(s, POLICY_INSTRUCTION, args.text.strip(), args.timeout)
            print(f"policy-instruction: sent {args.text.strip()!r}")
            return 0
        from surgbot.hw.crtk import PSMClient

        psm = PSMClient(s.node)
        try:
            psm.wait_for_state(args.timeout)
            (psm.enable if args.action == "psm-enable" else psm.home)(timeout=max(args.timeout, 20.0))
        except TimeoutError as exc:
            print(f"{args.action}: failed: {exc}", file=sys.stderr)
            return 1
        print(f"{args.action}: ok: {json.dumps(psm.operating_state())}")
        return 0
    finally:
        s.close()
