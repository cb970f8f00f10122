"""The `sim` video source: a stand-in for a learned video world model, on CPU.

It does NOT learn anything: it renders new task episodes in the MuJoCo box
trainer with the appearance randomised beyond the demonstrations
(`appearance.py`) and scripted experts moving in a style the demos do not
show (speeds outside the demos' 14-24 mm/s, wider detours and clearances,
a slow hand sway).  What a learned world model (Cosmos-Predict on a GPU)
would produce from a start frame and a prompt is replaced by a rendered
episode, so the rest of the pipeline (IDM labelling, training on pseudo
kinematics) runs end to end here; `--backend folder` takes the real thing.

One interface for every source: `generate(task, prompt, first_frame,
n_frames, seed) -> frames`.  The sim source lays the scene out from `seed`
(its own first frame; `first_frame` is what a learned model would start
from and is ignored here) and uses the layout's instruction unless `prompt`
names another paraphrase.  `episode(seed)` also returns the withheld truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import mujoco
import numpy as np

from surgbot.geometry import matrix_to_quat
from surgbot.policies.video.appearance import Appearance, ImageStyler, SceneStyler
from surgbot.sim.camera_model import mujoco_pixels
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.experts import make_expert
from surgbot.sim.envs.surg_env import CONTROL_HZ
from surgbot.sim.scene import ENDOSCOPE_CAMERA, ENV_VIEW_BODY
from surgbot.sim.scene_layouts import OUTER_GROUP
from surgbot.sim.tasks.base import view_pose

# Expert style outside the demos' ranges (sim/tasks/base.py Task._finish).
SLOW_SPEEDS = (0.009, 0.013)
FAST_SPEEDS = (0.025, 0.030)
VIA_OFFSET_M = (0.006, 0.012)
CLEARANCES_M = ((0.005, 0.007), (0.015, 0.018))
SWAY_M = 0.0006                      # hand sway amplitude on the commanded position
SWAY_HZ = (0.4, 1.2)
AFFORDANCE_BODIES = {"reach": ("target_{colour}",), "needle_pick": ("needle",),
                     "peg_transfer": ("block_transfer", "target_{colour}")}


@dataclass
class Episode:
    frames: np.ndarray           # uint8 [T, H, W, 3]
    states: np.ndarray           # float32 [T, 10] measured (withheld)
    actions: np.ndarray          # float32 [T, 10] commanded (withheld)
    tip_px: np.ndarray           # float32 [T, 2] jaw tip in the image (u right, v down)
    prompt: str
    task: str
    seed: int
    success: bool
    appearance: dict
    style: dict
    affordance: np.ndarray | None = None   # bool [H, W] of the first frame

    @property
    def first_state(self) -> np.ndarray:
        return self.states[0]


def style_shift(rng: np.random.Generator, style: dict) -> dict:
    """The expert's style moved outside the demos' ranges."""
    speeds = SLOW_SPEEDS if rng.random() < 0.5 else FAST_SPEEDS
    clear = CLEARANCES_M[int(rng.integers(2))]
    side = 1.0 if rng.random() < 0.5 else -1.0
    return {**style, "speed_mps": float(rng.uniform(*speeds)), "via_offset_m": side * float(rng.uniform(*VIA_OFFSET_M)),
            "clearance_m": float(rng.uniform(*clear)), "sway_hz": float(rng.uniform(*SWAY_HZ)),
            "sway_phase": float(rng.uniform(0, 2 * math.pi))}


class SimVideoSource:
    """Renders randomised expert episodes of one task (see module doc)."""

    def __init__(self, task: str, image_size=(128, 128), shift: str = "strong", demo_style: bool | None = None):
        self.task = task
        self.h, self.w = (int(v) for v in image_size)
        self.shift = shift
        self.demo_style = (shift == "none") if demo_style is None else bool(demo_style)
        self.env = gym.make(ENV_IDS[task], images=False)
        self.u = self.env.unwrapped
        self.expert = make_expert(self.env)
        m = self.u.model
        self.renderer = mujoco.Renderer(m, self.h, self.w)
        self.option = mujoco.MjvOption()
        self.option.geomgroup[OUTER_GROUP] = 0
        self.cam = m.camera(ENDOSCOPE_CAMERA).id
        self.view_mocap = int(m.body_mocapid[m.body(ENV_VIEW_BODY).id])
        self.fovy = float(m.cam_fovy[self.cam])
        self.scene = SceneStyler(m)

    def close(self) -> None:
        self.scene.apply(Appearance(), self.renderer)
        self.renderer.close()
        self.env.close()

    # ------------------------------------------------------------ interface
    def generate(self, task: str, prompt: str | None, first_frame: np.ndarray | None, n_frames: int | None,
                 seed: int) -> np.ndarray:
        if task != self.task:
            raise ValueError(f"this source renders {self.task!r}, asked for {task!r}")
        ep = self.episode(seed, n_frames=n_frames)
        if prompt and prompt != ep.prompt and prompt not in self.u.task.instructions:
            raise ValueError(f"prompt {prompt!r} is not an instruction of {task}")
        return ep.frames

    def episode(self, seed: int, n_frames: int | None = None, affordance: bool = False) -> Episode:
        # separate streams: the same seed moves the expert alike whatever the appearance
        look = Appearance.draw(np.random.default_rng([int(seed), 7]), self.shift)
        self.scene.apply(look, self.renderer)
        styler = ImageStyler(look, self.h, self.w)
        env, u = self.env, self.u
        obs, info = env.reset(seed=int(seed))
        style = dict(u.layout.style)
        if not self.demo_style:
            style = style_shift(np.random.default_rng([int(seed), 8]), style)
            u.layout.style.clear()
            u.layout.style.update(style)
        base_view = np.add(u.layout.view, look.view)
        pos, R = view_pose(tuple(base_view))
        self._set_view(pos, R)
        self.expert.reset()
        frames, states, actions, tips = [], [], [], []
        mask = None
        limit = n_frames if n_frames else 10 ** 9
        while len(frames) < limit:
            jitter = styler.view_jitter()
            cam_pos, cam_R = view_pose((base_view[0] + jitter[0], base_view[1] + jitter[1],
                                        base_view[2] + jitter[2], base_view[3]))
            frames.append(styler(self._render(cam_pos, cam_R)))
            if affordance and mask is None:
                mask = self._affordance(cam_pos, cam_R)
            tips.append(self._project(u.geo.jaw_tip(u.data), cam_pos, cam_R))
            action = self.expert.act()
            if not self.demo_style:
                action = self._sway(action, len(actions) / CONTROL_HZ, style)
            states.append(obs["state"])
            actions.append(np.asarray(action, np.float32))
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        self.scene.restore()
        return Episode(frames=np.stack(frames), states=np.stack(states).astype(np.float32),
                       actions=np.stack(actions), tip_px=np.asarray(tips, np.float32), prompt=info["instruction"],
                       task=self.task, seed=int(seed), success=bool(info["success"]), appearance=look.to_json(),
                       style={k: float(v) for k, v in style.items()}, affordance=mask)

    # -------------------------------------------------------------- helpers
    def _sway(self, action: np.ndarray, t: float, style: dict) -> np.ndarray:
        a = action.copy()
        w = 2 * math.pi * style["sway_hz"] * t + style["sway_phase"]
        a[0] += SWAY_M * math.sin(w)
        a[1] += SWAY_M * math.cos(1.3 * w)
        return a

    def _set_view(self, pos: np.ndarray, R: np.ndarray) -> None:
        """Move the scope's camera (a mocap body with no geoms: physics does not see it)."""
        x, y, z, w = matrix_to_quat(R)
        self.u.data.mocap_pos[self.view_mocap] = pos
        self.u.data.mocap_quat[self.view_mocap] = (w, x, y, z)
        mujoco.mj_kinematics(self.u.model, self.u.data)
        mujoco.mj_camlight(self.u.model, self.u.data)

    def _render(self, cam_pos: np.ndarray, cam_R: np.ndarray) -> np.ndarray:
        d = self.u.data
        saved = d.cam_xpos[self.cam].copy(), d.cam_xmat[self.cam].copy()
        d.cam_xpos[self.cam] = cam_pos
        d.cam_xmat[self.cam] = cam_R.reshape(-1)
        self.renderer.update_scene(d, camera=ENDOSCOPE_CAMERA, scene_option=self.option)
        d.cam_xpos[self.cam], d.cam_xmat[self.cam] = saved
        return self.renderer.render().copy()

    def _project(self, p_world: np.ndarray, cam_pos: np.ndarray, cam_R: np.ndarray) -> tuple[float, float]:
        """Pixel (u right, v down) of a world point in the MuJoCo camera (looks along -z, y up)."""
        pixels, depth = mujoco_pixels(p_world, cam_pos, cam_R, self.fovy, self.w, self.h)
        if depth[0] <= 1e-6:
            return (float("nan"), float("nan"))
        return (float(pixels[0, 0]), float(pixels[0, 1]))

    def _affordance(self, cam_pos: np.ndarray, cam_R: np.ndarray) -> np.ndarray:
        """Pixels of the objects the task acts on (segmentation render of the first frame)."""
        lay = self.u.layout
        bodies = [b.format(colour=lay.target) for b in AFFORDANCE_BODIES[self.task]]
        geoms = {g for name in bodies for g in self.u.geo.body_geoms.get(name, [])}
        self.renderer.enable_segmentation_rendering()
        try:
            seg = self._render(cam_pos, cam_R)
        finally:
            self.renderer.disable_segmentation_rendering()
        ids, types = seg[..., 0], seg[..., 1]
        mask = (types == int(mujoco.mjtObj.mjOBJ_GEOM)) & np.isin(ids, list(geoms))
        return mask
