"""What every task shares: the box-trainer geometry, the per-seed layout, the view.

A task (reach.py, needle_pick.py, peg_transfer.py) is one definition used by
both the ROS twin (`surgbot sim --task T`, sim/tasks/twin.py) and the
Gymnasium environments (sim/envs/): `layout(seed)` draws every random choice
of an episode from `numpy.random.default_rng(seed)`, `apply(model, data,
layout)` puts it into a MuJoCo model of the box trainer, and a `Monitor`
judges success from the physics state (contacts, poses) at any rate.

Randomisation ranges (all tasks; positions relative to the `task_center`
site, the point where the default endoscope axis meets the box floor, in
world x/y):
* the three coloured target discs: uniform in +-30 mm, >= 22 mm apart
  (and clear of the task's own object);
* distractors (4 pegs, 2 large blocks, and the needle / transfer block when
  the task does not use them): fixed slots at the pad's far and camera-side
  edges (out of the PSM's path) with +-3 mm jitter, blocks at a random yaw;
* the endoscope view (environments only, where a mocap camera stands in for
  the G1 holder): rotated about the port (fulcrum) by +-3 deg pan and tilt,
  +-3 deg roll about the shaft, +-3 mm insertion along the shaft;
* the PSM start pose: jaw tip 35-45 mm above the pad centre, +-8 mm in x/y,
  jaws pointing down, jaw-axis yaw +-15 deg.
Per-task ranges are in each task's module doc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import mujoco
import numpy as np

from surgbot.geometry import matrix_to_quat
from surgbot.sim.scene import ENV_VIEW_BODY, stand_camera_pose, stand_scope_line
from surgbot.sim.scene_layouts import TARGET_COLOURS

COLOURS = tuple(TARGET_COLOURS)                    # ("red", "green", "blue")
TARGET_AREA_HALF = 0.030                           # targets: +- 30 mm about the task centre
TARGET_GAP = 0.022
SLOT_JITTER = 0.003
DISTRACTOR_SLOTS = {                               # (dx, dy) from the task centre, m
    "peg_0": (-0.060, -0.045), "peg_1": (-0.060, 0.045), "peg_2": (0.020, 0.047), "peg_3": (0.055, 0.047),
    "block_0": (-0.058, -0.015), "block_1": (-0.058, 0.017),
    "needle": (-0.022, 0.042), "block_transfer": (-0.032, -0.046),
}
VIEW_ANGLE_DEG = 3.0
VIEW_INSERTION_M = 0.003
START_HEIGHT_M = (0.035, 0.045)
START_XY_M = 0.008
START_YAW_DEG = 15.0
DISC_TOP = 0.0012                                  # target disc thickness above the pad (scene.py)
PLACE_TRIES = 2000
# Friction grasps of millimetre objects between the two box fingers hold only
# with elliptic friction cones and MuJoCo's no-slip pass: the needle_pick
# expert lifted the needle in 0/5 seeds with the scene's defaults (pyramidal
# cones, impratio 1, no noslip), 4/5 with noslip alone, 5/5 with all three.
GRASP_IMPRATIO = 10.0
GRASP_NOSLIP_ITERATIONS = 5


@dataclass(frozen=True)
class Layout:
    """Everything random about one episode (JSON-friendly numbers)."""

    task: str
    seed: int
    instruction: str
    target: str                                    # colour named in the instruction ("" if none)
    objects: dict                                  # body name -> (x, y, yaw) in world
    view: tuple                                    # (pan_deg, tilt_deg, roll_deg, insertion_m)
    start: tuple                                   # (x, y, height above pad, yaw) of the jaw tip
    style: dict = field(default_factory=dict)      # the expert's random style for this seed


class BoxGeometry:
    """Ids and fixed geometry of the box trainer in one compiled model."""

    def __init__(self, model: mujoco.MjModel):
        self.model = model
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        self.centre = data.site("task_center").xpos[:2].copy()
        pad = model.geom("tissue_pad")
        pad_pos = data.geom_xpos[pad.id]
        self.pad_id = pad.id
        self.pad_half = model.geom_size[pad.id][:2].copy()
        self.pad_centre = pad_pos[:2].copy()
        self.pad_top = float(pad_pos[2] + model.geom_size[pad.id][2])
        self.fingers = (model.geom("PSM1_jaw_finger_a").id, model.geom("PSM1_jaw_finger_b").id)
        fa = model.geom("PSM1_jaw_finger_a")
        self.jaw_length = float(model.geom_pos[fa.id][2] + model.geom_size[fa.id][2])
        self.tip_site = model.site("PSM1_tool_tip").id
        self.jaw_qadr = int(model.jnt_qposadr[model.joint("jaw").id])
        self.psm_base = model.body("PSM1_base").id
        self.view_mocap = -1
        vid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, ENV_VIEW_BODY)
        if vid >= 0:
            self.view_mocap = int(model.body_mocapid[vid])
        self.body_geoms = {}
        for b in range(model.nbody):
            self.body_geoms[model.body(b).name] = [g for g in range(model.ngeom) if model.geom_bodyid[g] == b]

    # -------------------------------------------------------------- reading
    def jaw_tip(self, data: mujoco.MjData) -> np.ndarray:
        """World point at the end of the (closed) jaws, on the tool axis."""
        return data.site_xpos[self.tip_site] + self.jaw_length * data.site_xmat[self.tip_site].reshape(3, 3)[:, 2]

    def jaw(self, data: mujoco.MjData) -> float:
        return float(data.qpos[self.jaw_qadr])

    def touching(self, data: mujoco.MjData, geoms_a, geoms_b) -> bool:
        a, b = set(geoms_a), set(geoms_b)
        for i in range(data.ncon):
            c = data.contact[i]
            if (c.geom1 in a and c.geom2 in b) or (c.geom1 in b and c.geom2 in a):
                return True
        return False

    def touching_any_but(self, data: mujoco.MjData, geoms, allowed) -> bool:
        """Whether `geoms` touch anything outside `allowed`."""
        g, ok = set(geoms), set(allowed)
        for i in range(data.ncon):
            c = data.contact[i]
            if c.geom1 in g and c.geom2 not in ok and c.geom2 not in g:
                return True
            if c.geom2 in g and c.geom1 not in ok and c.geom1 not in g:
                return True
        return False

    def on_pad(self, xy, margin: float = 0.0) -> bool:
        return bool(np.all(np.abs(np.asarray(xy) - self.pad_centre) <= self.pad_half + margin))

    def target_point(self, data: mujoco.MjData, colour: str) -> np.ndarray:
        """Top centre of a target disc."""
        return data.body(f"target_{colour}").xpos + np.array([0.0, 0.0, DISC_TOP])


# ------------------------------------------------------------------ layout
def place_apart(rng: np.random.Generator, centre, half: float, n: int, gap: float, taken=(),
                taken_gap: float | None = None) -> list[np.ndarray]:
    """n points uniform in centre +- half (xy), >= gap apart and >= taken_gap from `taken`."""
    taken_gap = gap if taken_gap is None else taken_gap
    out: list[np.ndarray] = []
    for _ in range(PLACE_TRIES):
        if len(out) == n:
            break
        p = np.asarray(centre) + rng.uniform(-half, half, size=2)
        if all(np.linalg.norm(p - q) >= gap for q in out) and \
                all(np.linalg.norm(p - np.asarray(q)) >= taken_gap for q in taken):
            out.append(p)
    if len(out) < n:
        raise RuntimeError("could not place task objects apart")
    return out


def distractors(rng: np.random.Generator, centre, used: set[str]) -> dict:
    """Slot placements (x, y, yaw) for every distractor body not in `used`."""
    out = {}
    for name, (dx, dy) in DISTRACTOR_SLOTS.items():
        if name in used:
            continue
        jitter = rng.uniform(-SLOT_JITTER, SLOT_JITTER, size=2)
        yaw = float(rng.uniform(-math.pi, math.pi))
        out[name] = (float(centre[0] + dx + jitter[0]), float(centre[1] + dy + jitter[1]), yaw)
    return out


def view_and_start(rng: np.random.Generator, centre) -> tuple[tuple, tuple]:
    view = (float(rng.uniform(-VIEW_ANGLE_DEG, VIEW_ANGLE_DEG)), float(rng.uniform(-VIEW_ANGLE_DEG, VIEW_ANGLE_DEG)),
            float(rng.uniform(-VIEW_ANGLE_DEG, VIEW_ANGLE_DEG)),
            float(rng.uniform(-VIEW_INSERTION_M, VIEW_INSERTION_M)))
    xy = np.asarray(centre) + rng.uniform(-START_XY_M, START_XY_M, size=2)
    start = (float(xy[0]), float(xy[1]), float(rng.uniform(*START_HEIGHT_M)),
             float(np.deg2rad(rng.uniform(-START_YAW_DEG, START_YAW_DEG))))
    return view, start


def _axis_angle(axis, angle: float) -> np.ndarray:
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def view_pose(view: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Camera world position and rotation for a view perturbation about the port.

    The scope pivots about the fulcrum (pan about the camera's y axis, tilt
    about its x axis), rolls about its shaft and slides along it: every
    perturbed view still passes through the port."""
    pan, tilt, roll, insertion = view
    pos0, R0, _ = stand_camera_pose()
    line = stand_scope_line()
    u = line.direction
    R = _axis_angle(R0[:, 1], math.radians(pan)) @ _axis_angle(R0[:, 0], math.radians(tilt))
    u_new = R @ u
    R_cam = _axis_angle(u_new, math.radians(roll)) @ R @ R0
    pos = line.port + R @ (pos0 - line.port) + insertion * u_new
    return pos, R_cam


