"""Scenes: the G1 (holding the endoscope) and the PSM composed with a task set-up.

`build_model(scene, seed)` returns a compiled `mujoco.MjModel`; `build_spec`
returns the `MjSpec` before compilation (to add things in a test or a task).

Layout: the world frame is on the floor, z up; the G1 pelvis stands at
(0, 0, 0.793) facing +x.  The right arm's standing posture (`STAND_POSTURE`,
keyframe `stand`) is chosen first; the scope shaft line is then computed with
forward kinematics of the G1 model alone, and the port (`scope_port`, the
fulcrum) is put on that line `INSERTION_DEPTH` behind the tip.  The box
trainer / head phantom is placed relative to the port, so the keyframe puts
the shaft through the port by construction (tests check it independently).
The task set-ups themselves (box trainer, endonasal phantom, their objects and
colours) are in `sim.scene_layouts`.

Robot names stay unprefixed (joint/site names are the contract).

Seeds place the task objects reproducibly (numpy default_rng(seed)).
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import mujoco
import numpy as np

from surgbot.contract import G1_JOINT_NAMES, SCENES
from surgbot.sim.scene_layouts import LAYOUTS, box_trainer, quat_z_to

MODELS_DIR = Path(__file__).resolve().parent / "models"
G1_XML = MODELS_DIR / "g1_29dof.xml"
PSM_XML = MODELS_DIR / "psm.xml"
PSM_ROOT_BODY = "PSM1_base"

TIMESTEP = 0.002               # 500 Hz, the G1 lowstate rate
INSERTION_DEPTH = 0.050        # scope inserted past the fulcrum in the stand pose (m)
PSM_START_INSERTION = 0.050    # PSM instrument insertion in the stand keyframe (m), inside 0..0.24
# Standing posture: legs straight (feet on the floor with the pelvis at 0.793 m),
# left arm relaxed, right arm forward with the wrist pitched down so the scope
# points ~48 deg below horizontal into the task area.  Every value is well
# inside the joint limits (FACTS.md).
STAND_POSTURE: dict[str, float] = {name: 0.0 for name in G1_JOINT_NAMES}
STAND_POSTURE.update({
    "left_shoulder_pitch_joint": 0.2,
    "left_shoulder_roll_joint": 0.25,
    "left_elbow_joint": 0.9,
    "right_shoulder_pitch_joint": -0.4,
    "right_shoulder_roll_joint": -0.15,
    "right_shoulder_yaw_joint": 0.3,
    "right_elbow_joint": 0.6,
    "right_wrist_pitch_joint": 0.6,
})

TASK_BODY_PREFIXES = ("target_", "block_", "needle", "tissue", "peg_", "sphenoid_target")


@dataclass(frozen=True)
class ScopeLine:
    """The scope shaft in world coordinates in the stand pose."""
    tip: np.ndarray        # endoscope_tip position
    direction: np.ndarray  # unit vector, shaft base -> tip
    port: np.ndarray       # fulcrum on the line, INSERTION_DEPTH behind the tip


@lru_cache(maxsize=1)
def stand_scope_line() -> ScopeLine:
    """Forward kinematics of the G1 alone at STAND_POSTURE (pelvis as in the file)."""
    model = mujoco.MjModel.from_xml_path(str(G1_XML))
    data = mujoco.MjData(model)
    for name, q in STAND_POSTURE.items():
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = q
    mujoco.mj_kinematics(model, data)
    tip = data.site("endoscope_tip").xpos.copy()
    base = data.site("endoscope_shaft_base").xpos.copy()
    u = (tip - base) / np.linalg.norm(tip - base)
    return ScopeLine(tip=tip, direction=u, port=tip - INSERTION_DEPTH * u)


def _common(spec: mujoco.MjSpec) -> None:
    spec.modelname = "surgbot_scene"
    spec.option.timestep = TIMESTEP
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.visual.global_.offwidth = 1280
    spec.visual.global_.offheight = 960
    # The endoscope looks at things 5-150 mm away: near plane must be ~1 mm.
    spec.stat.extent = 2.0
    spec.visual.map.znear = 0.0005     # x extent = 1 mm
    spec.visual.map.zfar = 5.0         # x extent = 10 m
    spec.visual.headlight.ambient = [0.1, 0.1, 0.1]
    spec.visual.headlight.diffuse = [0.2, 0.2, 0.2]
    tex = spec.add_texture(name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D,
                           builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                           rgb1=[0.32, 0.34, 0.38], rgb2=[0.26, 0.28, 0.31], width=256, height=256)
    mat = spec.add_material(name="floor_mat", texrepeat=[8, 8], reflectance=0.0)
    mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
    wb = spec.worldbody
    wb.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[4, 4, 0.05], material="floor_mat")
    wb.add_light(name="room_light", pos=[0.5, 0.0, 3.0], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                 diffuse=[0.45, 0.45, 0.45], castshadow=False)
    wb.add_camera(name="overview", pos=[1.6, -1.3, 1.5], xyaxes=[0.63, 0.78, 0, -0.4, 0.32, 0.86], fovy=50)


@contextlib.contextmanager
def _quiet_attach():
    """Robots are attached with an empty prefix on purpose (their joint/site names
    are the contract); MuJoCo warns about that and about option conflicts at
    compile time.  Drop those two messages, pass anything else to stderr."""
    previous = mujoco.get_mju_user_warning()

    def handler(msg: str) -> None:
        if "empty prefix" in msg or "Attach conflict" in msg or "keeping parent value" in msg:
            return
        print(f"MuJoCo warning: {msg}", file=sys.stderr)

    mujoco.set_mju_user_warning(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _attach_robots(spec: mujoco.MjSpec, psm_rcm_pos, psm_shaft_dir, psm_lean) -> bool:
    """G1 at the world origin, PSM (when its model exists) with its RCM at the PSM port."""
    with _quiet_attach():
        g1 = mujoco.MjSpec.from_file(str(G1_XML))
        spec.attach(g1, prefix="", frame=spec.worldbody.add_frame(name="g1_mount"))
    return _attach_psm(spec, psm_rcm_pos, psm_shaft_dir, psm_lean)


def _attach_psm(spec: mujoco.MjSpec, psm_rcm_pos, psm_shaft_dir, psm_lean) -> bool:
    """The PSM (when its model exists) with its RCM at the PSM port."""
    with _quiet_attach():
        if not PSM_XML.exists():
            return False
        psm = mujoco.MjSpec.from_file(str(PSM_XML))
        # The PSM tool points along -z of PSM1_base at zero joints (dVRK DH), so
        # put the base's -z along the port -> task-area direction; the arm's
        # yaw axis (base -y) leans towards `psm_lean` (up and away from the G1).
        d = np.asarray(psm_shaft_dir, float)
        frame = spec.worldbody.add_frame(
            name="psm_mount", pos=list(psm_rcm_pos),
            quat=list(quat_z_to(-d, y_hint=-np.asarray(psm_lean, float))))
        spec.attach(psm, prefix="", frame=frame)
    return True


def build_spec(scene: str, seed: int = 0) -> mujoco.MjSpec:
    """The scene as an MjSpec with robots attached and the `stand` keyframe added."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r} (choose from {', '.join(SCENES)})")
    rng = np.random.default_rng(int(seed))
    line = stand_scope_line()
    spec = mujoco.MjSpec()
    _common(spec)
    # Robots first so the G1's qpos block starts at 0 (pelvis free joint, then contract order).
    # The task geometry decides where the PSM port is, so lay it out on a scratch spec first.
    scratch = mujoco.MjSpec()
    psm_port, psm_dir, psm_lean = LAYOUTS[scene](scratch, np.random.default_rng(int(seed)), line)
    has_psm = _attach_robots(spec, psm_port, psm_dir, psm_lean)
    LAYOUTS[scene](spec, rng, line)
    # Software GL (osmesa/llvmpipe): a shadow-casting light costs ~90 ms a frame
    # and reflections ~15 ms; the endoscope needs neither.
    for light in spec.lights:
        light.castshadow = False
    spec.modelname = f"surgbot_{scene}"
    spec.comment = f"scene={scene} seed={int(seed)} psm={'yes' if has_psm else 'no'}"
    # Keyframe `stand`: qpos0 with the G1 joints at STAND_POSTURE.
    with _quiet_attach():
        model = spec.compile()
    qpos = model.qpos0.copy()
    for name, q in STAND_POSTURE.items():
        qpos[model.jnt_qposadr[model.joint(name).id]] = q
    if has_psm:
        # The PSM powers on with its instrument part-inserted, inside the
        # insertion range (zero is the range's end: a limit warning at start).
        qpos[model.jnt_qposadr[model.joint("insertion").id]] = PSM_START_INSERTION
    spec.add_key(name="stand", qpos=list(qpos), ctrl=[0.0] * model.nu, time=0.0)
    return spec


