"""`BridgeLoop`: the holder core, the real `G1BridgeCore` and the twin's motor layer in one MuJoCo loop.

`ArmLoop` stands in for the bridge with a PD of its gains; this loop runs the
bridge core itself (its target shaping, its safety stop and its gravity
feed-forward) and applies its `rt/arm_sdk` samples the way the twin
does (`sim.g1_motors.StandingController`: the standing PD blended with the
arm_sdk record by its weight), with `delay_steps` control periods of delay
on each hop (holder -> bridge, bridge -> robot) for the DDS round trips.
No threads, no DDS: what the controllers do when they keep real time, or,
with `stall_from(seed)`, when the bridge and the holder are starved of the
CPU now and then as on the loaded 2-core machine of the fault suite (the
robot keeps the last sample meanwhile, as the twin and the G1's motor
drivers do).  Ground truth from MuJoCo's sites.
"""

from __future__ import annotations

from collections import deque

import mujoco
import numpy as np

from surgbot import contract
from surgbot.bench.arm_loop import BRIDGE_MAX_VELOCITY, loop_holder_config
from surgbot.control.endoscope_holder import TOOL_FOLLOW, EndoscopeHolderCore
from surgbot.control.g1_arm import UPPER_SLICE, GravityModel
from surgbot.control.g1_bridge import G1BridgeCore
from surgbot.kinematics.g1_arm import G1ScopeArm
from surgbot.sim import scene as scenes
from surgbot.sim.entry_point import EntryModel
from surgbot.sim.g1_motors import StandingController

# the engage ramp is not what this loop measures: shorter than the shipped 2 s to save time
LOOP_RAMP_S = 0.5
# a PSM tool tip tracing a square in the image plane, each side in this many seconds: the
# scope follows at ~13 mm/s, the speed the fault suite's policy-driven TOOL_FOLLOW reaches
TOOL_SIDE_S = 0.85
TOOL_HALF_SIDE_M = 0.02
# stalls of the bridge and the holder (`stall_from`): each control period one starts with this
# probability and lasts a uniform draw from STALL_MS; the loaded fault rig's bridge stream showed
# gaps up to 31 ms (session 39's trace), this is about one every 70 ms
STALL_PROBABILITY = 0.03
STALL_MS = (8.0, 32.0)
# with stalls, seed s stops the arm this far into TOOL_FOLLOW: the seeds spread the stop over the square
STALLED_FOLLOW_S = (0.5, 0.29)     # (first, step per seed)
_RECORD = [("q", "f8"), ("dq", "f8"), ("kp", "f8"), ("kd", "f8"), ("tau", "f8")]


