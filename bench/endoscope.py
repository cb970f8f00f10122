"""Endoscope holder figures: controller step time, CasADi+IPOPT comparison, HOLD drift.

Also home of `ArmLoop`, the in-process MuJoCo loop the core tests share: the
scene model from `sim.scene` (same MJCF the twin serves), the G1 held by the
twin's standing PD (`sim.g1_twin.STAND_KP/KD` with gravity feed-forward) and
the upper body driven, like `rt/arm_sdk` at weight 1 from `g1_bridge`, by a PD
toward the holder's joint command with the bridge's own gains
(`surgbot.control.g1_arm.DEFAULT_KP/KD`), its per-joint speed limit and,
optionally, its gravity feed-forward (off: the holder's integrator must remove
the sag alone), with a command delay standing in for the DDS round trip.
Ground truth is read from MuJoCo's sites, never from the controller.
"""

from __future__ import annotations

import time
from collections import deque

import mujoco
import numpy as np
import pinocchio as pin

from surgbot import bench, contract
from surgbot.control.endoscope_holder import EndoscopeHolderCore, HolderConfig
from surgbot.control.g1_arm import DEFAULT_KD, DEFAULT_KP
from surgbot.control.pivot import PivotConfig
from surgbot.geometry import matrix_to_quat
from surgbot.kinematics.g1_arm import RIGHT_ARM_JOINTS, WAIST_JOINTS, G1ScopeArm
from surgbot.sim import scene as scenes
from surgbot.sim.g1_twin import STAND_KD, STAND_KP

BRIDGE_MAX_VELOCITY = 2.0     # rad/s: g1_bridge `max_velocity` the holder needs (default 0.5)
ENTRY_FORCE_GOAL_N = 0.5      # issue 19: force on the nostril under HOLD with 1 Nm disturbances and views


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
            active = (WAIST_JOINTS if use_waist else ()) + RIGHT_ARM_JOINTS
            holder_config = HolderConfig(fulcrum=tuple(self.port),
                                         pivot=PivotConfig(active_joints=active,
                                                           joint_weights={n: 0.5 for n in WAIST_JOINTS if n in active}))
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


# --------------------------------------------------------------------- bench
def run(quick: bool) -> list[dict]:
    figs = []
    figs += _step_time_and_casadi(quick)
    figs += _view_sequence(quick)
    figs += _hold_drift(quick)
    figs += _entry_force_hold(quick)
    return figs


def _view_sequence(quick: bool) -> list[dict]:
    """The acceptance sequence: pan/tilt +-25 deg, insertion +-30 mm, roll +-45 deg (60 s in full)."""
    figs = []
    for scene in (("box_trainer",) if quick else ("box_trainer", "endonasal")):
        probe = ArmLoop(scene)
        hc = HolderConfig(fulcrum=tuple(probe.port),
                          pivot=PivotConfig(active_joints=WAIST_JOINTS + RIGHT_ARM_JOINTS,
                                            joint_weights={n: 0.5 for n in WAIST_JOINTS},
                                            depth_range=(0.015, 0.15)))
        loop = ArmLoop(scene, holder_config=hc)
        loop.run(0.3)
        loop.core.set_hold(True)
        loop.run(1.5)
        c = loop.core
        v0 = c.setpoint.copy()
        moves = [(25, 0, 0, 0), (-25, 0, 0, 0), (0, 25, 0, 0), (0, -25, 0, 0),
                 (0, 0, 0.03, 0), (0, 0, -0.03, 0), (0, 0, 0, 45), (0, 0, 0, -45)]
        if quick:
            moves = moves[:2]
        dwell = 7.5 if not quick else 3.0            # 8 x 7.5 s = 60 s
        ferr, pos_err, rot_err, force = [], [], [], []
        for mv in moves:
            tgt, _ = c.ik.move_view(v0, np.radians(mv[0]), np.radians(mv[1]), mv[2], np.radians(mv[3]))
            p, R = tgt.tip_position(loop.port), tgt.rotation
            quat = list(matrix_to_quat(R))
            loop.run(dwell - 0.3, lambda lp, p=p, quat=quat, ferr=ferr, force=force: (
                lp.core.servo_cp(p, quat, "world", lp.t), ferr.append(lp.fulcrum_error()),
                force.append(lp.entry_force())))
            loop.run(0.3, lambda lp, ferr=ferr, force=force: (ferr.append(lp.fulcrum_error()),
                                                              force.append(lp.entry_force())))
            tip, Rt = loop.tip()
            pos_err.append(np.linalg.norm(tip - p) * 1e3)
            rot_err.append(np.degrees(np.linalg.norm(pin.log3(Rt.T @ R))))
        figs += [
            bench.figure(f"endoscope.view_sequence_fulcrum_error.{scene}", "mm", samples=np.array(ferr) * 1e3,
                         note=f"{len(moves)} view changes, {len(moves) * dwell:.0f} s, ground truth; "
                              "acceptance p99 < 1.0, max < 2.0"),
            bench.figure(f"endoscope.view_sequence_target_error.{scene}", "mm", samples=pos_err,
                         note="tip position error at the end of each dwell (acceptance < 1 mm)"),
            bench.figure(f"endoscope.view_sequence_target_angle.{scene}", "deg", samples=rot_err,
                         note="orientation error at the end of each dwell (acceptance < 1 deg)"),
            bench.figure(f"endoscope.view_sequence_entry_force.{scene}", "N", samples=force,
                         anchor=ENTRY_FORCE_GOAL_N, anchor_source="goal < 0.5 N at the nostril (issue 19)",
                         note=f"force on the {'nostril' if scene == 'endonasal' else 'port'} tissue "
                              f"(stiffness {loop.entry.k:.0f} N/m, sim/entry_point.py), every 2 ms"),
        ]
    return figs