def apply_layout(model: mujoco.MjModel, data: mujoco.MjData, geo: BoxGeometry, layout: Layout) -> None:
    """Put every object of `layout` into model/data (static bodies move in the model).

    Call on a reset state, then `mujoco.mj_forward`."""
    for name, (x, y, yaw) in layout.objects.items():
        body = model.body(name)
        quat = np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])
        if body.jntnum[0] > 0 and model.jnt_type[body.jntadr[0]] == mujoco.mjtJoint.mjJNT_FREE:
            adr = int(model.jnt_qposadr[body.jntadr[0]])
            dof = int(model.jnt_dofadr[body.jntadr[0]])
            z = data.qpos[adr + 2]          # the scene's resting height for this body
            data.qpos[adr:adr + 7] = [x, y, z, *quat]
            data.qvel[dof:dof + 6] = 0.0
        else:
            model.body_pos[body.id][:2] = (x, y)
            model.body_quat[body.id] = quat
    if geo.view_mocap >= 0:
        pos, R = view_pose(layout.view)
        x, y, z, w = matrix_to_quat(R)
        data.mocap_pos[geo.view_mocap] = pos
        data.mocap_quat[geo.view_mocap] = (w, x, y, z)         # MuJoCo's order


def configure_solver(model: mujoco.MjModel, sleep: bool = False) -> None:
    """The contact solver settings every task runs with (twin and environments alike).

    `sleep` lets bodies at rest sleep (MuJoCo islands): a pure speed-up for
    the environments (the resting distractors cost no contacts; measured
    2-3x faster expert episodes); the twin, whose G1 and PSM are driven over
    the network, keeps every body awake."""
    model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    model.opt.impratio = GRASP_IMPRATIO
    model.opt.noslip_iterations = GRASP_NOSLIP_ITERATIONS
    if sleep:
        model.opt.enableflags |= mujoco.mjtEnableBit.mjENBL_SLEEP