class BridgeLoop:
    """Steps MuJoCo at the bridge's 500 Hz: lowstate -> bridge and holder -> commands -> torques."""

    def __init__(self, scene: str = "box_trainer", delay_steps: int = 2, **bridge_overrides):
        m = self.model = scenes.build_model(scene, 0)
        d = self.data = mujoco.MjData(m)
        scenes.reset_to_stand(m, d)
        names = self.names = contract.G1_JOINT_NAMES
        self.qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in names])
        self.dadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in names])
        self.act = np.array([m.actuator(n).id for n in names])
        stand = d.qpos[self.qadr].copy()
        self.standing = StandingController(stand)
        self.entry = EntryModel(m)
        self.port = d.site("scope_port").xpos.copy()
        self.tip_site = m.site("endoscope_tip").id
        model = GravityModel()
        overrides = {"max_velocity": BRIDGE_MAX_VELOCITY, "ramp_time": LOOP_RAMP_S, **bridge_overrides}
        self.bridge = G1BridgeCore(gravity=model, inertia=model.inertia_diagonal, **overrides)
        self.holder = EndoscopeHolderCore(G1ScopeArm(reference={n: float(stand[i]) for i, n in enumerate(names)}),
                                          loop_holder_config(self.port, psm_base_pose=(0, 0, 0, 0, 0, 0, 1)))
        self.dt = 1.0 / self.bridge.config.rate_hz
        self.steps_per_control = max(1, int(round(self.dt / m.opt.timestep)))
        self.delay_steps = delay_steps
        self._to_bridge: deque = deque()
        self._to_robot: deque = deque()
        self._record = np.zeros(contract.G1_NUM_JOINTS, dtype=_RECORD)
        self._weight = 0.0
        self._tick = 0
        self.tool = None            # the PSM tip the holder sees (PSM1_base = world here), or None
        self._move = None           # how the tool moves (follow_a_moving_tool sets it)
        self.t = 0.0
        self._stalls: np.random.Generator | None = None
        self._stalled_until = -1.0

    def stall_from(self, seed: int | None) -> None:
        """From now on the bridge and the holder stall now and then (seeded; None: never)."""
        self._stalls = None if seed is None else np.random.default_rng(seed)

    def _stalled(self) -> bool:
        if self._stalls is not None and self.t >= self._stalled_until and self._stalls.random() < STALL_PROBABILITY:
            self._stalled_until = self.t + self._stalls.uniform(*STALL_MS) / 1e3
        return self.t < self._stalled_until

    # ground truth ---------------------------------------------------------
    def tip(self) -> np.ndarray:
        return self.data.site_xpos[self.tip_site].copy()

    def tip_frame(self) -> np.ndarray:
        return self.data.site_xmat[self.tip_site].reshape(3, 3).copy()

    # loop -----------------------------------------------------------------
    def step(self) -> None:
        if self._stalled():
            self._physics()
            return
        d = self.data
        q, dq = d.qpos[self.qadr].copy(), d.qvel[self.dadr].copy()
        self._tick += 1
        self.bridge.on_lowstate(q, dq, self._tick, self.t, d.qpos[3:7].copy())
        self.holder.update_joint_state(self.names, q, self.t)
        if self.tool is not None:
            self.holder.psm_tip(self.tool, "PSM1_base", self.t)
        self._to_bridge.append(self.holder.step(self.t))
        if len(self._to_bridge) > self.delay_steps and (cmd := self._to_bridge.popleft()) is not None:
            self.bridge.command(cmd[0], cmd[1], cmd[2], self.t)
        self._to_robot.append(self.bridge.step(self.t))
        if len(self._to_robot) > self.delay_steps and (sdk := self._to_robot.popleft()) is not None:
            r = self._record
            r["q"][UPPER_SLICE], r["dq"][UPPER_SLICE], r["tau"][UPPER_SLICE] = sdk.q, sdk.dq, sdk.tau
            r["kp"][UPPER_SLICE], r["kd"][UPPER_SLICE] = sdk.kp, sdk.kd
            self._weight = sdk.weight
        self._physics()

    def _physics(self) -> None:
        """One control period of the robot: its motors apply the last arm_sdk sample received."""
        d = self.data
        for _ in range(self.steps_per_control):
            q, dq = d.qpos[self.qadr], d.qvel[self.dadr]
            d.ctrl[self.act] = self.standing.torques(d.time, q, dq, d.qfrc_bias[self.dadr],
                                                     self._record if self._weight > 0 else None, self._weight)
            self.entry.apply(d)
            mujoco.mj_step(self.model, d)
        self.t = float(d.time)

    def run(self, seconds: float, each=None) -> None:
        for _ in range(int(round(seconds / self.dt))):
            self.step()
            if each is not None:
                each(self)

    # scenarios ------------------------------------------------------------
    def engaged_holding(self, settle_s: float = 1.0) -> None:
        """Engage the bridge, ramp to full weight, HOLD and settle."""
        self.run(0.3)
        ok = self.bridge.engage(self.t)
        assert ok, ok.reason
        self.run(LOOP_RAMP_S + 0.2)
        ok = self.holder.set_hold(True)
        assert ok, ok.reason
        self.run(settle_s)

    def follow_a_moving_tool(self, seconds: float) -> None:
        """TOOL_FOLLOW of a tool tip tracing a square ahead of the scope for `seconds`."""
        p0, R0 = self.tip(), self.tip_frame()
        centre = p0 + 0.05 * R0[:, 2] + 0.008 * R0[:, 0]
        corners = [centre + TOOL_HALF_SIDE_M * (a * R0[:, 0] + b * R0[:, 1])
                   for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        ok = self.holder.set_follow_tool(True)
        assert ok and self.holder.mode == TOOL_FOLLOW, ok.reason
        t0 = self.t

        def move(lp: BridgeLoop) -> None:
            s = (lp.t - t0) / TOOL_SIDE_S
            k, a = int(s) % 4, s - int(s)
            lp.tool = corners[k] + a * (corners[(k + 1) % 4] - corners[k])

        self.run(seconds, move)
        self._move = move

    def safety_stop_displacement(self, window_s: float = 1.0) -> tuple[float, float]:
        """Stop the bridge and the holder as `/safety/state` ESTOP does, the tool still moving;
        returns (max scope-tip displacement over `window_s` after the stop, tip speed just before), mm
        and mm/s."""
        before = self.tip()
        self.run(0.02, self._move)
        speed = float(np.linalg.norm(self.tip() - before) / 0.02 * 1e3)
        p0 = self.tip()
        self.bridge.set_safety("ESTOP: e-stop requested", self.t)
        self.holder.set_safety("ESTOP: e-stop requested")
        worst = [0.0]

        def watch(lp: BridgeLoop) -> None:
            self._move(lp)
            worst[0] = max(worst[0], float(np.linalg.norm(lp.tip() - p0)))

        self.run(window_s, watch)
        return worst[0] * 1e3, speed


def estop_in_tool_follow(follow_s: float, stall_seed: int | None = None, **bridge_overrides) -> tuple[float, float]:
    """(scope-tip displacement after an e-stop `follow_s` into TOOL_FOLLOW, mm; tip speed before, mm/s);
    with `stall_seed`, the bridge and holder stall now and then from the start of TOOL_FOLLOW on."""
    loop = BridgeLoop(**bridge_overrides)
    loop.engaged_holding()
    loop.stall_from(stall_seed)
    loop.follow_a_moving_tool(follow_s)
    return loop.safety_stop_displacement()


def estop_with_stalls(seed: int, **bridge_overrides) -> float:
    """Scope-tip displacement (mm) after an e-stop in TOOL_FOLLOW with the bridge and holder stalling
    (`stall_from(seed)`), the stop at the seed's moment of the motion (STALLED_FOLLOW_S)."""
    first, step = STALLED_FOLLOW_S
    return estop_in_tool_follow(first + step * seed, stall_seed=seed, **bridge_overrides)[0]


if __name__ == "__main__":   # python -m surgbot.bench.bridge_loop [time_constant_s ...] (none: the default)
    import sys
    for arg in sys.argv[1:] or [None]:
        kw = {} if arg is None else {"safety_stop_time_constant": float(arg)}
        print(arg or "default", [estop_in_tool_follow(f, **kw) for f in (0.5, 1.3, 2.3)])
        stalled = [estop_with_stalls(s, **kw) for s in range(16)]
        print(f"  stalled, 16 seeds: median {np.median(stalled):.2f} mm, max {max(stalled):.2f} mm")
