"""Gymnasium environments of the box-trainer tasks (contract section 9).

Layered like SurRoL's: `SurgEnv` owns the MuJoCo model (the box trainer and
the PSM, sim/scene.py `build_env_model`), the PSM plant (sim/psm_plant.py,
the same motion model and servo semantics as the ROS twin) and the camera;
the task (sim/tasks/) lays the episode out and judges it; `ReachEnv`,
`NeedlePickEnv` and `PegTransferEnv` only name their task.

* action: float32 [10], absolute tool-tip pose in PSM1_base (position, 6D
  rotation) + jaw angle (contract section 7); each step sends it as one
  `servo_cp` + `jaw/servo_jp` pair (as the policy node does at 15 Hz) and
  advances physics 1/15 s.  A pose the arm cannot reach is refused by the
  PSM core (counted in info["rejected"]) and the arm holds, as on the twin.
* observation: {"image": uint8 HxWx3 endoscope view, "state": float32 [10]}
  (measured tool-tip pose in PSM1_base + measured jaw); with
  `images=False` only "state" (fast expert runs and tests).
* info: "success", "instruction", "task", "seed", "failure" (reason or ""),
  "elapsed_s", "rejected", "fault".
* reward 1 on success, else 0; terminated on success, failure or an arm
  FAULT; truncated at the task's horizon.
* determinism: `reset(seed=s)` lays out episode s; `reset()` without a seed
  draws the episode seed from the environment's generator;
  `reset(seed=s, options={"target": "blue"})` lays out episode s naming
  another allowed colour (`Task.retarget`; ValueError if not allowed).
"""

from __future__ import annotations

import os

# Headless software GL (see sim/runner.py); must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import gymnasium as gym  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium import spaces  # noqa: E402

from surgbot.geometry import invert_transform, matrix_from_pose10, pose10_from_matrix  # noqa: E402
from surgbot.kinematics import psm as kin  # noqa: E402
from surgbot.sim.camera_model import mujoco_pixels  # noqa: E402
from surgbot.sim.psm_core import PSMCore  # noqa: E402
from surgbot.sim.psm_plant import PSMPlant  # noqa: E402
from surgbot.sim.psm_state import ENABLED, FAULT  # noqa: E402
from surgbot.sim.scene import ENDOSCOPE_CAMERA, build_env_model  # noqa: E402
from surgbot.sim.scene_layouts import OUTER_GROUP  # noqa: E402
from surgbot.sim.tasks import BoxGeometry, Layout, apply_layout, configure_solver, get_task  # noqa: E402
from surgbot.sim.tasks.base import down_rotation  # noqa: E402

CONTROL_HZ = 15.0
DEFAULT_IMAGE_SIZE = (128, 128)                 # (height, width)
POSITION_BOUND_M = 1.0                          # observation/action box for positions (PSM1_base)
ROT6D_BOUND = 1.001                             # unit-vector entries, with room for float32 rounding
SETTLE_S = 0.2                                  # physics before the first observation (objects settle)
MAX_SEED = 2 ** 31 - 1
# The float32 action space's jaw bounds are the PSM's limits rounded to float32, which can lie just
# outside them (float32(1.396) = 1.39600003 > 1.396): a jaw that far outside is the limit.  Without
# it the policy's "fully open", clipped to the limit by the policy core and cast to float32, was
# refused by the PSM core at every step (env_rejected 12-94 in 11 of 24 failed peg_transfer episodes).
JAW_LIMITS_F32 = (float(np.float32(kin.JAW_LOWER)), float(np.float32(kin.JAW_UPPER)))