def build_model(scene: str, seed: int = 0) -> mujoco.MjModel:
    """Compiled model of `scene` (`box_trainer` or `endonasal`) with object placement from `seed`."""
    spec = build_spec(scene, seed)
    with _quiet_attach():
        return spec.compile()


def has_psm(model: mujoco.MjModel) -> bool:
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, PSM_ROOT_BODY) >= 0


def task_bodies(model: mujoco.MjModel) -> list[str]:
    """Names of the task objects (targets, blocks, needle, pegs, ...) in the model."""
    names = []
    for i in range(model.nbody):
        name = model.body(i).name
        if name.startswith(TASK_BODY_PREFIXES):
            names.append(name)
    return names


def reset_to_stand(model: mujoco.MjModel, data: mujoco.MjData) -> None:
    """Put `data` at the `stand` keyframe (if the model has one) and run forward kinematics."""
    kid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, "stand")
    if kid >= 0:
        mujoco.mj_resetDataKeyframe(model, data, kid)
    else:
        mujoco.mj_resetData(model, data)
    mujoco.mj_forward(model, data)


# ------------------------------------------------ Gymnasium environments' scene
ENV_VIEW_BODY = "endoscope_view"      # mocap body carrying the camera in the environments
ENDOSCOPE_CAMERA = "endoscope_camera"


