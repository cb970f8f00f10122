"""Defaults of the G1 bridge core, one documented field each (the g1_bridge node's ROS parameters).

The bridge's own parameters (DDS domain, interface, rates of its topics) are
`G1BridgeNodeConfig` in surgbot/nodes/g1_bridge.py; `G1BridgeCore`
(surgbot/control/g1_bridge.py) shapes targets and stops with these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from surgbot import contract
from surgbot.config import check_ranges, param
from surgbot.control.g1_arm import DEFAULT_KD, DEFAULT_KP, N_UPPER

# an arm joint's speed falls to 5 % in 3 time constants of a controlled safety stop: inside the
# contract's e-stop budget (section 8: 50 ms) with room for the supervisor's detection and the DDS hop
SAFETY_STOP_MAX_TIME_CONSTANT_S = 0.015


@dataclass(frozen=True)
class G1BridgeConfig:
    """Target shaping and safety of the bridge core (ROS parameters of the g1_bridge node)."""

    kp: tuple[float, ...] = param(tuple(DEFAULT_KP.tolist()), "arm_sdk kp per upper-body joint (17, contract order)")
    kd: tuple[float, ...] = param(tuple(DEFAULT_KD.tolist()), "arm_sdk kd per upper-body joint (17, contract order)")
    max_velocity: float = param(0.5, "rad/s, every target moves toward its goal at most this fast (Unitree's "
                                     "arm_sdk example figure)", lo=1e-6)
    ramp_time: float = param(2.0, "s, engage 0 -> 1 and release 1 -> 0 weight ramps", lo=1e-6)
    stale_after: float = param(0.05, "s, rt/lowstate older than this while streaming -> FAULT (contract "
                                     "section 8)", lo=1e-6)
    rate_hz: float = param(contract.G1_LOWSTATE_HZ, "Hz, rt/arm_sdk stream while engaged", lo=1.0)
    command_timeout: float = param(0.1, "s a command's velocity feed-forward applies", lo=0.0)
    safety_stop_time_constant: float = param(
        0.012, "s, a safety stop damps the joints of a moving arm to rest with this time constant (the waist "
               "slower: safety_stop_max_kd), along the "
               "path it was on (surgbot/control/safe_stop.py; 0 freezes at once with the arm's own gains); an "
               "arm joint's speed is at 5 % after 3 of them, inside the contract's 50 ms e-stop budget",
        lo=0.0, hi=SAFETY_STOP_MAX_TIME_CONSTANT_S)
    safety_stop_max_kd: float = param(
        20.0, "N*m*s/rad, a safety stop raises no joint's kd above this (nor above the joint's own kd if that "
              "is higher): binds on the waist (5 -> 20, ~40 ms; to confirm on hardware: the motor drivers' "
              "velocity noise times kd)", lo=0.0)
    release_on_shutdown: bool = param(False, "true: shutdown ramps the weight to 0 (drops the arm); false: "
                                             "the robot holds the last targets (the scope stays put)")

    def __post_init__(self):
        check_ranges(self)       # every scalar: finite and inside its param(lo=, hi=); the gains have no bounds
        for name in ("kp", "kd"):
            v = tuple(float(x) for x in getattr(self, name))
            object.__setattr__(self, name, v)
            if len(v) != N_UPPER or not all(math.isfinite(x) and x >= 0 for x in v):
                raise ValueError(f"{name} must be {N_UPPER} finite gains >= 0 (upper-body contract order)")

    @property
    def dt(self) -> float:
        """s, one stream period."""
        return 1.0 / self.rate_hz
