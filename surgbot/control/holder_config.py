"""The endoscope holder's configuration: one frozen dataclass, the one place for each default.

The `endoscope_holder` node declares its ROS parameters from it
(`surgbot.rosutil.declare_config`; `pivot.*` for the nested `PivotConfig`),
and `config/endoscope_holder.yaml` only overrides.  Angles a person sets are
in degrees (`_deg`, `_deg_s`, ...); everything else is SI, unit in the help.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from surgbot import contract
from surgbot.config import check_ranges, param
from surgbot.control.pivot_config import PivotConfig

N_BRIDGE_GAINS = len(contract.G1_UPPER_BODY)     # g1_bridge kp/kd: one per upper-body joint, contract order
# A pose's quaternion is read as a rotation (and normalised) only if its norm lies in this band:
# teleop sources send unnormalised quaternions; (0, 0, 0, 0) or a scaled vector is not a rotation.
ROTATION_QUAT_NORM = (0.5, 1.5)


def _is_rotation_quat(q) -> bool:
    lo, hi = ROTATION_QUAT_NORM
    return lo < math.sqrt(sum(x * x for x in q)) < hi


def _finite_positive(values) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)


@dataclass(frozen=True)
class HolderConfig:
    rate_hz: float = param(500.0, "Hz, control loop (the bridge's rt/arm_sdk rate)", lo=1.0, hi=5000.0)
    fulcrum: tuple[float, ...] | None = param(
        None, "m, [x, y, z] port in world; unset: captured at the first joint state, entry_depth behind the tip")
    entry_depth: float = param(0.05, "m, tip ahead of the fulcrum when capturing it", lo=0.0)
    pivot: PivotConfig = param(PivotConfig(), "pivot IK gains and limits")
    teleop_timeout_s: float = param(contract.ENDOSCOPE_TELEOP_TIMEOUT_S,
                                    "s without a servo command: TELEOP -> HOLD", lo=0.0)
    servo_cv_hold_s: float = param(0.05, "s a servo_cv velocity applies after its message", lo=0.0)
    max_angular_speed_deg: float = param(45.0, "deg/s, setpoint pan/tilt/roll speed", lo=0.0)
    # the fulcrum tests (test_endoscope_holder_core) and the bench's view sequences (fulcrum
    # error p99 < 1 mm) are measured at this acceleration
    max_angular_accel_deg: float = param(90.0, "deg/s^2, setpoint angular acceleration (smooth starts/stops "
                                               "keep the arm on the fulcrum)", lo=0.0)
    max_insertion_speed: float = param(0.04, "m/s, setpoint insertion speed", lo=0.0)
    max_insertion_accel: float = param(0.06, "m/s^2, setpoint insertion acceleration", lo=0.0)
    max_servo_cv_angular: float = param(1.0, "rad/s, a larger servo_cv angular velocity is rejected", lo=0.0)
    max_servo_cv_linear: float = param(0.1, "m/s, a larger servo_cv insertion velocity is rejected", lo=0.0)
    tremor_notch_hz: tuple[float, ...] = param((6.5, 8.5, 11.5), "Hz, notch centres over the tremor band")
    tremor_notch_q: float = param(1.5, "quality (centre / bandwidth) of every tremor notch", lo=0.1)
    tremor_lowpass_hz: float = param(40.0, "Hz, low-pass above the tremor band", lo=0.1)
    bridge_kp: tuple[float, ...] | None = param(
        None, "the g1_bridge kp (17, its order) if not its defaults: sizes the integral action")
    bridge_kd: tuple[float, ...] | None = param(None, "the g1_bridge kd (17, its order) if not its defaults")
    integral_stability: float = param(0.6, "per joint ki <= this * kd / M_jj (PID stability: ki < kd / I)", lo=0.0)
    accel_feedforward: bool = param(True, "q offset M(q) ddq / kp, so the bridge's PD supplies the inertia torque")
    accel_filter_hz: float = param(30.0, "Hz, low-pass of the reference acceleration", lo=0.1)
    command_lead_s: float = param(0.006, "s, the q command leads by dq * lead (covers the link delay)", lo=0.0)
    integral_gain: float = param(15.0, "1/s, upper bound of the joint-space sag correction (60 limit-cycles "
                                       "with >= 8 ms link delay)", lo=0.0)
    integral_limit: float = param(0.25, "rad, integrator anti-windup", lo=0.0)
    fault_fulcrum_error: float = param(0.015, "m, measured fulcrum error sustained fault_persist_s -> FAULT "
                                              "(FACTS: > 20 mm injures)", lo=0.0)
    fault_persist_s: float = param(0.5, "s the fulcrum error must last before FAULT", lo=0.0)
    joint_state_timeout_s: float = param(0.1, "s without a joint state -> FAULT (the arm holds)", lo=0.0)
    pause_if_state_older_s: float = param(0.015, "s, an older measurement holds the last command instead of "
                                                 "running ahead", lo=0.0)
    joint_state_period_s: float = param(
        1.0 / contract.G1_JOINT_STATES_HZ,
        "s of robot time each joint state stands for (g1_bridge state_publish_hz: one state per this much robot "
        "tick); the reference advances at most this much per state received, so it never runs ahead of a robot "
        "or twin slower than the wall clock; 0: paced by the wall clock alone", lo=0.0)
    rejection_log_period_s: float = param(1.0, "s, a refused stream input (servo, head, tool tip, joint state) is "
                                               "logged at most this often per input; all are counted", lo=0.0)
    deadman_button: int = param(0, "/teleop/buttons index held for HEAD_FOLLOW", lo=0)
    head_pan_gain: float = param(1.0, "view pan per head yaw (rad/rad)")
    head_tilt_gain: float = param(1.0, "view tilt per head pitch (rad/rad)")
    head_zoom_gain: float = param(0.5, "insertion per forward head motion (m/m)")
    psm_base_pose: tuple[float, ...] | None = param(
        None, "[x y z qx qy qz qw] of PSM1_base in world (TOOL_FOLLOW); unset: no tool follow")
    tool_deadband_out_deg: float = param(8.0, "deg off the optical axis: start re-centring the tool", lo=0.0)
    tool_deadband_in_deg: float = param(2.0, "deg off the optical axis: stop re-centring", lo=0.0)
    tool_speed_deg: float = param(15.0, "deg/s, view turn speed while re-centring on the tool", lo=0.0)
    psm_timeout_s: float = param(0.5, "s, an older PSM tip is not followed", lo=0.0)

    def __post_init__(self):
        check_ranges(self)
        for name in ("fulcrum", "psm_base_pose", "tremor_notch_hz", "bridge_kp", "bridge_kd"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(float(x) for x in v))
        if self.fulcrum is not None and (len(self.fulcrum) != 3 or not all(map(math.isfinite, self.fulcrum))):
            raise ValueError(f"fulcrum must be 3 finite numbers [x, y, z] m, got {self.fulcrum}")
        if self.psm_base_pose is not None:
            p = self.psm_base_pose
            if len(p) != 7 or not all(map(math.isfinite, p)) or not _is_rotation_quat(p[3:]):
                raise ValueError(f"psm_base_pose must be [x y z qx qy qz qw] with a unit quaternion, got {p}")
        for name in ("bridge_kp", "bridge_kd"):
            v = getattr(self, name)
            if v is not None and (len(v) != N_BRIDGE_GAINS or not _finite_positive(v)):
                raise ValueError(f"{name}: {N_BRIDGE_GAINS} positive gains in g1_bridge order expected, got {v}")
        if not self.tremor_notch_hz or not _finite_positive(self.tremor_notch_hz):
            raise ValueError(f"tremor_notch_hz must be positive frequencies, got {self.tremor_notch_hz}")
        if max(self.tremor_notch_hz + (self.tremor_lowpass_hz,)) >= self.rate_hz / 2:
            raise ValueError("tremor filter frequencies must be below half of rate_hz (Nyquist)")
        lo, hi = self.pivot.depth_range
        if not lo <= self.entry_depth <= hi:
            raise ValueError(f"entry_depth {self.entry_depth} m is outside pivot.depth_range [{lo}, {hi}] m")
        if self.tool_deadband_in_deg > self.tool_deadband_out_deg:
            raise ValueError("tool_deadband_in_deg must not exceed tool_deadband_out_deg (hysteresis)")
        if self.pause_if_state_older_s > self.joint_state_timeout_s:
            raise ValueError("pause_if_state_older_s must not exceed joint_state_timeout_s")
        for name in ("rate_hz", "max_angular_speed_deg", "max_angular_accel_deg", "max_insertion_speed",
                     "max_insertion_accel", "accel_filter_hz", "tremor_notch_q", "tremor_lowpass_hz"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("entry_depth", "teleop_timeout_s", "servo_cv_hold_s", "max_servo_cv_angular",
                     "max_servo_cv_linear", "integral_stability", "command_lead_s", "integral_gain",
                     "integral_limit", "fault_fulcrum_error", "fault_persist_s", "joint_state_timeout_s",
                     "pause_if_state_older_s", "joint_state_period_s", "deadman_button", "tool_speed_deg",
                     "psm_timeout_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def dt(self) -> float:
        """s, one control period."""
        return 1.0 / self.rate_hz

    @property
    def tremor_notches(self) -> tuple[tuple[float, float], ...]:
        """(centre Hz, quality) per notch, as `TremorFilter` takes them."""
        return tuple((f, self.tremor_notch_q) for f in self.tremor_notch_hz)
