"""`ArmLoop`: the in-process MuJoCo loop the holder's core tests and the endoscope bench share.

The scene model from `sim.scene` (same MJCF the twin serves), the G1 held by the
twin's standing PD (`sim.g1_motors.STAND_KP/KD` with gravity feed-forward) and
the upper body driven, like `rt/arm_sdk` at weight 1 from `g1_bridge`, by a PD
toward the holder's joint command with the bridge's own gains
(`surgbot.control.g1_arm.DEFAULT_KP/KD`), its per-joint speed limit and,
optionally, its gravity feed-forward (off: the holder's integrator must remove
the sag alone), with a command delay standing in for the DDS round trip.
Ground truth is read from MuJoCo's sites, never from the controller.
"""

from __future__ import annotations

from collections import deque

import mujoco
import numpy as np

from surgbot import contract
from surgbot.control.endoscope_holder import EndoscopeHolderCore, HolderConfig
from surgbot.control.g1_arm import DEFAULT_KD, DEFAULT_KP
from surgbot.control.pivot_config import PivotConfig
from surgbot.kinematics.g1_arm import RIGHT_ARM_JOINTS, WAIST_JOINTS, G1ScopeArm
from surgbot.sim import scene as scenes
from surgbot.sim.g1_motors import STAND_KD, STAND_KP

BRIDGE_MAX_VELOCITY = 2.0     # rad/s: g1_bridge `max_velocity` the holder needs (default 0.5)


def loop_holder_config(port, use_waist: bool = True, **holder_overrides) -> HolderConfig:
    """The in-process loops' holder config: the fulcrum at the scene's port, the right arm and (at
    half weight in the IK) the waist; `holder_overrides` replace HolderConfig fields."""
    active = (WAIST_JOINTS if use_waist else ()) + RIGHT_ARM_JOINTS
    return HolderConfig(fulcrum=tuple(port), pivot=PivotConfig(
        active_joints=active, joint_weights={n: 0.5 for n in WAIST_JOINTS if n in active}), **holder_overrides)


class ArmLoop:
    """Steps MuJoCo at 500 Hz with the holder core in the loop (no threads, no DDS)."""

    def __init__(self, scene: str = "box_trainer", seed: int = 0, delay_steps: int = 2,
                 use_waist: bool = True, holder_config=None, gravity_ff: bool = True,
                 max_velocity: float = BRIDGE_MAX_VELOCITY):
        self.model = scenes.build_model(scene, seed)
        self.data = mujoco.MjData(self.model)
        scenes.reset_to_stand(self.model, self.data)
        m = self.model
        names = contract.G1_JOINT_NAMES
        self.names = names
        self.qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in names])
        self.dadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in names])
        self.act = np.array([m.actuator(n).id for n in names])     # motor actuators named like the joints
        self.stand = self.data.qpos[self.qadr].copy()
        self.kp = STAND_KP.copy()
        self.kd = STAND_KD.copy()
        self.bridge_kp = self.kp.copy()
        self.bridge_kd = self.kd.copy()
        self.bridge_kp[list(contract.G1_UPPER_BODY)] = DEFAULT_KP
        self.bridge_kd[list(contract.G1_UPPER_BODY)] = DEFAULT_KD
        self.gravity_ff = gravity_ff
        self.max_velocity = max_velocity
        self.q_goal = None
        self.tip_site = m.site("endoscope_tip").id
        self.port = self.data.site("scope_port").xpos.copy()
        self.disturbance = np.zeros(len(names))
        self.q_des = self.stand.copy()
        self.q_goal = self.stand.copy()
        self.dq_des = np.zeros(len(names))
        self.driven = np.zeros(len(names), dtype=bool)
        self._queue: deque = deque()
        self.delay_steps = delay_steps
        reference = {n: float(self.stand[i]) for i, n in enumerate(names)}
        self.arm = G1ScopeArm(reference=reference)
        if holder_config is None:
            holder_config = loop_holder_config(self.port, use_waist)
        self.core = EndoscopeHolderCore(self.arm, holder_config)
        self.index = contract.G1_INDEX
        self.t = 0.0
        # the port/nostril pushes back on the shaft as in the twin (sim/entry_point.py)
        from surgbot.sim.entry_point import EntryModel
        self.entry = EntryModel(m)
        self.entry_contact = self.entry.contact(self.data)
        # False: the holder gets no joint states (a lost /g1/joint_states link), the loop still runs
        self.measuring = True
        self.last_command = None        # the holder's latest output (names, q, dq) or None
        self.steps_per_control = max(1, int(round(1.0 / (holder_config.rate_hz * m.opt.timestep))))

    # ground truth ---------------------------------------------------------
    def tip(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.site_xpos[self.tip_site].copy(), self.data.site_xmat[self.tip_site].reshape(3, 3).copy()

    def entry_force(self) -> float:
        """|force| the scope puts on the port/nostril tissue at the last physics step, N (ground truth)."""
        return self.entry_contact.magnitude

    def fulcrum_error(self) -> float:
        """Distance of the sim's port site from the shaft line (ground truth)."""
        p, R = self.tip()
        d = self.port - p
        z = R[:, 2]
        return float(np.linalg.norm(d - np.dot(d, z) * z))

    # loop -----------------------------------------------------------------
    def step(self) -> None:
        """One control period: measure, run the core, apply (delayed) command, step physics."""
        q = self.data.qpos[self.qadr]
        if self.measuring:
            self.core.update_joint_state(self.names, q, self.t)
        out = self.core.step(self.t)
        self.last_command = out
        self._queue.append(out)
        if len(self._queue) > self.delay_steps:
            cmd = self._queue.popleft()
            if cmd is not None:
                jn, qp, qv = cmd
                for n, a, b in zip(jn, qp, qv, strict=True):
                    i = self.index[n]
                    if not self.driven[i]:
                        self.q_des[i] = self.data.qpos[self.qadr[i]]
                    self.q_goal[i] = a
                    self.dq_des[i] = b
                    self.driven[i] = True
        # the bridge moves its target toward the goal at most max_velocity
        dt = self.steps_per_control * self.model.opt.timestep
        step = np.clip(self.q_goal - self.q_des, -self.max_velocity * dt, self.max_velocity * dt)
        self.q_des = np.where(self.driven, self.q_des + step, self.q_des)
        for _ in range(self.steps_per_control):
            self._physics()
        self.t = float(self.data.time)

    def _physics(self) -> None:
        d = self.data
        q = d.qpos[self.qadr]
        dq = d.qvel[self.dadr]
        tau_ff = d.qfrc_bias[self.dadr].copy()
        kp = self.kp.copy()
        kd = self.kd.copy()
        if not self.gravity_ff:
            tau_ff[self.driven] = 0.0
        kp[self.driven] = self.bridge_kp[self.driven]
        kd[self.driven] = self.bridge_kd[self.driven]
        tau = tau_ff + kp * (self.q_des - q) + kd * (self.dq_des * self.driven - dq)
        d.ctrl[self.act] = tau
        d.qfrc_applied[self.dadr] = self.disturbance
        self.entry_contact = self.entry.apply(d)
        mujoco.mj_step(self.model, d)

    def run(self, seconds: float, each=None) -> None:
        n = int(round(seconds / (self.steps_per_control * self.model.opt.timestep)))
        for _ in range(n):
            self.step()
            if each is not None:
                each(self)
