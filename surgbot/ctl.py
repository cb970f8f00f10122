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
import weakref
from dataclasses import dataclass

from surgbot import contract
from surgbot.errors import CliError
from surgbot.pacing import poll_until

# rclpy and the message packages are imported in `run`: `surgbot --help` builds
# every subcommand's parser, and loading ROS for that costs ~0.5 s.

DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 600.0
POLICY_ENABLE = "/policy/enable"
POLICY_INSTRUCTION = "/policy/instruction"
STATE_TOPICS = {"safety": contract.SAFETY_STATE, "endoscope_mode": contract.ENDOSCOPE_MODE}
_CLIENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # node -> {service: client}


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
    """One rclpy node spun in a background thread: for one command, or for the stack's relay
    (`surgbot.ctl_relay`), which keeps it and runs one command at a time (`lock`)."""

    def __init__(self, signal_handlers: bool = True):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.context = rclpy.Context()
        # the relay lives in `surgbot up`, whose own SIGINT/SIGTERM handlers stop the stack
        rclpy.init(context=self.context,
                   signal_handler_options=SignalHandlerOptions.ALL if signal_handlers else SignalHandlerOptions.NO)
        # one service client or latched reader is all a command needs: without the parameter
        # services (six, a request and a reply endpoint each) and /rosout the node offers 13 DDS
        # endpoints fewer, each of which every process of the running stack would have to
        # discover and match while it runs its loops
        # (the fault suite's `surgbot ctl estop` tripped the stack's 50 ms watchdogs at start-up)
        self.node = rclpy.create_node("surgbot_ctl", context=self.context, enable_rosout=False,
                                      start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self._psm = None
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def psm(self):
        """The node's PSM client, without the measured streams (`state` needs only the operating state)."""
        if self._psm is None:
            from surgbot.hw.crtk import PSMClient

            self._psm = PSMClient(self.node, streams=())
        return self._psm

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


def service_client(node, srv_type, service: str):
    """`node`'s client of `service`, made once per node: the relay and the demo call the same
    services many times, and each new client is two DDS endpoints every process must match."""
    clients = _CLIENTS.setdefault(node, {})
    if service not in clients:
        clients[service] = node.create_client(srv_type, service)
    return clients[service]


def call_service(s, action: Action, timeout: float) -> tuple[bool, str]:
    """Call `action`'s service from `s.node` (a `_Session`'s, the demo observer's)."""
    import std_srvs.srv

    srv_type = getattr(std_srvs.srv, action.srv_type)
    client = service_client(s.node, srv_type, action.service)
    if not client.wait_for_service(timeout_sec=timeout):
        raise CliError(f"{action.service} is not available within {timeout:g} s: is the stack up "
                       f"(surgbot up / ros2 launch surgbot ...) on ROS_DOMAIN_ID the same as this shell's?")
    request = srv_type.Request()
    if action.data is not None:
        request.data = action.data
    future = client.call_async(request)
    if not poll_until(future.done, timeout):
        raise CliError(f"{action.service} did not answer within {timeout:g} s")
    response = future.result()
    return bool(response.success), response.message


def read_state(s: _Session, timeout: float) -> dict:
    """Latest latched state messages (whatever arrives within `timeout`)."""
    from std_msgs.msg import String

    from surgbot.rosutil import latched_qos

    out: dict = {}
    subs = [s.node.create_subscription(String, topic, lambda m, k=key: out.__setitem__(k, m.data), latched_qos())
            for key, topic in STATE_TOPICS.items()]
    psm = s.psm()
    try:
        poll_until(lambda: len(out) == len(STATE_TOPICS) and psm.operating_state() is not None, timeout)
    finally:
        for sub in subs:             # the relay's node reads /safety/state (50 Hz) only while asked
            s.node.destroy_subscription(sub)
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
    if not poll_until(lambda: pub.get_subscription_count() > 0, timeout):
        raise CliError(f"nobody subscribes to {topic} within {timeout:g} s: is the policy node up?")
    pub.publish(String(data=text))
    time.sleep(0.2)        # let reliable delivery finish before the node goes away
    s.node.destroy_publisher(pub)


def check_request(name: str, text: str | None, timeout: float) -> None:
    """The checks of one action's arguments (here and in the relay): CliError says what is wrong."""
    action = ACTIONS.get(name)
    if action is None:
        raise CliError(f"unknown action {name!r}: one of {', '.join(ACTIONS)}")
    if action.takes_text and not (text or "").strip():
        raise CliError(f"{name} needs the instruction text, e.g. surgbot ctl {name} 'pick up the needle'")
    if not action.takes_text and text is not None:
        raise CliError(f"{name} takes no argument (got {text!r})")
    if not (isinstance(timeout, int | float) and 0 < timeout <= MAX_TIMEOUT_S):
        raise CliError(f"--timeout must be > 0 and <= {MAX_TIMEOUT_S:g} s")


def execute(s: _Session, name: str, text: str | None, timeout: float) -> tuple[int, str, str]:
    """One checked action on the session's node: (exit code, stdout line, stderr line)."""
    action = ACTIONS[name]
    if action.service:
        ok, message = call_service(s, action, timeout)
        line = f"{name}: {'ok' if ok else 'refused'}{': ' + message if message else ''}"
        return (0, line, "") if ok else (1, "", line)
    if name == "state":
        return 0, json.dumps(read_state(s, timeout)), ""
    if name == "policy-instruction":
        publish_once(s, POLICY_INSTRUCTION, text.strip(), timeout)
        return 0, f"policy-instruction: sent {text.strip()!r}", ""
    psm = s.psm()
    try:
        psm.wait_for_state(timeout)
        (psm.enable if name == "psm-enable" else psm.home)(timeout=max(timeout, 20.0))
    except TimeoutError as exc:
        return 1, "", f"{name}: failed: {exc}"
    return 0, f"{name}: ok: {json.dumps(psm.operating_state())}", ""


def run(args: argparse.Namespace) -> int:
    from surgbot import ctl_relay

    check_request(args.action, args.text, args.timeout)
    reply = ctl_relay.request(args.action, args.text, args.timeout)
    if reply is None:                 # no `surgbot up` relay on this domain: a node of our own
        s = _Session()
        try:
            rc, out, err = execute(s, args.action, args.text, args.timeout)
        finally:
            s.close()
    else:
        rc, out, err = reply
    if out:
        print(out)
    if err:
        print(err, file=sys.stderr)
    return rc