def down_rotation(yaw: float) -> np.ndarray:
    """Tool-tip rotation (world) with the jaws pointing straight down and the jaw axis at `yaw`."""
    x = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.column_stack([x, np.cross(z, x), z])


# ----------------------------------------------------------------- monitor
@dataclass
class Status:
    success: bool = False
    failed: bool = False
    reason: str = ""


class Monitor:
    """Judges one episode from physics; `update(data, t)` at any rate."""

    def __init__(self, geo: BoxGeometry, layout: Layout):
        self.geo = geo
        self.layout = layout
        self.status = Status()
        self._since: float | None = None

    def _dwell(self, ok: bool, t: float, need_s: float) -> bool:
        """True once `ok` has held continuously for need_s of sim time."""
        if not ok:
            self._since = None
            return False
        if self._since is None:
            self._since = t
        return t - self._since >= need_s - 1e-9

    def update(self, data: mujoco.MjData, t: float) -> Status:
        if not (self.status.success or self.status.failed):
            self._check(data, t)
        return self.status

    def _check(self, data: mujoco.MjData, t: float) -> None:
        raise NotImplementedError

    def succeed(self, reason: str) -> None:
        self.status = Status(success=True, reason=reason)

    def fail(self, reason: str) -> None:
        self.status = Status(failed=True, reason=reason)