class SurgEnv(gym.Env):
    """One box-trainer task as a Gymnasium environment (see module doc)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(self, task: str, render_mode: str | None = None, image_size=DEFAULT_IMAGE_SIZE,
                 images: bool = True):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} not supported (only 'rgb_array')")
        h, w = (int(v) for v in image_size)
        if not (16 <= h <= 960 and 16 <= w <= 1280):
            raise ValueError(f"image size {h}x{w} outside 16x16 .. 960x1280")
        self.task = get_task(task)
        self.render_mode = render_mode
        self.image_size = (h, w)
        self.images = bool(images)
        self.model = build_env_model()
        configure_solver(self.model, sleep=True)
        self.data = mujoco.MjData(self.model)
        self.geo = BoxGeometry(self.model)
        self.plant = PSMPlant(self.model)
        self._key = self.model.key("stand").id
        self._renderer: mujoco.Renderer | None = None
        self._scene_option = mujoco.MjvOption()
        self._scene_option.geomgroup[OUTER_GROUP] = 0
        bound = np.array([POSITION_BOUND_M] * 3 + [ROT6D_BOUND] * 6 + [kin.JAW_UPPER], np.float32)
        low = np.array([-POSITION_BOUND_M] * 3 + [-ROT6D_BOUND] * 6 + [kin.JAW_LOWER], np.float32)
        self.action_space = spaces.Box(low, bound, dtype=np.float32)
        obs = {"state": spaces.Box(low, bound, dtype=np.float32)}
        if self.images:
            obs = {"image": spaces.Box(0, 255, (h, w, 3), dtype=np.uint8), **obs}
        self.observation_space = spaces.Dict(obs)
        self.layout: Layout | None = None
        self.monitor = None
        self._t0 = 0.0
        self._steps = 0
        self._rejected = 0
        self._base = np.eye(4)
        self._base_inv = np.eye(4)

    # --------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(MAX_SEED))
        m, d = self.model, self.data
        self.layout = self.task.layout(episode_seed, self.geo.centre)
        target = (options or {}).get("target")
        if target is not None:          # the same episode naming another colour (Task.retarget)
            self.layout = self.task.retarget(self.layout, target)
        # With sleeping on, MuJoCo skips the kinematics of sleeping and static
        # bodies; the layout just moved them, so compute everything once awake.
        sleep = m.opt.enableflags & mujoco.mjtEnableBit.mjENBL_SLEEP
        m.opt.enableflags &= ~sleep
        mujoco.mj_resetDataKeyframe(m, d, self._key)
        apply_layout(m, d, self.geo, self.layout)
        mujoco.mj_forward(m, d)
        m.opt.enableflags |= sleep
        self._base = self.plant.base_pose(d)
        self._base_inv = invert_transform(self._base)
        self._place_arm(self.layout)
        self.monitor = self.task.monitor(self.geo, self.layout)
        self._rejected = 0
        for _ in range(int(round(SETTLE_S / m.opt.timestep))):
            self._physics_step(())
        self._t0 = float(d.time)
        self._steps = 0
        return self._observation(), self._info()

    def step(self, action):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (10,):
            raise ValueError(f"action must have shape (10,), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("action contains NaN or inf")
        try:
            T, jaw = matrix_from_pose10(a)
        except ValueError as exc:
            raise ValueError(f"action: {exc}") from None
        if JAW_LIMITS_F32[0] <= jaw < kin.JAW_LOWER or kin.JAW_UPPER < jaw <= JAW_LIMITS_F32[1]:
            jaw = float(np.clip(jaw, kin.JAW_LOWER, kin.JAW_UPPER))
        commands = [("servo_cp", (T, None)), ("jaw_servo_jp", ([], [jaw]))]
        self._steps += 1
        accepted = self._physics_step(commands)
        self._rejected += sum(not ok for ok in accepted)
        # 1/15 s is not a whole number of 2 ms steps: step to the k-th control instant
        end = self._t0 + self._steps / CONTROL_HZ - 0.5 * self.model.opt.timestep
        while self.data.time < end:
            self._physics_step(())
        status = self.monitor.update(self.data, float(self.data.time))
        fault = self.plant.core.state == FAULT
        self.plant.core.outbox.clear()
        terminated = bool(status.success or status.failed or fault)
        truncated = bool(not terminated and self.elapsed_s >= self.task.horizon_s - 1e-9)
        return self._observation(), float(status.success), terminated, truncated, self._info()

    def render(self):
        if self.render_mode == "rgb_array":
            return self._render()
        return None

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ------------------------------------------------------------- helpers
    @property
    def elapsed_s(self) -> float:
        return float(self.data.time) - self._t0

    @property
    def psm_base(self) -> np.ndarray:
        """4x4 of PSM1_base in world (fixed for an episode)."""
        return self._base.copy()

    def to_base(self, T_world: np.ndarray) -> np.ndarray:
        return self._base_inv @ T_world

    def _physics_step(self, commands) -> list[bool]:
        d = self.data
        accepted = self.plant.apply_commands(float(d.time), commands) if commands else []
        self.plant.control(d, float(d.time), self.model.opt.timestep)
        mujoco.mj_step(self.model, d)
        return accepted

    def _place_arm(self, layout: Layout) -> None:
        """Start ENABLED and homed with the jaw tip at the layout's start pose (jaws closed)."""
        x, y, h, yaw = layout.start
        T = np.eye(4)
        T[:3, :3] = down_rotation(yaw)
        T[:3, 3] = [x, y, self.geo.pad_top + h + self.geo.jaw_length]
        q = kin.ik(self.to_base(T), seed=kin.HOME).q
        self.plant.core = PSMCore(state=ENABLED, is_homed=True, state_changed=False)
        self.plant.set_joints(self.data, q, 0.0)
        self.plant.core.step(float(self.data.time), q, np.zeros(6), 0.0)
        mujoco.mj_forward(self.model, self.data)

    def measured_tip(self) -> np.ndarray:
        """The tool tip position in PSM1_base, m (the state's first three values)."""
        return self.plant.measured_cp(self.data)[:3, 3].copy()

    def _state(self) -> np.ndarray:
        return pose10_from_matrix(self.plant.measured_cp(self.data), self.plant.jaw(self.data))

    def endoscope_renderer(self) -> mujoco.Renderer:
        """The renderer of the endoscope image (made on first use); wrappers that restyle the
        scene (policies/evaluation/appearance.py) repaint its textures."""
        if self._renderer is None:
            h, w = self.image_size
            self._renderer = mujoco.Renderer(self.model, h, w)
        return self._renderer

    def image_points(self, points_world: np.ndarray) -> np.ndarray:
        """[N, 3] world points -> [N, 2] (column, row) where the endoscope image shows them now, in pixels
        of `image_size` ((0, 0) the top-left corner; a point behind the camera is an error)."""
        cam = self.model.camera(ENDOSCOPE_CAMERA).id
        h, w = self.image_size
        pixels, depth = mujoco_pixels(points_world, self.data.cam_xpos[cam], self.data.cam_xmat[cam].reshape(3, 3),
                                      float(self.model.cam_fovy[cam]), w, h)
        if np.any(depth <= 0):
            raise ValueError("a point at or behind the endoscope camera has no image position")
        return pixels

    def endoscope_image(self) -> np.ndarray:
        """The endoscope view now (uint8 HxWx3), whatever the render_mode."""
        return self._render()

    def _render(self) -> np.ndarray:
        renderer = self.endoscope_renderer()
        renderer.update_scene(self.data, camera=ENDOSCOPE_CAMERA, scene_option=self._scene_option)
        return renderer.render().copy()

    def _observation(self) -> dict:
        obs = {"state": self._state()}
        if self.images:
            obs["image"] = self._render()
        return obs

    def _info(self) -> dict:
        st = self.monitor.status
        return {"success": bool(st.success), "failure": st.reason if st.failed else "",
                "instruction": self.layout.instruction, "task": self.task.name, "seed": self.layout.seed,
                "elapsed_s": self.elapsed_s, "rejected": self._rejected,
                "fault": self.plant.core.state == FAULT}


class ReachEnv(SurgEnv):
    def __init__(self, **kwargs):
        super().__init__("reach", **kwargs)


class NeedlePickEnv(SurgEnv):
    def __init__(self, **kwargs):
        super().__init__("needle_pick", **kwargs)


class PegTransferEnv(SurgEnv):
    def __init__(self, **kwargs):
        super().__init__("peg_transfer", **kwargs)
