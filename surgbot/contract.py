"""The interface contract (../shared/INTERFACES.md) as constants.

Every side of a link imports names from here, so a topic, joint or frame is
spelled once.  Nothing in this module imports ROS or DDS.
"""

from __future__ import annotations

import os

# --------------------------------------------------------------------------
# Frames
WORLD_FRAME = "world"
PSM_BASE_FRAME = "PSM1_base"
ENDOSCOPE_TIP_FRAME = "endoscope_tip"
FULCRUM_FRAME = "fulcrum"

# --------------------------------------------------------------------------
# Unitree G1, 29 DoF (contract section 2.1; Unitree URDF names)
_LEG = ("hip_pitch", "hip_roll", "hip_yaw", "knee", "ankle_pitch", "ankle_roll")
_ARM = ("shoulder_pitch", "shoulder_roll", "shoulder_yaw", "elbow",
        "wrist_roll", "wrist_pitch", "wrist_yaw")

G1_JOINT_NAMES: tuple[str, ...] = (
    tuple(f"left_{j}_joint" for j in _LEG)
    + tuple(f"right_{j}_joint" for j in _LEG)
    + ("waist_yaw_joint", "waist_roll_joint", "waist_pitch_joint")
    + tuple(f"left_{j}_joint" for j in _ARM)
    + tuple(f"right_{j}_joint" for j in _ARM)
)
G1_NUM_JOINTS = 29
G1_NUM_MOTORS = 35          # LowCmd_/LowState_ motor array length
G1_MODE_MACHINE = 5         # g1_29dof
G1_UPPER_BODY = tuple(range(12, 29))   # waist + both arms: what rt/arm_sdk drives
G1_WAIST = (12, 13, 14)
G1_LEFT_ARM = tuple(range(15, 22))
G1_RIGHT_ARM = tuple(range(22, 29))
G1_ARM_SDK_WEIGHT_INDEX = 29          # motor_cmd[29].q is the arm_sdk blend weight
G1_INDEX = {name: i for i, name in enumerate(G1_JOINT_NAMES)}

# DDS topics (unitree_hg IDL) and defaults
G1_TOPIC_LOWSTATE = "rt/lowstate"
G1_TOPIC_LOWCMD = "rt/lowcmd"
G1_TOPIC_ARM_SDK = "rt/arm_sdk"
G1_LOWSTATE_HZ = 500.0
G1_JOINT_STATES_HZ = 250.0             # g1_bridge: /g1/joint_states, one per 4 ms of robot tick
G1_SIM_DOMAIN = 1
G1_DOMAIN_ENV = "SURGBOT_G1_DOMAIN"     # overrides G1_SIM_DOMAIN for the sim and `surgbot up/demo` (tests)


def g1_sim_domain() -> int:
    """The G1 DDS domain of a sim stack: $SURGBOT_G1_DOMAIN, else G1_SIM_DOMAIN."""
    try:
        return int(os.environ.get(G1_DOMAIN_ENV, G1_SIM_DOMAIN))
    except ValueError:
        return G1_SIM_DOMAIN
G1_SIM_INTERFACE = "lo"
MOTION_SWITCHER_SERVICE = "motion_switcher"
MOTION_SWITCHER_API_CHECK_MODE = 1001
MOTION_SWITCHER_API_SELECT_MODE = 1002
MOTION_SWITCHER_API_RELEASE_MODE = 1003

# ROS side of the G1 bridge
G1_JOINT_STATES = "/g1/joint_states"
G1_IMU = "/g1/imu"
G1_ARM_COMMAND = "/g1/arm_command"
G1_ENGAGE = "/g1/engage"
G1_RELEASE = "/g1/release"

# --------------------------------------------------------------------------
# dVRK PSM over CRTK (contract section 3)
PSM_NAMESPACE = "/PSM1"
PSM_JOINT_NAMES: tuple[str, ...] = (
    "yaw", "pitch", "insertion", "roll", "wrist_pitch", "wrist_yaw")
PSM_JAW_NAME = "jaw"
PSM_OPERATING_STATES = ("DISABLED", "ENABLED", "PAUSED", "FAULT")
PSM_STATE_COMMANDS = ("enable", "disable", "home", "unhome", "pause", "resume")
PSM_DEFAULT_RATE_HZ = 100.0
PSM_MAX_RATE_HZ = 1000.0


def psm_topic(name: str, namespace: str = PSM_NAMESPACE) -> str:
    """`/PSM1/<name>` for a CRTK topic name such as `measured_js`."""
    return f"{namespace.rstrip('/')}/{name}"


