"""The task set-ups of the scenes, laid out relative to the scope's port (`ScopeLine`).

`LAYOUTS[scene](spec, rng, line)` adds a scene's static geometry, sites and
seeded task objects to `spec` and returns where the PSM's port is, where its
tool points and which way its arm leans (`sim.scene` mounts the PSM there).
The box trainer: table, box with a lid port, tissue pad, coloured targets,
pegs, blocks, the suture needle and the peg-transfer block.  The endonasal
phantom: a supine head, the nostril as the port, the nasal corridor and the
sphenoid sinus with its target.  Geoms the endoscope must see through from
inside (box lid, head shell) are in `OUTER_GROUP`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mujoco
import numpy as np

from surgbot.sim.entry_point import ENTRY_STIFFNESS_NUMERIC

if TYPE_CHECKING:
    from surgbot.sim.scene import ScopeLine

OUTER_GROUP = 3                # geoms hidden from the endoscope camera
SCENE_SITE_GROUP = 4
# Lateral stiffness of the scope's entry point (N/m; sim/entry_point.py applies it).  Model
# choices, not measurements: a trocar grommet in a foam/rubber box-trainer lid ~0.5 N/mm; the
# nasal vestibule's soft tissue ~0.2 N/mm (soft-tissue indentation stiffness is of order
# 0.1-1 N/mm).  0.5 N at the nostril (the holder's goal) is then 2.5 mm of fulcrum error.
PORT_STIFFNESS = 500.0
NOSTRIL_STIFFNESS = 200.0
# Colours the tests and tasks look for in images.
TARGET_COLOURS = {"red": (0.9, 0.1, 0.1, 1.0), "green": (0.1, 0.8, 0.15, 1.0),
                  "blue": (0.1, 0.25, 0.95, 1.0)}
SPHENOID_TARGET_RGBA = (0.95, 0.85, 0.1, 1.0)


def quat_z_to(z: np.ndarray, x_hint=(1.0, 0.0, 0.0), y_hint=None) -> np.ndarray:
    """Quaternion (w,x,y,z) of a frame whose z axis is `z` and x is close to `x_hint`
    (or, when given, y close to `y_hint`)."""
    z = np.asarray(z, float) / np.linalg.norm(z)
    if y_hint is not None:
        y = np.asarray(y_hint, float)
        y = y - y.dot(z) * z
        y /= np.linalg.norm(y)
        x = np.cross(y, z)
        return quat_z_to(z, x_hint=x)
    x = np.asarray(x_hint, float)
    x = x - x.dot(z) * z
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.column_stack([x, y, z]).flatten())
    return q


def add_static_box(parent, name, pos, size, rgba, *, collide=True, group=0, quat=None):
    geom = parent.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(pos),
                           size=list(size), rgba=list(rgba), group=group)
    if quat is not None:
        geom.quat = list(quat)
    if not collide:
        geom.contype = 0
        geom.conaffinity = 0
    return geom


def _place_apart(rng, centre, half, n, min_gap, taken=()):
    """n points in the square centre +- half (xy) at least min_gap apart."""
    pts = list(taken)
    out = []
    for _ in range(2000):
        if len(out) == n:
            break
        p = centre + rng.uniform(-half, half, size=2)
        if all(np.linalg.norm(p - q) >= min_gap for q in pts):
            pts.append(p)
            out.append(p)
    if len(out) < n:
        raise RuntimeError("could not place task objects apart")
    return out


def box_trainer(spec: mujoco.MjSpec, rng: np.random.Generator, line: ScopeLine):
    port = line.port
    box_h = 0.14                          # inner height, floor plate to lid
    wall = 0.005
    table_top = port[2] - box_h - wall    # box floor plate sits on the table
    floor_top = table_top + wall
    # Where the scope's optical axis meets the box floor: centre of the task area.
    s = (floor_top - line.tip[2]) / line.direction[2]
    view = line.tip + s * line.direction
    cx, cy = view[0] + 0.02, view[1]
    wb = spec.worldbody

    # table
    tx0, tx1, ty0, ty1 = 0.25, 1.05, cy - 0.4, cy + 0.4
    tcx, tcy = (tx0 + tx1) / 2, (ty0 + ty1) / 2
    add_static_box(wb, "table_top", (tcx, tcy, table_top - 0.015),
                    ((tx1 - tx0) / 2, (ty1 - ty0) / 2, 0.015), (0.55, 0.42, 0.3, 1))
    for i, (lx, ly) in enumerate([(tx0 + 0.04, ty0 + 0.04), (tx0 + 0.04, ty1 - 0.04),
                                  (tx1 - 0.04, ty0 + 0.04), (tx1 - 0.04, ty1 - 0.04)]):
        add_static_box(wb, f"table_leg_{i}", (lx, ly, (table_top - 0.03) / 2),
                        (0.025, 0.025, (table_top - 0.03) / 2), (0.3, 0.3, 0.3, 1))

    # box trainer: floor plate, 4 walls, lid with the ports (lid/walls hidden from the scope)
    bx0, bx1 = port[0] - 0.06, port[0] + 0.34
    by0, by1 = cy - 0.19, cy + 0.19
    bcx, bcy = (bx0 + bx1) / 2, (by0 + by1) / 2
    hx, hy = (bx1 - bx0) / 2, (by1 - by0) / 2
    grey = (0.12, 0.12, 0.13, 1)
    add_static_box(wb, "box_floor", (bcx, bcy, table_top + wall / 2), (hx, hy, wall / 2), (0.25, 0.3, 0.28, 1))
    zc = floor_top + box_h / 2
    add_static_box(wb, "box_wall_near", (bx0, bcy, zc), (wall / 2, hy, box_h / 2), grey)
    add_static_box(wb, "box_wall_far", (bx1, bcy, zc), (wall / 2, hy, box_h / 2), grey)
    add_static_box(wb, "box_wall_left", (bcx, by1, zc), (hx, wall / 2, box_h / 2), grey)
    add_static_box(wb, "box_wall_right", (bcx, by0, zc), (hx, wall / 2, box_h / 2), grey)
    add_static_box(wb, "box_lid", (bcx, bcy, port[2] + wall / 2), (hx, hy, wall / 2), (0.1, 0.1, 0.1, 0.6),
                    collide=False, group=OUTER_GROUP)
    wb.add_light(name="box_light", pos=[cx, cy, port[2] - 0.01], dir=[0, 0, -1],
                 type=mujoco.mjtLightType.mjLIGHT_SPOT, cutoff=70, exponent=1,
                 diffuse=[0.2, 0.2, 0.2], castshadow=False)
    wb.add_site(name="scope_port", pos=list(port), size=[0.004, 0, 0], rgba=[0, 1, 1, 1],
                group=SCENE_SITE_GROUP)
    _entry_stiffness(spec, PORT_STIFFNESS)

    # PSM port on the lid, far right corner; its tool aims at the task area.
    psm_port = np.array([port[0] + 0.24, cy - 0.12, port[2]])
    wb.add_site(name="psm_port", pos=list(psm_port), size=[0.004, 0, 0], rgba=[1, 0, 1, 1],
                group=SCENE_SITE_GROUP)
    wb.add_site(name="task_center", pos=[cx, cy, floor_top], size=[0.004, 0, 0], group=SCENE_SITE_GROUP)
    psm_dir = np.array([cx, cy, floor_top + 0.02]) - psm_port
    psm_lean = np.array([-psm_dir[0], -psm_dir[1], 0.0]) / np.linalg.norm(psm_dir[:2]) + [0, 0, 1]

    # tissue pad (static) and task objects
    pad_top = floor_top + 0.006
    add_static_box(wb, "tissue_pad", (cx, cy, floor_top + 0.003), (0.07, 0.055, 0.003), (0.85, 0.55, 0.55, 1))
    centre = np.array([cx, cy])
    target_xy = _place_apart(rng, centre, 0.03, len(TARGET_COLOURS), 0.022)
    for (cname, rgba), xy in zip(TARGET_COLOURS.items(), target_xy, strict=True):
        body = wb.add_body(name=f"target_{cname}", pos=[xy[0], xy[1], pad_top])
        body.add_geom(name=f"target_{cname}_disc", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                      size=[0.006, 0.0006, 0], pos=[0, 0, 0.0006], rgba=list(rgba), contype=0, conaffinity=0)
    peg_xy = _place_apart(rng, centre, 0.06, 4, 0.02, taken=target_xy)
    for i, xy in enumerate(peg_xy):
        body = wb.add_body(name=f"peg_{i}", pos=[xy[0], xy[1], pad_top])
        body.add_geom(name=f"peg_{i}_geom", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[0.0025, 0.012, 0],
                      pos=[0, 0, 0.012], rgba=[0.9, 0.9, 0.85, 1])
    block_xy = _place_apart(rng, centre, 0.05, 2, 0.025, taken=target_xy + peg_xy)
    for i, xy in enumerate(block_xy):
        body = wb.add_body(name=f"block_{i}", pos=[xy[0], xy[1], pad_top + 0.006],
                           quat=list(_yaw_quat(rng.uniform(-np.pi, np.pi))))
        body.add_freejoint(name=f"block_{i}_free")
        body.add_geom(name=f"block_{i}_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.006, 0.006, 0.006],
                      rgba=[0.95, 0.6, 0.1, 1], mass=0.004)
    # suture needle: a 3/8 circle, radius 12 mm, built from capsule segments
    nxy = _place_apart(rng, centre, 0.06, 1, 0.02, taken=target_xy + peg_xy + block_xy)[0]
    needle = wb.add_body(name="needle", pos=[nxy[0], nxy[1], pad_top + 0.0008],
                         quat=list(_yaw_quat(rng.uniform(-np.pi, np.pi))))
    needle.add_freejoint(name="needle_free")
    r, arc, nseg = NEEDLE_RADIUS_M, 0.75 * np.pi, 6
    angles = np.linspace(-arc / 2, arc / 2, nseg + 1)
    for i in range(nseg):
        a0, a1 = angles[i], angles[i + 1]
        needle.add_geom(name=f"needle_seg_{i}", type=mujoco.mjtGeom.mjGEOM_CAPSULE,
                        fromto=[r * np.cos(a0), r * np.sin(a0), 0, r * np.cos(a1), r * np.sin(a1), 0],
                        size=[0.0008, 0, 0], rgba=[0.8, 0.8, 0.85, 1], mass=0.0003)
    _add_task_objects(wb, rng, centre, pad_top, taken=target_xy + peg_xy + block_xy + [nxy])
    return psm_port, psm_dir, psm_lean


# Peg-transfer block: small enough for the PSM jaws (they open ~6 mm at mid-finger).
TRANSFER_BLOCK = "block_transfer"
NEEDLE_RADIUS_M = 0.012               # the suture needle's circle (a 3/8 arc of it is built)
TRANSFER_BLOCK_HALF = 0.0025          # m, half edge
TRANSFER_BLOCK_MASS = 0.0005          # kg
TRANSFER_BLOCK_RGBA = (0.95, 0.85, 0.15, 1.0)


def _add_task_objects(wb, rng: np.random.Generator, centre, pad_top: float, taken) -> None:
    """Objects the tasks (sim/tasks) need beyond the scene's own set: the peg-transfer block."""
    xy = _place_apart(rng, centre, 0.05, 1, 0.02, taken=taken)[0]
    body = wb.add_body(name=TRANSFER_BLOCK, pos=[xy[0], xy[1], pad_top + TRANSFER_BLOCK_HALF],
                       quat=list(_yaw_quat(rng.uniform(-np.pi, np.pi))))
    body.add_freejoint(name=f"{TRANSFER_BLOCK}_free")
    body.add_geom(name=f"{TRANSFER_BLOCK}_geom", type=mujoco.mjtGeom.mjGEOM_BOX, size=[TRANSFER_BLOCK_HALF] * 3,
                  rgba=list(TRANSFER_BLOCK_RGBA), mass=TRANSFER_BLOCK_MASS, condim=4, friction=[1.0, 0.02, 0.001])


