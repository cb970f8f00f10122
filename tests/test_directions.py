"""Command directions, checked in the old tip frame from ground truth.

Each expectation is written from the contract's words with plain rotation
algebra (Rodrigues' formula written out here), never from the code under test (no
`move_view`, no `kin.fk`):

* holder `servo_cv` (contract section 4, a twist in `endoscope_tip`: x right,
  y down, z forward): angular w for T seconds turns the scope to
  R0 exp(w T) about the fulcrum, so the optical axis in the old tip frame is
  exp(w T) e_z (angular.y > 0: the view and the tip go right, +x; angular.x
  > 0: up, -y), angular.z rolls the image (new x toward old +y) with the tip
  in place, and linear.z pushes the tip along old +z;
* head follow (README: the deadman makes the head pan/tilt/zoom the view):
  head yaw left turns the view left (-x), head pitch down (nose down) turns
  it down (+y), the head moving forward zooms in (+z, `head_zoom_gain` m per m);
* PSM `servo_cv` (CRTK: a twist of the tool tip in `PSM1_base`, the frame of
  `measured_cp`): the tip moves by v T and turns by exp(w T) about base axes,
  i.e. by R0^T v T and R0^T w T in the old tip frame.

Ground truth: MuJoCo sites of the twin's own scene (`endoscope_tip`,
`scope_port`) and `sim/models/psm.xml` (`PSM1_tool_tip`).
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from surgbot import contract
from surgbot.bench.arm_loop import ArmLoop
from surgbot.control.endoscope_holder import HEAD_FOLLOW, HOLD, TELEOP
from surgbot.sim.psm_core import PSMCore
from surgbot.sim.psm_motion import SERVO_CV_TIMEOUT_S
from surgbot.sim.psm_state import ENABLED
from surgbot.sim.scene import PSM_XML

pytestmark = pytest.mark.unit

SERVO_S = 1.0          # s of streaming, then 1.5 s for the setpoint to arrive and HOLD to settle


def expm(w) -> np.ndarray:
    """Rotation matrix of the rotation vector w (Rodrigues)."""
    w = np.asarray(w, float)
    th = float(np.linalg.norm(w))
    if th < 1e-12:
        return np.eye(3)
    k = w / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K


def logm(R) -> np.ndarray:
    """Rotation vector of R (angles well below pi here)."""
    th = float(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)))
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2
    return v if th < 1e-9 else v * th / np.sin(th)


def rotvec_in_old_frame(R0: np.ndarray, R1: np.ndarray) -> np.ndarray:
    return logm(R0.T @ R1)


def quat_xyzw(w) -> list[float]:
    w = np.asarray(w, float)
    th = float(np.linalg.norm(w))
    k = w / th if th > 0 else np.zeros(3)
    return [*(np.sin(th / 2) * k), float(np.cos(th / 2))]


@pytest.fixture(scope="module")
def holder():
    loop = ArmLoop("box_trainer")
    loop.run(0.3)
    ok, _ = loop.core.set_hold(True)
    assert ok
    loop.run(1.0)
    return loop


@pytest.mark.parametrize("angular, insertion, sign_check", [
    ((0.1, 0.0, 0.0), 0.0, ("tip", 1, -1)),       # angular.x > 0: view/tip up (-y)
    ((0.0, 0.1, 0.0), 0.0, ("tip", 0, +1)),       # angular.y > 0: right (+x)
    ((0.0, 0.0, 0.2), 0.0, ("x_axis", 1, +1)),    # angular.z > 0: image x turns toward old +y
    ((0.0, 0.0, 0.0), 0.01, ("tip", 2, +1)),      # linear.z > 0: deeper (+z)
])
def test_holder_servo_cv_directions(holder, angular, insertion, sign_check):
    loop = holder
    c = loop.core
    assert c.mode == HOLD
    p0, R0 = loop.tip()
    port = loop.port
    depth0 = float(np.dot(p0 - port, R0[:, 2]))
    loop.run(SERVO_S, lambda lp: lp.core.servo_cv([0.0, 0.0, insertion], list(angular), "endoscope_tip", lp.t))
    assert c.mode == TELEOP
    loop.run(1.5)
    assert c.mode == HOLD
    p1, R1 = loop.tip()
    w_T = np.asarray(angular) * SERVO_S
    # expected pose from the contract's twist semantics about the fulcrum
    R_exp = R0 @ expm(w_T)
    p_exp = port + (depth0 + insertion * SERVO_S) * R_exp[:, 2]
    turned = rotvec_in_old_frame(R0, R1)
    np.testing.assert_allclose(turned, w_T, atol=0.1 * max(np.linalg.norm(w_T), 0.02))
    assert np.linalg.norm(p1 - p_exp) < 1e-3, (p1 - p_exp) * 1e3
    kind, axis, sign = sign_check
    moved = R0.T @ (p1 - p0) if kind == "tip" else R0.T @ R1[:, 0]
    assert sign * moved[axis] > (0.003 if kind == "tip" else 0.1), moved
    assert loop.fulcrum_error() < 0.5e-3


@pytest.mark.parametrize("head_rotvec, head_forward, expect", [
    ((0.0, 0.0, np.radians(10)), 0.0, ("axis", 0, -1)),   # yaw left -> view left (-x)
    ((0.0, np.radians(10), 0.0), 0.0, ("axis", 1, +1)),   # pitch down (nose down) -> view down (+y)
    ((0.0, 0.0, 0.0), 0.02, ("tip", 2, +1)),              # head forward 20 mm -> zoom in (+z)
])
def test_head_follow_directions(holder, head_rotvec, head_forward, expect):
    loop = holder
    c = loop.core
    head_p = np.array([0.0, 0.0, 1.6])
    c.head(head_p, [0, 0, 0, 1], "world", loop.t)
    c.buttons([1], loop.t)
    assert c.mode == HEAD_FOLLOW
    p0, R0 = loop.tip()
    q = quat_xyzw(head_rotvec)
    target_p = head_p + np.array([head_forward, 0.0, 0.0])   # head frame at the press = world (x forward)
    loop.run(2.0, lambda lp: lp.core.head(target_p, q, "world", lp.t))
    p1, R1 = loop.tip()
    c.buttons([0], loop.t)
    assert c.mode == HOLD
    loop.run(0.3)
    kind, axis, sign = expect
    cfg = c.cfg
    if kind == "axis":
        z1 = R0.T @ R1[:, 2]          # new optical axis in the old tip frame
        angle = np.degrees(np.arccos(np.clip(z1[2], -1, 1)))
        assert abs(angle - 10.0) < 0.5
        assert sign * z1[axis] > 0.9 * np.sin(np.radians(10.0)), z1
    else:
        d = R0.T @ (p1 - p0)
        assert d[2] == pytest.approx(cfg.head_zoom_gain * head_forward, abs=0.5e-3), d
        assert np.linalg.norm(d[:2]) < 0.5e-3
    assert loop.fulcrum_error() < 1e-3


# ---------------------------------------------------------------------- PSM servo_cv
class PSMGroundTruth:
    """`sim/models/psm.xml` in MuJoCo: the tool-tip site relative to PSM1_base at given joints."""

    def __init__(self):
        self.model = mujoco.MjModel.from_xml_path(str(PSM_XML))
        self.data = mujoco.MjData(self.model)
        self.adr = [self.model.jnt_qposadr[self.model.joint(n).id] for n in contract.PSM_JOINT_NAMES]
        self.tip = self.model.site("PSM1_tool_tip").id
        self.base = self.model.body("PSM1_base").id

    def tip_in_base(self, q) -> tuple[np.ndarray, np.ndarray]:
        d = self.data
        d.qpos[self.adr] = q
        mujoco.mj_kinematics(self.model, d)
        Rb = d.xmat[self.base].reshape(3, 3)
        p = Rb.T @ (d.site_xpos[self.tip] - d.xpos[self.base])
        return p, Rb.T @ d.site_xmat[self.tip].reshape(3, 3)


def _enabled_psm() -> tuple[PSMCore, list]:
    core = PSMCore()
    core.step(0.0, np.zeros(6))
    core.state_command("home")
    state = {"t": 0.0, "q": np.zeros(6)}

    def run(seconds, each=None):
        for _ in range(int(round(seconds / 0.002))):
            state["t"] += 0.002
            if each is not None:
                each()
            sp = core.step(state["t"], state["q"])
            state["q"] = sp.q.copy()          # an ideal arm: measured = setpoint one step later
    run(core.power_up_s + 3.0)
    assert core.state == ENABLED and core.is_homed
    return core, [run, state]


@pytest.mark.parametrize("linear, angular", [
    ((0.01, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((0.0, 0.0, -0.01), (0.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.2)),
    ((0.0, 0.0, 0.0), (0.2, 0.0, 0.0)),
])
def test_psm_servo_cv_directions(linear, angular):
    core, (run, state) = _enabled_psm()
    gt = PSMGroundTruth()
    p0, R0 = gt.tip_in_base(state["q"])
    seconds = 0.5
    run(seconds, lambda: core.servo_cv(list(linear), list(angular)))   # refreshed every 2 ms
    run(0.3)                                                           # the twist times out
    p1, R1 = gt.tip_in_base(state["q"])
    v, w = np.asarray(linear), np.asarray(angular)
    T = seconds + SERVO_CV_TIMEOUT_S         # the last twist acts until it times out (dVRK-like)
    # in the old tip frame
    np.testing.assert_allclose(R0.T @ (p1 - p0), R0.T @ v * T, atol=0.1e-3)
    np.testing.assert_allclose(rotvec_in_old_frame(R0, R1), R0.T @ w * T, atol=0.005)