# --------------------------------------------------------------------------
# Endoscope holder (contract section 4)
ENDOSCOPE_MEASURED_CP = "/endoscope/measured_cp"
ENDOSCOPE_FULCRUM = "/endoscope/fulcrum"
ENDOSCOPE_FULCRUM_ERROR = "/endoscope/fulcrum_error"
ENDOSCOPE_MODE = "/endoscope/mode"
ENDOSCOPE_SERVO_CP = "/endoscope/servo_cp"
ENDOSCOPE_SERVO_CV = "/endoscope/servo_cv"
ENDOSCOPE_HOLD = "/endoscope/hold"
ENDOSCOPE_FOLLOW_TOOL = "/endoscope/follow_tool"
ENDOSCOPE_SET_FULCRUM = "/endoscope/set_fulcrum"
ENDOSCOPE_MODES = ("IDLE", "HOLD", "TELEOP", "HEAD_FOLLOW", "TOOL_FOLLOW", "FAULT")
ENDOSCOPE_TELEOP_TIMEOUT_S = 0.2

# --------------------------------------------------------------------------
# Camera and ground truth (contract section 5, sim only)
ENDOSCOPE_IMAGE = "/endoscope/image_raw"
ENDOSCOPE_IMAGE_COMPRESSED = "/endoscope/image_raw/compressed"
ENDOSCOPE_CAMERA_INFO = "/endoscope/camera_info"
GT_ENDOSCOPE_TIP = "/sim/ground_truth/endoscope_tip"
GT_FULCRUM = "/sim/ground_truth/fulcrum"
GT_PSM_TIP = "/sim/ground_truth/psm_tip"
SIM_TASK = "/sim/task"
SIM_TASK_SET = "/sim/task/set"      # String JSON {"task": T, "seed": N}: lay out a new episode (sim only)
# Outside view of the whole scene (sim only, off unless `overview_hz` > 0; `surgbot demo` records it).
SIM_OVERVIEW_IMAGE = "/sim/overview/image_raw"
SIM_OVERVIEW_IMAGE_COMPRESSED = "/sim/overview/image_raw/compressed"
SIM_OVERVIEW_CAMERA_INFO = "/sim/overview/camera_info"
SIM_OVERVIEW_FRAME = "overview_camera"
CLOCK = "/clock"

# --------------------------------------------------------------------------
# Teleop (contract section 6)
TELEOP_HEAD = "/teleop/head"
TELEOP_LEFT = "/teleop/left"
TELEOP_RIGHT = "/teleop/right"
TELEOP_BUTTONS = "/teleop/buttons"
CONSOLE_DEFAULT_PORT = 8443

# --------------------------------------------------------------------------
# Safety (contract section 8)
SAFETY_ESTOP = "/safety/estop"
SAFETY_RESET = "/safety/reset"
SAFETY_STATE = "/safety/state"
# Node liveliness (ours, beside section 8): every node's `Diagnostics` offers a never-written
# std_msgs/Empty publisher here whose DDS liveliness (AUTOMATIC, lease `alive_lease_of`) tells the
# supervisor within the lease that the process died, exited or stalled.
SAFETY_ALIVE_PREFIX = "/safety/alive/"
ALIVE_LEASE_S = 0.15
# Nodes that run niced below the real-time chain (stack.NICE_BACKGROUND) because a late tick costs
# them nothing: the 15 Hz policy node (a stalled one sends no commands and its chunks age: the
# supervisor's policy chunk watchdog) and the recorder.  On the 2-core machine the policy node's
# 150 ms liveliness lapsed while the chain kept time (`surgbot demo --realtime`: a FAULT
# "alive:policy_node" mid-task, the process still running); their death is still a FAULT within
# this lease.  stack.NodeSpec nices exactly these ROS nodes (its default; tests/test_house.py).
BACKGROUND_NODES = ("policy_node", "recorder")
ALIVE_LEASE_BACKGROUND_S = 0.5
# A node process's exit, told by the launcher that started it (`surgbot up`; surgbot.exit_watch)
# the moment the kernel tells it, instead of one lease later: std_msgs/String JSON
# {"node": NAME (its diagnostics name), "pid": PID, "returncode": N (-S: killed by signal S, null:
# unknown), "reporter": "surgbot up"}; reliable, volatile.  The supervisor treats it as that node's
# liveliness lost (a FAULT until the node is alive again and a person resets).
SAFETY_PROCESS_EXIT = "/safety/process_exit"


def alive_topic(node_name: str) -> str:
    """`/safety/alive/<node_name>`: the liveliness topic of a node (its diagnostics name)."""
    if not node_name or not all(c.isalnum() or c == "_" for c in node_name) or node_name[0].isdigit():
        raise ValueError(f"node name {node_name!r}: letters, digits and _ only, not starting with a digit")
    return SAFETY_ALIVE_PREFIX + node_name


def alive_lease_of(node_name: str) -> float:
    """The liveliness lease of a node (its diagnostics name), s: writer and supervisor both use it."""
    return ALIVE_LEASE_BACKGROUND_S if node_name in BACKGROUND_NODES else ALIVE_LEASE_S

# --------------------------------------------------------------------------
# Recorder episodes for LeRobot datasets (contract section 10; std_srvs/Trigger;
# served by `surgbot data record --source ros`, called by the console's Record)
RECORDER_EPISODE_START = "/recorder/episode/start"
RECORDER_EPISODE_STOP = "/recorder/episode/stop"          # keep the episode
RECORDER_EPISODE_DISCARD = "/recorder/episode/discard"

SCENES = ("box_trainer", "endonasal")
