"""Teleop mapping core (teleop/mapper.py): geometry checked against camera axes built independently.

Every expected motion is written in terms of the camera's own axes (its
right = column 0, down = column 1, forward = column 2 of the world rotation)
and the PSM base rotation, never with the core's operator->camera matrix.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from surgbot.config import config_from_yaml
from surgbot.teleop import protocol as P
from surgbot.teleop.config import MapperConfig
from surgbot.teleop.mapper import State, TeleopMapperCore
from tests.conftest import REPO

pytestmark = pytest.mark.unit

RATE = 90.0
DT = 1.0 / RATE


def rot(axis, deg):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = math.radians(deg)
    return np.eye(3) + math.sin(t) * K + (1 - math.cos(t)) * K @ K


def T(R=np.eye(3), p=(0, 0, 0)):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, p
    return m


def angle_between(Ra, Rb):
    return math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(Ra.T @ Rb) - 1) / 2))))


class Rig:
    """A core with a tilted camera and a rotated PSM base, the PSM tip at a known pose."""

    def __init__(self, cfg=None):
        self.R_base = rot([0.3, -0.2, 1.0], 70.0)
        self.base = T(self.R_base, (0.4, -0.1, 0.9))
        self.R_cam = rot([1.0, 0.5, 0.2], 125.0)
        self.core = TeleopMapperCore(cfg or MapperConfig(), self.base)
        self.tool0 = T(rot([0, 1, 0], 180.0) @ rot([0, 0, 1], 20.0), (0.01, -0.02, -0.12))
        self.core.set_camera(T(self.R_cam, (0.5, 0.0, 1.0)), 0.0)
        self.core.set_measured(self.tool0)
        self.core.set_jaw_measured(0.5)
        self.t = 0.0
        self.hand = T(rot([0, 0, 1], 10.0), (0.3, -0.2, 1.2))

    def send(self, clutch=True, trigger=0.0, hand=None, buttons=None, axes_extra=None):
        self.t += DT
        self.core.set_camera(T(self.R_cam, (0.5, 0.0, 1.0)), self.t)     # the holder streams it
        b = [0] * P.N_BUTTONS
        b[P.BTN_CLUTCH] = int(clutch)
        for i in buttons or ():
            b[i] = 1
        a = [0.0] * P.N_AXES
        a[P.AX_RTRIG] = trigger
        a[P.AX_RSQUEEZE] = 1.0 if clutch else 0.0
        for i, v in (axes_extra or {}).items():
            a[i] = v
        return self.core.sample(self.t, self.hand if hand is None else hand, b, a)

    def move_hand(self, d_op, steps=45, clutch=True):
        """Move the hand by `d_op` (operator frame) in `steps` samples; the last command."""
        start = self.hand[:3, 3].copy()
        out = None
        for k in range(1, steps + 1):
            self.hand = self.hand.copy()
            self.hand[:3, 3] = start + np.asarray(d_op) * k / steps
            out = self.send(clutch=clutch)
        return out

    def world_displacement(self, cmd):
        return self.R_base @ (cmd.servo_cp[:3, 3] - self.tool0[:3, 3])


def test_shipped_yaml_builds():
    cfg = config_from_yaml(MapperConfig, REPO / "config" / "teleop_mapper.yaml", "teleop_mapper")
    assert cfg.scale == pytest.approx(0.2)


@pytest.mark.parametrize("d_op, cam_axis, sign", [
    ((0.0, -0.05, 0.0), 0, +1),      # hand right  -> tool right in the image (camera +x)
    ((0.0, 0.0, 0.05), 1, -1),       # hand up     -> tool up in the image (camera -y)
    ((0.05, 0.0, 0.0), 2, +1),       # hand away   -> tool deeper (camera +z)
])
def test_translation_is_scaled_and_in_camera_frame(d_op, cam_axis, sign):
    r = Rig()
    assert r.send().servo_cp is not None and r.core.state == State.FOLLOWING
    cmd = r.move_hand(d_op)
    expected = sign * 0.2 * 0.05 * r.R_cam[:, cam_axis]
    np.testing.assert_allclose(r.world_displacement(cmd), expected, atol=1e-9)
    # the orientation did not change with a pure translation
    assert angle_between(cmd.servo_cp[:3, :3], r.tool0[:3, :3]) < 1e-6


def test_no_command_without_clutch_and_no_jump_on_reclutch():
    r = Rig()
    assert r.move_hand((0.0, -0.05, 0.0), clutch=False).servo_cp is None
    first = r.send()
    np.testing.assert_allclose(first.servo_cp, r.tool0, atol=1e-12)    # clutch-in: where the tool is
    moved = r.move_hand((0.0, -0.05, 0.0))
    assert r.send(clutch=False).servo_cp is None                          # released: the PSM holds
    r.move_hand((0.0, 0.10, 0.05), clutch=False)                          # hand wanders while released
    r.core.set_measured(moved.servo_cp)                                   # the PSM reached the last command
    again = r.send()
    np.testing.assert_allclose(again.servo_cp, moved.servo_cp, atol=1e-12)
    # and motion continues relative to the new clutch-in
    cmd = r.move_hand((0.0, -0.05, 0.0))
    np.testing.assert_allclose(r.R_base @ (cmd.servo_cp[:3, 3] - moved.servo_cp[:3, 3]),
                               0.01 * r.R_cam[:, 0], atol=1e-9)


def test_orientation_relative_in_camera_frame():
    r = Rig()
    r.send()
    # hand turns 20 deg about the operator's up axis (z); in the image that is a turn about "up" = -y_cam
    R_hand0 = r.hand[:3, :3].copy()
    cmd = None
    for k in range(1, 41):
        h = r.hand.copy()
        h[:3, :3] = rot([0, 0, 1], 20.0 * k / 40) @ R_hand0
        cmd = r.send(hand=h)
    R_tool0_world = r.R_base @ r.tool0[:3, :3]
    R_expected_world = rot(-r.R_cam[:, 1], 20.0) @ R_tool0_world
    assert angle_between(r.R_base @ cmd.servo_cp[:3, :3], R_expected_world) < 1e-6
    np.testing.assert_allclose(cmd.servo_cp[:3, 3], r.tool0[:3, 3], atol=1e-12)


def test_jaw_rate_limits_after_clutch_and_after_catching_up():
    r = Rig()
    cfg = r.core.cfg
    r.send(trigger=0.0)
    jaws = [r.send(trigger=1.0).jaw for _ in range(45)]          # 0.5 s, target = closed
    slow = math.radians(cfg.jaw_rate_after_clutch_deg_s)
    # it starts where the jaw is (measured 0.5 rad), not at the trigger's value
    assert jaws[-1] == pytest.approx(0.5 - slow * DT * 45, abs=1e-9)
    # let it catch up (a jaw that follows its command), then the full rate applies
    for _ in range(400):
        j = r.send(trigger=1.0).jaw
        r.core.set_jaw_measured(j)
    assert j == pytest.approx(cfg.jaw_closed_rad)
    j0 = r.send(trigger=0.0).jaw
    fast = math.radians(cfg.jaw_rate_deg_s)
    assert j0 - cfg.jaw_closed_rad == pytest.approx(min(fast * DT, cfg.jaw_open_rad - cfg.jaw_closed_rad))


def test_the_jaw_command_never_leads_the_measured_jaw_past_the_arms_tracking_fault():
    """An arm slower than the rate limit (a loaded twin) or a jaw held by what it grips: the command stops
    `jaw_lead_max_rad` from the measured jaw, under the PSM's 0.6 rad tracking-error fault, and moves on
    as the jaw does."""
    from surgbot.kinematics.psm import JAW_TRACKING_TOLERANCE
    r = Rig()
    cfg = r.core.cfg
    assert cfg.jaw_lead_max_rad < JAW_TRACKING_TOLERANCE
    r.send(trigger=1.0)
    for _ in range(400):                         # the jaw stays at 0.5 (measured) while the trigger says closed
        j = r.send(trigger=1.0).jaw
    assert j == pytest.approx(0.5 - cfg.jaw_lead_max_rad) and r.core.counters["jaw_lead_limited"] > 0
    r.core.set_jaw_measured(0.3)                 # the jaw moves: the command may follow it on
    for _ in range(400):
        j = r.send(trigger=1.0).jaw
    assert j == pytest.approx(0.3 - cfg.jaw_lead_max_rad)
    for _ in range(200):                         # released: the command opens, never past measured + lead
        j = r.send(trigger=0.0).jaw
    assert j == pytest.approx(0.3 + cfg.jaw_lead_max_rad)
    with pytest.raises(ValueError):
        MapperConfig(jaw_lead_max_rad=JAW_TRACKING_TOLERANCE + 0.1)


def test_a_grasp_is_not_loosened_by_a_reclutch():
    """Holding a needle (the jaw stopped by it at 0.3 rad, the trigger closed: the command squeezes
    `jaw_lead_max_rad` past it), the operator lets go of the clutch, moves the hand and clutches in
    again: the squeeze stays (resetting the command to the measured jaw would drop the grip force)."""
    r = Rig()
    cfg = r.core.cfg
    r.core.set_jaw_measured(0.3)
    for _ in range(400):
        j = r.send(trigger=1.0).jaw
    squeeze = 0.3 - cfg.jaw_lead_max_rad
    assert j == pytest.approx(squeeze)
    for _ in range(10):
        r.send(clutch=False, trigger=1.0)
    r.hand = T(rot([0, 0, 1], 30.0), (0.35, -0.1, 1.1))       # a new hand pose for the next stroke
    after = [r.send(trigger=1.0).jaw for _ in range(20)]
    assert max(after) <= squeeze + 1e-9, after
    # the jaw moved by someone else (far past what this mapper would command): the command starts from it
    for _ in range(3):
        r.send(clutch=False)
    r.core.set_jaw_measured(1.2)
    slow = math.radians(cfg.jaw_rate_after_clutch_deg_s)
    assert r.send(trigger=1.0).jaw == pytest.approx(1.2 - slow * DT)


def test_a_jaw_never_measured_is_never_commanded():
    r = Rig()
    r.core.jaw_measured = None                   # (the rig measures 0.5 at start; a node may not have yet)
    cmd = r.send(trigger=1.0)
    assert cmd.servo_cp is not None and cmd.jaw is None
    r.core.set_jaw_measured(0.2)                 # from where the jaw is, at the after-clutch rate
    slow = math.radians(r.core.cfg.jaw_rate_after_clutch_deg_s)
    assert r.send(trigger=1.0).jaw == pytest.approx(0.2 - slow * DT)


def test_workspace_box_and_step_limit():
    cfg = MapperConfig(max_step_m=0.001)
    r = Rig(cfg)
    r.send()
    prev = r.tool0[:3, 3]
    for _ in range(200):   # hand jumps 1 m to the right at once: 0.2 m for the tool, outside the box
        h = r.hand.copy()
        h[:3, 3] += np.array([0.0, -1.0, 0.0])
        cmd = r.send(hand=h)
        step = np.linalg.norm(cmd.servo_cp[:3, 3] - prev)
        assert step <= 0.001 + 1e-12
        prev = cmd.servo_cp[:3, 3]
    p = cmd.servo_cp[:3, 3]
    assert np.all(p >= np.array(cfg.workspace_min_m) - 1e-12) and np.all(p <= np.array(cfg.workspace_max_m) + 1e-12)
    assert r.core.counters["workspace_clipped"] > 0 and r.core.counters["step_limited"] > 0


@pytest.mark.parametrize("bad", [
    np.full((4, 4), np.nan),
    np.diag([1.0, 1.0, 0.0, 1.0]),                   # singular
    np.diag([2.0, 1.0, 1.0, 1.0]),                   # not a rotation
    np.diag([1.0, 1.0, -1.0, 1.0]),                  # reflection
    np.eye(3),                                       # wrong shape
])
def test_bad_hand_pose_rejected_and_nothing_commanded(bad):
    r = Rig()
    r.send()
    cmd = r.core.sample(r.t + DT, bad, [0, 1], [0, 0, 0, 1.0])
    assert cmd.servo_cp is None and cmd.jaw is None
    assert r.core.counters["rejected_hand_pose"] == 1
    assert not r.core.set_camera(np.diag([1.0, 1.0, 0.0, 1.0]), 0.0)
    assert not r.core.set_measured(np.full((4, 4), np.inf))
    with pytest.raises(ValueError):
        TeleopMapperCore(MapperConfig(), bad)


def test_link_loss_stops_and_needs_a_fresh_clutch():
    r = Rig()
    r.send()
    r.move_hand((0.0, -0.01, 0.0), steps=5)
    r.core.tick(r.t + 0.15)
    assert r.core.state == State.FOLLOWING                     # 150 ms: still within the link timeout
    r.core.tick(r.t + 0.21)
    assert r.core.state == State.NEED_CLUTCH
    r.t += 0.3
    assert r.send(clutch=True).servo_cp is None                # still squeezing: not a fresh clutch
    assert r.send(clutch=False).servo_cp is None
    assert r.core.state == State.READY
    assert r.send(clutch=True).servo_cp is not None
    # a gap seen first by a sample (before any watchdog tick) counts the same
    r.t += 0.25
    assert r.send(clutch=True).servo_cp is None and r.core.state == State.NEED_CLUTCH


def test_psm_leaving_enabled_unclutches():
    r = Rig()
    r.send()
    r.core.set_psm_enabled(False)
    assert r.core.state == State.NEED_CLUTCH
    r.send(clutch=False)
    assert r.send(clutch=True).servo_cp is None                # PSM not enabled: clutch ignored
    r.core.set_psm_enabled(True)
    r.send(clutch=False)
    assert r.send(clutch=True).servo_cp is not None


def test_buttons_zoom_and_modes():
    r = Rig()
    cmd = r.send(clutch=False, buttons=[P.BTN_A])
    assert cmd.actions == ("follow_tool_on",)
    assert r.send(clutch=False, buttons=[P.BTN_A]).actions == ()            # held: one request per press
    r.core.endoscope_mode = "TOOL_FOLLOW"
    r.send(clutch=False)
    assert r.send(clutch=False, buttons=[P.BTN_A]).actions == ("follow_tool_off",)
    assert r.send(clutch=False, buttons=[P.BTN_B]).actions == ("hold",)
    full = r.send(clutch=False, axes_extra={P.AX_LY: -1.0}).insertion_m_s
    assert full == pytest.approx(r.core.cfg.zoom_speed_m_s)                  # stick forward: scope in
    assert r.send(clutch=False, axes_extra={P.AX_LY: 0.1}).insertion_m_s is None   # dead zone
    assert r.send(clutch=False, buttons=[P.BTN_DEADMAN], axes_extra={P.AX_LY: -1.0}).insertion_m_s is None


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        MapperConfig(workspace_min_m=(0.1, 0.0, 0.0), workspace_max_m=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        MapperConfig(psm_base_pose=(1.0, 2.0))
    with pytest.raises(ValueError):
        MapperConfig(scene="nowhere")