def casadi_fk(model, frame_id: int):
    """Tip pose as CasADi expressions of q, from the pinocchio model's joint placements and axes
    (pinocchio's own casadi module is not in the PyPI wheel)."""
    import casadi as ca  # the baseline's optional dependency: only this comparison needs it

    q = ca.SX.sym("q", model.nq)
    poses = [(ca.SX.eye(3), ca.SX.zeros(3, 1))]
    for j in range(1, model.njoints):
        jm = model.joints[j]
        kind = jm.shortname()
        axis = {"JointModelRX": (1.0, 0.0, 0.0), "JointModelRY": (0.0, 1.0, 0.0),
                "JointModelRZ": (0.0, 0.0, 1.0)}.get(kind)
        if axis is None:
            axis = tuple(np.asarray(jm.axis, float))
        R_p, p_p = poses[model.parents[j]]
        M = model.jointPlacements[j]
        R = R_p @ ca.DM(M.rotation)
        p = p_p + R_p @ ca.DM(M.translation)
        a = np.asarray(axis) / np.linalg.norm(axis)
        K = ca.DM([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
        th = q[jm.idx_q]
        Rj = ca.DM.eye(3) + ca.sin(th) * K + (1 - ca.cos(th)) * (K @ K)
        poses.append((R @ Rj, p))
    f = model.frames[frame_id]
    R_j, p_j = poses[f.parentJoint]
    return q, R_j @ ca.DM(f.placement.rotation), p_j + R_j @ ca.DM(f.placement.translation)


class CasadiPivotIK:
    """The pivot problem as one NLP per step, shaped like Unitree's XR teleop arm IK
    (weighted pose error + regularisation + smoothness, IPOPT), plus the fulcrum as a hard
    equality constraint and joint limits as bounds."""

    def __init__(self, arm, fulcrum: np.ndarray, active: np.ndarray):
        import casadi as ca  # optional dependency of the baseline only

        q, R, p = casadi_fk(arm.model, arm.tip_id)
        n = arm.nq
        self.active = active
        opti = ca.Opti()
        x = opti.variable(n)
        q_last = opti.parameter(n)
        q_post = opti.parameter(n)
        R_t = opti.parameter(3, 3)
        p_t = opti.parameter(3)
        fk = ca.Function("fk", [q], [R, p])
        Rx, px = fk(x)
        f = Rx.T @ (ca.DM(fulcrum) - px)
        cost = (50.0 * ca.sumsqr(px - p_t) + 0.5 * ca.sumsqr(Rx - R_t)
                + 0.02 * ca.sumsqr(x - q_post) + 0.1 * ca.sumsqr(x - q_last))
        opti.minimize(cost)
        opti.subject_to(f[0] == 0)
        opti.subject_to(f[1] == 0)
        lo, hi = arm.limits.lower, arm.limits.upper
        for i in range(n):
            if active[i]:
                opti.subject_to(opti.bounded(lo[i], x[i], hi[i]))
            else:
                opti.subject_to(x[i] == q_last[i])
        opti.solver("ipopt", {"print_time": False, "ipopt.print_level": 0, "ipopt.sb": "yes"},
                    {"max_iter": 50, "tol": 1e-6})
        self.opti, self.x, self.q_last, self.q_post, self.R_t, self.p_t = opti, x, q_last, q_post, R_t, p_t

    def solve(self, q_now: np.ndarray, q_posture: np.ndarray, R_target: np.ndarray, p_target: np.ndarray):
        o = self.opti
        o.set_value(self.q_last, q_now)
        o.set_value(self.q_post, q_posture)
        o.set_value(self.R_t, R_target)
        o.set_value(self.p_t, p_target)
        o.set_initial(self.x, q_now)
        try:
            sol = o.solve()
            return np.asarray(sol.value(self.x)).ravel()
        except RuntimeError:        # not converged in max_iter: take the last iterate, as the XR stack does
            return np.asarray(o.debug.value(self.x)).ravel()


def _step_time_and_casadi(quick: bool) -> list[dict]:
    """Controller step time (the core in the sim loop, moving) and the same pivot problem via CasADi+IPOPT.

    The move sequence runs twice (a steadier p99).  In the second pass the
    IPOPT solves run side by side with the controller: each right after one
    of our control steps, before the physics step, so both are timed in the
    same loop under the same conditions (the cache after MuJoCo's step, the
    same host load).  The CasADi problem and its solve sequence are unchanged:
    from the posture the first pass ends in toward each target, 30 solves
    each (quick: 10), re-solved from its own last solution, after one untimed
    warm-up solve (first-call set-up is not a control step).
    """
    loop = ArmLoop("box_trainer")
    loop.run(0.3)
    loop.core.set_hold(True)
    loop.run(0.5)
    core = loop.core
    ik = core.ik
    v0 = core.setpoint.copy()
    moves = [(15, 0, 0, 0), (0, 15, 0, 0), (0, 0, 0.02, 30)][: 2 if quick else 3]
    targets = [ik.move_view(v0, np.radians(mv[0]), np.radians(mv[1]), mv[2], np.radians(mv[3]))[0] for mv in moves]
    cas = CasadiPivotIK(loop.arm, loop.port, ik.active)
    move_s = 1.5
    solves_per_move = 10 if quick else 30
    every = max(1, int(round(move_s * core.cfg.rate_hz)) // solves_per_move)
    times, cas_times, cas_solutions, ferr_ours = [], [], [], []
    chain = {}            # the CasADi re-solve sequence of the current move
    orig_step = core.step

    def timed(t):
        t0 = time.perf_counter()
        out = orig_step(t)
        times.append((time.perf_counter() - t0) * 1e3)
        if chain["left"] and chain["k"] % every == 0:     # as a controller: re-solve from the last solution
            t0 = time.perf_counter()
            chain["q"] = cas.solve(chain["q"], q0, chain["R"], chain["p"])
            cas_times.append((time.perf_counter() - t0) * 1e3)
            cas_solutions.append((chain["q"], chain["p"], chain["left"] == 1))     # (last of the move?)
            chain["left"] -= 1
        chain["k"] += 1
        return out

    core.step = timed
    q0 = None
    for side_by_side in (False, True):
        if side_by_side:
            q0 = core.q_ref.copy()
            cas.solve(q0.copy(), q0, targets[0].rotation, targets[0].tip_position(loop.port))     # warm-up
        for tgt in targets:
            p, R = tgt.tip_position(loop.port), tgt.rotation
            chain.update(k=0, left=solves_per_move if side_by_side else 0, q=None if q0 is None else q0.copy(),
                         R=R, p=p)
            quat = list(matrix_to_quat(R))
            loop.run(move_s, lambda lp, p=p, quat=quat: (lp.core.servo_cp(p, quat, "world", lp.t),
                                                         ferr_ours.append(lp.fulcrum_error())))
    core.step = orig_step
    # pivot IK alone (one differential step)
    q = core.q_ref.copy()
    ik_times = bench.time_calls(lambda: ik.step(q, targets[0], 0.002), 500 if quick else 3000)

    # fulcrum error of each IPOPT solution and target reach of the last one per move, by MuJoCo FK
    ferr_cas, reach_cas = [], []
    md = mujoco.MjData(loop.model)
    for qc, p_t, last in cas_solutions:
        md.qpos[:] = loop.data.qpos
        for nm, v in zip(loop.arm.joint_names, qc, strict=True):
            md.qpos[loop.model.jnt_qposadr[loop.model.joint(nm).id]] = v
        mujoco.mj_kinematics(loop.model, md)
        pt, Rt = md.site_xpos[loop.tip_site], md.site_xmat[loop.tip_site].reshape(3, 3)
        d = loop.port - pt
        ferr_cas.append(float(np.linalg.norm(d - np.dot(d, Rt[:, 2]) * Rt[:, 2])))
        if last:
            reach_cas.append(float(np.linalg.norm(pt - p_t)))
    ours = np.array(times)
    note = ("EndoscopeHolderCore.step in TELEOP toward the targets the CasADi rows solve for "
            "(tremor filter, speed limit, measured state, pivot IK, joint PI, accel feed-forward)")
    return [
        bench.figure("endoscope.controller_step", "ms", samples=ours, anchor=0.3,
                     anchor_source="target p99 < 0.3 ms (issue 5)", note=note),
        bench.figure("endoscope.pivot_ik_step", "ms", samples=ik_times),
        bench.figure("endoscope.casadi_ipopt_solve", "ms", samples=cas_times, anchor=32.0,
                     anchor_source="Unitree XR teleop IK on Jetson: 32-51 ms a solve (FACTS.md)",
                     note="timed in the same loop as controller_step, one solve after every "
                          f"{every}th control step"),
        bench.figure("endoscope.controller_vs_casadi", "ms", samples=ours,
                     baseline=float(np.median(cas_times)),
                     baseline_name="CasADi+IPOPT solve of the same pivot problem (median, warm-started)",
                     note="ratio = CasADi+IPOPT median / controller-step median, same targets, same loop "
                          "(issue 5 target >= 20x)"),
        bench.figure("endoscope.fulcrum_error_ours", "mm", samples=np.array(ferr_ours) * 1e3,
                     note="ground truth (MuJoCo) during the moves, arm in the physics loop"),
        bench.figure("endoscope.fulcrum_error_casadi", "mm", samples=np.array(ferr_cas) * 1e3,
                     note="MuJoCo FK of each IPOPT solution (kinematic, no dynamics)"),
        bench.figure("endoscope.casadi_target_error", "mm", samples=np.array(reach_cas) * 1e3),
    ]


def _hold_drift(quick: bool) -> list[dict]:
    seconds = 20.0 if quick else 600.0
    loop = ArmLoop("box_trainer")
    rng = np.random.default_rng(1)
    loop.run(1.0)
    loop.core.set_hold(True)
    loop.run(3.0)
    arm_names = [n for n in loop.names
                 if n.startswith("right_") and "hip" not in n and "knee" not in n and "ankle" not in n]
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
    dev = np.linalg.norm(P - p0, axis=1)
    return [
        bench.figure("endoscope.hold_drift", "mm", value=drift * 1e3,
                     note=f"{seconds:.0f} s simulated, 1 Nm random steps on one right-arm joint every 1-3 s; "
                          "mean of the last 1 s vs start (acceptance < 0.5)"),
        bench.figure("endoscope.hold_jitter_rms", "mm", value=jitter * 1e3,
                     note="RMS about the mean over the whole run, step transients included (acceptance < 0.2)"),
        bench.figure("endoscope.hold_deviation", "mm", samples=dev * 1e3,
                     note="tip distance from its start pose, every 2 ms"),
        bench.figure("endoscope.hold_fulcrum_error", "mm", samples=np.array(errs) * 1e3),
        bench.figure("endoscope.hold_sim_rtf", "x", value=seconds / wall, higher_is_better=True,
                     note="in-process MuJoCo + holder core, real-time factor"),
    ]


def _entry_force_hold(quick: bool) -> list[dict]:
    """HOLD in the endonasal scene under 1 Nm random steps: the force the scope puts on the nostril."""
    seconds = 10.0 if quick else 120.0
    loop = ArmLoop("endonasal")
    rng = np.random.default_rng(2)
    loop.run(0.3)
    loop.core.set_hold(True)
    loop.run(1.0)
    arm = [n for n in loop.names if n.startswith("right_") and n.split("_")[1] in ("shoulder", "elbow", "wrist")]
    force, ferr, next_change = [], [], [0.0]

    def each(lp):
        if lp.t >= next_change[0]:
            lp.disturbance[:] = 0.0
            lp.disturbance[lp.index[rng.choice(arm)]] = rng.choice([-1.0, 1.0])
            next_change[0] = lp.t + rng.uniform(1.0, 3.0)
        force.append(lp.entry_force())
        ferr.append(lp.fulcrum_error())

    loop.run(seconds, each)
    return [
        bench.figure("endoscope.entry_force_hold.endonasal", "N", samples=force, anchor=ENTRY_FORCE_GOAL_N,
                     anchor_source="goal < 0.5 N at the nostril (issue 19)",
                     note=f"{seconds:.0f} s HOLD, 1 Nm random steps on one right-arm joint every 1-3 s; "
                          f"nostril stiffness {loop.entry.k:.0f} N/m (sim/entry_point.py); in-process loop"),
        bench.figure("endoscope.entry_fulcrum_error_hold.endonasal", "mm", samples=np.array(ferr) * 1e3,
                     note="ground-truth fulcrum error of the same run"),
    ]