def _entry_stiffness(spec: mujoco.MjSpec, k: float) -> None:
    """The entry point's lateral stiffness as a model numeric (read by sim/entry_point.py)."""
    spec.add_numeric(name=ENTRY_STIFFNESS_NUMERIC, data=[float(k)], size=1)


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def endonasal(spec: mujoco.MjSpec, rng: np.random.Generator, line: ScopeLine):
    """Supine head phantom; nostril = fulcrum; sphenoid target ~85 mm deep."""
    port, u = line.port, line.direction
    wb = spec.worldbody
    q_head = quat_z_to(u)                                # frame: z along the approach
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, q_head)
    rot = rot.reshape(3, 3)
    head_r = 0.085
    head_c = port + head_r * u
    table_top = head_c[2] - head_r - 0.03                 # head rest 30 mm thick
    add_static_box(wb, "table_top", (head_c[0] + 0.25, head_c[1], table_top - 0.015), (0.45, 0.3, 0.015),
                    (0.55, 0.42, 0.3, 1))
    for i, (dx, dy) in enumerate([(-0.4, -0.25), (-0.4, 0.25), (0.4, -0.25), (0.4, 0.25)]):
        add_static_box(wb, f"table_leg_{i}", (head_c[0] + 0.25 + dx, head_c[1] + dy, (table_top - 0.03) / 2),
                        (0.025, 0.025, (table_top - 0.03) / 2), (0.3, 0.3, 0.3, 1))
    add_static_box(wb, "head_rest", (head_c[0], head_c[1], table_top + 0.015), (0.07, 0.09, 0.015),
                    (0.2, 0.2, 0.25, 1))
    skin = (0.87, 0.72, 0.62, 1)
    wb.add_geom(name="head_shell", type=mujoco.mjtGeom.mjGEOM_ELLIPSOID, pos=list(head_c),
                size=[0.075, 0.09, head_r], quat=list(q_head), rgba=list(skin), group=OUTER_GROUP,
                contype=0, conaffinity=0)
    wb.add_geom(name="head_nose", type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(port - 0.008 * u + 0.012 * rot[:, 1]),
                size=[0.009, 0.014, 0.01], quat=list(q_head), rgba=list(skin), group=OUTER_GROUP,
                contype=0, conaffinity=0)
    wb.add_site(name="scope_port", pos=list(port), size=[0.003, 0, 0], rgba=[0, 1, 1, 1], group=SCENE_SITE_GROUP)
    _entry_stiffness(spec, NOSTRIL_STIFFNESS)

    # Nasal corridor (after posterior septectomy: one channel for both nostrils)
    # and the sphenoid sinus chamber, in the approach frame (z = depth).
    mucosa = (0.78, 0.38, 0.38, 1)
    frame = wb.add_frame(name="nasal_frame", pos=list(port), quat=list(q_head))
    cw_x, cw_y, c0, c1 = 0.018, 0.013, 0.004, 0.066
    zc, hz = (c0 + c1) / 2, (c1 - c0) / 2
    for name, pos, size in [("nasal_wall_left", (-cw_x, 0, zc), (0.002, cw_y, hz)),
                            ("nasal_wall_right", (cw_x, 0, zc), (0.002, cw_y, hz)),
                            ("nasal_floor", (0, cw_y, zc), (cw_x, 0.002, hz)),
                            ("nasal_roof", (0, -cw_y, zc), (cw_x, 0.002, hz))]:
        add_static_box(frame, name, pos, size, mucosa, collide=False)
    sw, s0, s1 = 0.024, c1, 0.092
    sz, shz = (s0 + s1) / 2, (s1 - s0) / 2
    bone = (0.55, 0.46, 0.38, 1)
    for name, pos, size in [("sphenoid_wall_left", (-sw, 0, sz), (0.002, sw, shz)),
                            ("sphenoid_wall_right", (sw, 0, sz), (0.002, sw, shz)),
                            ("sphenoid_floor", (0, sw, sz), (sw, 0.002, shz)),
                            ("sphenoid_roof", (0, -sw, sz), (sw, 0.002, shz)),
                            ("sphenoid_back", (0, 0, s1), (sw, sw, 0.002))]:
        add_static_box(frame, name, pos, size, bone, collide=False)
    # sella/pituitary target on the back wall, seeded lateral offset
    off = rng.uniform(-0.006, 0.006, size=2)
    depth = 0.085
    target_pos = port + rot @ np.array([off[0], off[1], depth])
    body = wb.add_body(name="sphenoid_target", pos=list(target_pos), quat=list(q_head))
    body.add_geom(name="sphenoid_target_geom", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.005, 0, 0],
                  rgba=list(SPHENOID_TARGET_RGBA), contype=0, conaffinity=0)
    wb.add_site(name="task_center", pos=list(target_pos), size=[0.003, 0, 0], group=SCENE_SITE_GROUP)
    # Second nostril for the PSM: 12 mm beside the scope's, aimed at the target.
    psm_port = port + 0.012 * rot[:, 0]
    wb.add_site(name="psm_port", pos=list(psm_port), size=[0.003, 0, 0], rgba=[1, 0, 1, 1], group=SCENE_SITE_GROUP)
    return psm_port, target_pos - psm_port, np.array([0.9, -0.45, 1.0])


LAYOUTS = {"box_trainer": box_trainer, "endonasal": endonasal}