@lru_cache(maxsize=1)
def stand_camera_pose() -> tuple[np.ndarray, np.ndarray, float]:
    """World position, 3x3 rotation and fovy (deg) of `endoscope_camera` at STAND_POSTURE."""
    model = mujoco.MjModel.from_xml_path(str(G1_XML))
    data = mujoco.MjData(model)
    for name, q in STAND_POSTURE.items():
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = q
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    cam = model.camera(ENDOSCOPE_CAMERA).id
    return data.cam_xpos[cam].copy(), data.cam_xmat[cam].reshape(3, 3).copy(), float(model.cam_fovy[cam])


def build_env_spec(seed: int = 0) -> mujoco.MjSpec:
    """The box trainer and the PSM as in `build_spec`, without the G1.

    The Gymnasium environments need no humanoid: the holder's only effect on
    the image is where the scope looks from, so the endoscope camera rides a
    mocap body (`ENV_VIEW_BODY`) put where the G1 holds it (the tasks
    randomise it about the port).  Same layout code, same PSM mount."""
    line = stand_scope_line()
    spec = mujoco.MjSpec()
    _common(spec)
    scratch = mujoco.MjSpec()
    psm_port, psm_dir, psm_lean = box_trainer(scratch, np.random.default_rng(int(seed)), line)
    if not _attach_psm(spec, psm_port, psm_dir, psm_lean):
        raise RuntimeError(f"{PSM_XML} is missing")
    box_trainer(spec, np.random.default_rng(int(seed)), line)
    for light in spec.lights:
        light.castshadow = False
    pos, R, fovy = stand_camera_pose()
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, R.flatten())
    view = spec.worldbody.add_body(name=ENV_VIEW_BODY, pos=list(pos), quat=list(q), mocap=True)
    view.add_camera(name=ENDOSCOPE_CAMERA, fovy=fovy)
    spec.modelname = "surgbot_box_trainer_env"
    with _quiet_attach():
        model = spec.compile()
    qpos = model.qpos0.copy()
    qpos[model.jnt_qposadr[model.joint("insertion").id]] = PSM_START_INSERTION
    spec.add_key(name="stand", qpos=list(qpos), mpos=list(pos), mquat=list(q), time=0.0)
    return spec


def build_env_model(seed: int = 0) -> mujoco.MjModel:
    with _quiet_attach():
        return build_env_spec(seed).compile()
