"""Endoscope holder figures: controller step time, CasADi+IPOPT comparison, HOLD drift.

Also home of `ArmLoop`, the in-process MuJoCo loop the core tests share: the
scene model from `sim.scene` (same MJCF the twin serves), the G1 held by the
twin's standing PD (`sim.g1_twin.STAND_KP/KD` with gravity feed-forward) and
the upper body driven, like `rt/arm_sdk` at weight 1 from `g1_bridge`, by a PD
toward the holder's joint command with the bridge's own gains
(`surgbot.control.g1_bridge.DEFAULT_KP/KD`), its per-joint speed limit and,
optionally, its gravity feed-forward (off: the holder's integrator must remove
the sag alone), with a command delay standing in for the DDS round trip.  Ground truth is read from MuJoCo's sites, never from
the controller.
"""

from __future__ import annotations

import time
from collections import deque

import mujoco
import numpy as np

import bench

BRIDGE_MAX_VELOCITY = 2.0     # rad/s: g1_bridge `max_velocity` the holder needs (default 0.5)


class ArmLoop:
    """Steps MuJoCo at 500 Hz with the holder core in the loop (no threads, no DDS)."""

    def __init__(self, scene: str = "box_trainer", seed: int = 0, delay_steps: int = 2,
                 use_waist: bool = True, holder_config=None, gravity_ff: bool = True,
                 max_velocity: float = BRIDGE_MAX_VELOCITY):
        from sim import scene as scenes
        from sim.g1_twin import STAND_KD, STAND_KP
        from surgbot import contract
        from surgbot.control.endoscope_holder import EndoscopeHolderCore, HolderConfig
        from surgbot.control.pivot import PivotConfig
        from surgbot.kinematics.g1_arm import G1ScopeArm, RIGHT_ARM_JOINTS, WAIST_JOINTS

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
        from surgbot.control.g1_bridge import DEFAULT_KD, DEFAULT_KP
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
            active = (WAIST_JOINTS if use_waist else ()) + RIGHT_ARM_JOINTS
            holder_config = HolderConfig(fulcrum=tuple(self.port),
                                         pivot=PivotConfig(active_joints=active,
                                                           joint_weights={n: 0.5 for n in WAIST_JOINTS}))
        self.core = EndoscopeHolderCore(self.arm, holder_config)
        self.index = contract.G1_INDEX
        self.t = 0.0
        self.steps_per_control = max(1, int(round(1.0 / (holder_config.rate_hz * m.opt.timestep))))

    # ground truth ---------------------------------------------------------
    def tip(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.site_xpos[self.tip_site].copy(), self.data.site_xmat[self.tip_site].reshape(3, 3).copy()

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
        self.core.update_joint_state(self.names, q, self.t)
        out = self.core.step(self.t)
        self._queue.append(out)
        if len(self._queue) > self.delay_steps:
            cmd = self._queue.popleft()
            if cmd is not None:
                jn, qp, qv = cmd
                for n, a, b in zip(jn, qp, qv):
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
        mujoco.mj_step(self.model, d)

    def run(self, seconds: float, each=None) -> None:
        n = int(round(seconds / (self.steps_per_control * self.model.opt.timestep)))
        for _ in range(n):
            self.step()
            if each is not None:
                each(self)


# --------------------------------------------------------------------- bench
def run(quick: bool) -> list[dict]:
    figs = []
    figs += _step_time_and_casadi(quick)
    figs += _hold_drift(quick)
    return figs


def _step_time_and_casadi(quick: bool) -> list[dict]:
    from bench.endoscope_casadi import casadi_comparison
    return casadi_comparison(quick)


def _hold_drift(quick: bool) -> list[dict]:
    seconds = 20.0 if quick else 600.0
    loop = ArmLoop("box_trainer")
    rng = np.random.default_rng(1)
    loop.run(1.0)
    loop.core.set_hold(True)
    loop.run(3.0)
    arm_names = [n for n in loop.names if n.startswith("right_") and "hip" not in n and "knee" not in n and "ankle" not in n]
    p0, _ = loop.tip()
    samples = []
    errs = []
    next_change = [0.0]

    def each(lp):
        if lp.t >= next_change[0]:
            lp.disturbance[:] = 0.0
            j = rng.choice(arm_names)
            lp.disturbance[lp.index[j]] = rng.choice([-1.0, 1.0])
            next_change[0] = lp.t + rng.uniform(1.0, 3.0)
        samples.append(lp.tip()[0])
        errs.append(lp.fulcrum_error())

    t0 = time.perf_counter()
    loop.run(seconds, each)
    wall = time.perf_counter() - t0
    P = np.array(samples)
    drift = float(np.linalg.norm(P[-500:].mean(0) - p0))
    jitter = float(np.sqrt(np.mean(np.sum((P - P.mean(0)) ** 2, axis=1))))
    return [
        bench.figure("endoscope.hold_drift", "mm", value=drift * 1e3,
                     note=f"{seconds:.0f} s simulated, 1 Nm random steps on right-arm joints every 1-3 s"),
        bench.figure("endoscope.hold_jitter_rms", "mm", value=jitter * 1e3),
        bench.figure("endoscope.hold_fulcrum_error", "mm", samples=np.array(errs) * 1e3),
        bench.figure("endoscope.hold_sim_rtf", "x", value=seconds / wall, higher_is_better=True,
                     note="in-process MuJoCo + holder core, real-time factor"),
    ]