class Task:
    """One task: its name, horizon, instructions, layout and monitor (see module doc)."""

    name = ""
    horizon_s = 0.0
    instructions: tuple[str, ...] = ()          # templates; "{colour}" where a colour is named
    uses: frozenset = frozenset()               # bodies the task places itself

    def layout(self, seed: int, centre) -> Layout:
        raise NotImplementedError

    def monitor(self, geo: BoxGeometry, layout: Layout) -> Monitor:
        raise NotImplementedError

    def _finish(self, rng: np.random.Generator, seed: int, centre, objects: dict, target: str) -> Layout:
        """Distractors, view, start and instruction after the task placed its own objects."""
        objects = dict(objects)
        objects.update(distractors(rng, centre, set(objects)))
        view, start = view_and_start(rng, centre)
        text = self.instructions[int(rng.integers(len(self.instructions)))].format(colour=target)
        style = {"speed_mps": float(rng.uniform(0.014, 0.024)), "via_offset_m": float(rng.uniform(-0.006, 0.006)),
                 "clearance_m": float(rng.uniform(0.008, 0.014)), "grasp_shift": float(rng.uniform(-1.0, 1.0))}
        return Layout(task=self.name, seed=int(seed), instruction=text, target=target, objects=objects,
                      view=view, start=start, style=style)

    def target_choices(self, layout: Layout) -> tuple[str, ...]:
        """Colours this layout may name (none for tasks without a named target)."""
        return COLOURS if layout.target else ()

    def retarget(self, layout: Layout, colour: str) -> Layout:
        """The same episode (objects, view, start, style) naming `colour` instead, with the same paraphrase.

        Recording one layout with each colour shows a policy that only the
        instruction tells the episodes apart.  ValueError if the task names no
        target or the colour is not allowed in this layout."""
        if colour not in self.target_choices(layout):
            raise ValueError(f"{self.name}: colour {colour!r} not allowed for seed {layout.seed} "
                             f"(choose from {', '.join(self.target_choices(layout)) or 'none'})")
        template = next((t for t in self.instructions if t.format(colour=layout.target) == layout.instruction),
                        self.instructions[0])
        return replace(layout, target=colour, instruction=template.format(colour=colour))

    @staticmethod
    def targets(rng: np.random.Generator, centre, taken=(), taken_gap: float = 0.0) -> dict:
        pts = place_apart(rng, centre, TARGET_AREA_HALF, len(COLOURS), TARGET_GAP, taken, taken_gap)
        return {f"target_{c}": (float(p[0]), float(p[1]), 0.0) for c, p in zip(COLOURS, pts, strict=True)}
