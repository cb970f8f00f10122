"""Config dataclasses of the console server and the teleop mapper (ROS parameters are generated from them).

`config/teleop_console.yaml` and `config/teleop_mapper.yaml` only override.
The console's token is deliberately not a parameter: ROS parameters can be
read by anyone on the DDS domain (`ros2 param get`); it comes from
`--token`, `SURGBOT_CONSOLE_TOKEN`, or is generated and printed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from surgbot import contract
from surgbot.config import check_ranges, param
from surgbot.kinematics.psm import JAW_TRACKING_TOLERANCE

# The jaw command's lead over the measured jaw stays this far under the arm's tracking-error fault (0.6 rad,
# dVRK): the measured jaw reaches the mapper a few ms late, and a jaw moving toward the command only closes it.
JAW_LEAD_MARGIN_RAD = 0.1

VIDEO_SOURCES = ("compressed", "raw", "none")


@dataclass(frozen=True)
class ConsoleConfig:
    host: str = param("127.0.0.1", "address to bind; anything but loopback exposes the console (a warning names it)")
    port: int = param(contract.CONSOLE_DEFAULT_PORT, "HTTPS + WSS port (0: any free port, printed)", lo=0, hi=65535)
    cert: str = param("", "PEM certificate; empty: a self-signed one under the user's config dir")
    key: str = param("", "PEM private key of `cert`")
    allowed_hosts: tuple[str, ...] = param((), "extra Host names accepted (IP literals, localhost and this "
                                                "machine's name always are; others are refused against DNS rebinding)")
    max_message_bytes: int = param(16384, "client messages larger than this are dropped and counted", lo=256,
                                   hi=1 << 20)
    max_message_rate_hz: float = param(400.0, "sustained client message rate; more are dropped and counted",
                                       lo=1.0, hi=1e6)
    rate_burst: int = param(200, "token-bucket burst of the message rate limit", lo=1, hi=1_000_000)
    hello_timeout_s: float = param(3.0, "a socket that has not authenticated by then is closed (4401)", lo=0.1,
                                   hi=60.0)
    status_period_s: float = param(0.1, "status message period", lo=0.02, hi=5.0)
    link_timeout_s: float = param(contract.ENDOSCOPE_TELEOP_TIMEOUT_S,
                                  "no valid xr from the operator for this long: link lost (deadman released)",
                                  lo=0.02, hi=5.0)
    max_unacked_frames: int = param(2, "video frames in flight without an ack before newer ones wait (and older "
                                       "ones are dropped)", lo=1, hi=30)
    ack_timeout_s: float = param(1.0, "an unacked frame is forgotten after this long", lo=0.05, hi=10.0)
    video_source: str = param("compressed", "compressed: pass the camera's JPEG through; raw: encode image_raw "
                                            "with jpeg_quality/video_width; none: no video")
    jpeg_quality: int = param(80, "JPEG quality when encoding from raw", lo=10, hi=100)
    video_width: int = param(0, "encoded width when encoding from raw (0: the camera's)", lo=0, hi=4096)
    record_call_timeout_s: float = param(30.0, "a Record call (episode start/stop/discard service) unanswered "
                                               "this long is given up (the recorder writes an episode between "
                                               "calls)", lo=0.5, hi=600.0)

    def __post_init__(self):
        check_ranges(self)
        if self.video_source not in VIDEO_SOURCES:
            raise ValueError(f"video_source {self.video_source!r} not in {VIDEO_SOURCES}")
        if not self.host:
            raise ValueError("host must not be empty")


@dataclass(frozen=True)
class MapperConfig:
    scale: float = param(0.2, "tool translation per hand translation (dVRK default 0.2)", lo=0.01, hi=2.0)
    link_timeout_s: float = param(contract.ENDOSCOPE_TELEOP_TIMEOUT_S,
                                  "no valid xr sample for this long: stop commanding, a fresh clutch is needed",
                                  lo=0.02, hi=5.0)
    clutch_threshold: float = param(0.5, "right squeeze above this engages the clutch", lo=0.05, hi=0.95)
    workspace_min_m: tuple[float, ...] = param((-0.1, -0.1, -0.22), "tool tip box in PSM1_base, lower corner (m)")
    workspace_max_m: tuple[float, ...] = param((0.1, 0.1, -0.05), "tool tip box in PSM1_base, upper corner (m)")
    max_step_m: float = param(0.004, "largest tool translation per command (m)", lo=1e-5, hi=0.05)
    max_step_rad: float = param(0.1, "largest tool rotation per command (rad)", lo=1e-4, hi=1.0)
    max_setpoint_offset_m: float = param(0.005, "clutch-in starts from the last command if within this of "
                                                "measured_cp, else from measured_cp", lo=0.0, hi=0.05)
    jaw_open_rad: float = param(0.8, "jaw with the trigger released (rad)", lo=-0.698, hi=1.396)
    jaw_closed_rad: float = param(-0.2, "jaw with the trigger fully pressed (rad; < 0 squeezes)",
                                  lo=-0.698, hi=1.396)
    jaw_rate_deg_s: float = param(720.0, "jaw rate limit while following (dVRK)", lo=1.0, hi=2000.0)
    jaw_rate_after_clutch_deg_s: float = param(36.0, "jaw rate limit after clutch-in until it has caught up (dVRK)",
                                               lo=1.0, hi=2000.0)
    jaw_caught_up_rad: float = param(0.02, "jaw within this of the trigger's value: full rate", lo=1e-4, hi=0.5)
    jaw_lead_max_rad: float = param(JAW_TRACKING_TOLERANCE - JAW_LEAD_MARGIN_RAD,
                                    "the jaw command stays within this of the measured jaw (rad): under the "
                                    "arm's jaw tracking-error fault, so an arm slower than the rate limit "
                                    "(a loaded twin, a blocked jaw) is never faulted by our commands",
                                    lo=0.01, hi=JAW_TRACKING_TOLERANCE)
    zoom_speed_m_s: float = param(0.01, "scope insertion speed at full left-stick deflection", lo=0.0, hi=0.05)
    stick_deadzone: float = param(0.2, "stick deflection ignored below this", lo=0.0, hi=0.9)
    psm_base_pose: tuple[float, ...] = param((), "PSM1_base in world: x y z qx qy qz qw (empty: from scene)")
    scene: str = param("", "sim scene to take psm_base_pose from when not given")
    camera_timeout_s: float = param(0.5, "/endoscope/measured_cp older than this: no clutch-in", lo=0.01, hi=10.0)
    max_hand_jump_m: float | None = param(None, "a hand pose this far from the previous sample is a tracking glitch: "
                                                "refused and counted (unset: followed at the step limit)", lo=1e-3)

    def __post_init__(self):
        check_ranges(self)
        for name in ("workspace_min_m", "workspace_max_m"):
            v = getattr(self, name)
            if len(v) != 3 or not all(math.isfinite(x) for x in v):
                raise ValueError(f"{name}: 3 finite numbers expected, got {v}")
        if any(lo >= hi for lo, hi in zip(self.workspace_min_m, self.workspace_max_m, strict=True)):
            raise ValueError("workspace_min_m must be below workspace_max_m on every axis")
        if self.psm_base_pose and len(self.psm_base_pose) != 7:
            raise ValueError(f"psm_base_pose: x y z qx qy qz qw expected, got {self.psm_base_pose}")
        if self.scene and self.scene not in contract.SCENES:
            raise ValueError(f"scene {self.scene!r} not in {contract.SCENES}")
