"""Appearance randomisation beyond the demonstrations, for the `sim` video source.

The recorded demos always show the same box trainer: one tissue colour, one
light, a clean lens, the view within +-3 deg / +-3 mm of the holder's pose.
A learned world model's clips differ from them in look; the `sim` source
imitates that shift so the IDM is measured on video it has not seen the
like of.  Per clip (`Appearance.draw(rng)`):

* in the scene (MuJoCo model, restored after the clip): tissue colour and a
  procedural tissue texture (blotches and vessels, uploaded to the GL
  context), object, tool, floor colours; light intensity, colour, position
  and specular strength; tissue shininess (specular highlights move with
  the view and the light);
* in the image (numpy/OpenCV after rendering): gamma, contrast, saturation,
  sensor noise, lens blur (varying per frame), drifting smoke/haze,
  vignetting, a few wet-tissue glints;
* the endoscope view: an offset about the port of up to +-5 deg pan/tilt,
  +-6 deg roll and +-5 mm insertion (wider than the demos' +-3 deg /
  +-3 mm, inside what the holder reaches), plus per-frame tremor.

`shift="none"` draws the demos' own appearance (nothing changed): the
held-out "real" episodes of the IDM benchmark are made that way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import mujoco
import numpy as np

SHIFTS = ("none", "strong")
VIEW_PAN_TILT_DEG = 5.0
VIEW_ROLL_DEG = 6.0
VIEW_INSERTION_M = 0.005
TREMOR_STEP_DEG = 0.12           # random-walk step of the per-frame view tremor
TREMOR_MAX_DEG = 0.6
TEXTURE_NAME = "floor_tex"        # the scene's only texture, repainted as tissue
MATERIAL_NAME = "floor_mat"
TISSUE_GEOM = "tissue_pad"


@dataclass
class Appearance:
    shift: str = "none"
    tissue_rgb: tuple = (0.85, 0.55, 0.55)
    texture_seed: int = 0
    texture_repeat: float = 1.0
    shininess: float = 0.5
    specular: float = 0.3
    colour_jitter: float = 0.0        # +- per channel on other geoms
    light_scale: float = 1.0
    light_tint: tuple = (1.0, 1.0, 1.0)
    light_offset_m: tuple = (0.0, 0.0, 0.0)
    headlight: float = 1.0
    gamma: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    noise_sigma: float = 0.0
    blur_sigma: float = 0.0
    haze: float = 0.0
    vignette: float = 0.0
    glints: int = 0
    view: tuple = (0.0, 0.0, 0.0, 0.0)    # pan, tilt, roll (deg), insertion (m) offset on the layout's view
    tremor: bool = False
    rng_seed: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def draw(cls, rng: np.random.Generator, shift: str) -> Appearance:
        if shift not in SHIFTS:
            raise ValueError(f"unknown appearance shift {shift!r} (choose from {', '.join(SHIFTS)})")
        seed = int(rng.integers(2 ** 31))
        if shift == "none":
            return cls(shift=shift, rng_seed=seed)
        u = rng.uniform
        return cls(
            shift=shift,
            tissue_rgb=(u(0.6, 1.0), u(0.28, 0.7), u(0.25, 0.65)),
            texture_seed=int(rng.integers(2 ** 31)), texture_repeat=float(u(1.0, 3.0)),
            shininess=float(u(0.3, 1.0)), specular=float(u(0.2, 0.9)), colour_jitter=float(u(0.05, 0.15)),
            light_scale=float(u(0.6, 1.6)), light_tint=(u(0.85, 1.0), u(0.85, 1.0), u(0.8, 1.0)),
            light_offset_m=tuple(float(v) for v in u(-0.03, 0.03, size=3)), headlight=float(u(0.5, 1.8)),
            gamma=float(u(0.8, 1.25)), contrast=float(u(0.8, 1.2)), saturation=float(u(0.7, 1.3)),
            noise_sigma=float(u(0.0, 4.0)), blur_sigma=float(u(0.0, 1.2)), haze=float(u(0.0, 0.35)),
            vignette=float(u(0.0, 0.5)), glints=int(rng.integers(0, 5)),
            view=(float(u(-VIEW_PAN_TILT_DEG, VIEW_PAN_TILT_DEG)), float(u(-VIEW_PAN_TILT_DEG, VIEW_PAN_TILT_DEG)),
                  float(u(-VIEW_ROLL_DEG, VIEW_ROLL_DEG)), float(u(-VIEW_INSERTION_M, VIEW_INSERTION_M))),
            tremor=True, rng_seed=seed)

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def tissue_texture(seed: int, height: int, width: int, rgb) -> np.ndarray:
    """uint8 [H, W, 3]: smooth blotches and thin darker vessels over a base colour."""
    rng = np.random.default_rng(seed)
    base = np.asarray(rgb, np.float32)
    low = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 12)
    low /= max(1e-6, float(np.abs(low).max()))
    img = base[None, None, :] * (1.0 + 0.18 * low[..., None])
    vessels = np.zeros((height, width), np.float32)
    for _ in range(int(rng.integers(3, 8))):
        pts = np.cumsum(rng.normal(0, 6, (40, 2)), axis=0) + rng.uniform(0, [width, height])
        cv2.polylines(vessels, [pts.astype(np.int32)], False, 1.0, int(rng.integers(1, 3)))
    vessels = cv2.GaussianBlur(vessels, (0, 0), 1.0)
    img *= (1.0 - 0.35 * vessels[..., None] * np.array([0.3, 1.0, 1.0], np.float32))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


class SceneStyler:
    """Applies an `Appearance` to a compiled model (and GL context) and restores the original."""

    def __init__(self, model: mujoco.MjModel):
        self.model = model
        self._orig = {k: getattr(model, k).copy() for k in (
            "geom_rgba", "geom_matid", "light_diffuse", "light_specular", "light_ambient", "light_pos",
            "mat_specular", "mat_shininess", "mat_texrepeat", "mat_rgba", "tex_data")}
        self._head = (model.vis.headlight.ambient.copy(), model.vis.headlight.diffuse.copy())
        self.tex = model.texture(TEXTURE_NAME).id
        self.mat = model.material(MATERIAL_NAME).id
        self.tissue = model.geom(TISSUE_GEOM).id
        self._targets = {g for g in range(model.ngeom) if model.geom(g).name.startswith("target_")}

    def restore(self) -> None:
        for k, v in self._orig.items():
            getattr(self.model, k)[...] = v
        self.model.vis.headlight.ambient[:] = self._head[0]
        self.model.vis.headlight.diffuse[:] = self._head[1]

    def apply(self, a: Appearance, renderer: mujoco.Renderer | None) -> None:
        self.restore()
        if a.shift == "none":
            self._upload(renderer)
            return
        m = self.model
        rng = np.random.default_rng(a.rng_seed)
        for g in range(m.ngeom):
            if g == self.tissue:
                continue
            rgb = m.geom_rgba[g, :3]
            # named targets keep their hue (the instruction names the colour): smaller jitter
            j = a.colour_jitter * (0.4 if g in self._targets else 1.0)
            m.geom_rgba[g, :3] = np.clip(rgb + rng.uniform(-j, j, 3), 0.0, 1.0)
        h, w = int(m.tex_height[self.tex]), int(m.tex_width[self.tex])
        adr, nc = int(m.tex_adr[self.tex]), int(m.tex_nchannel[self.tex])
        tex = tissue_texture(a.texture_seed, h, w, (1.0, 1.0, 1.0))
        if nc == 4:
            tex = np.concatenate([tex, np.full((h, w, 1), 255, np.uint8)], axis=-1)
        m.tex_data[adr:adr + h * w * nc] = tex.reshape(-1)
        m.geom_matid[self.tissue] = self.mat
        m.geom_rgba[self.tissue, :3] = a.tissue_rgb
        m.mat_texrepeat[self.mat] = (a.texture_repeat, a.texture_repeat)
        m.mat_specular[self.mat] = a.specular
        m.mat_shininess[self.mat] = a.shininess
        tint = np.asarray(a.light_tint)
        m.light_diffuse[:] = np.clip(self._orig["light_diffuse"] * a.light_scale * tint, 0, 1)
        m.light_specular[:] = np.clip(self._orig["light_specular"] + a.specular * 0.5, 0, 1)
        m.light_pos[:] = self._orig["light_pos"] + np.asarray(a.light_offset_m)
        m.vis.headlight.ambient[:] = np.clip(self._head[0] * a.headlight, 0, 1)
        m.vis.headlight.diffuse[:] = np.clip(self._head[1] * a.headlight, 0, 1)
        self._upload(renderer)

    def _upload(self, renderer: mujoco.Renderer | None) -> None:
        """Textures live in the GL context: repaint it there (Renderer keeps no public handle)."""
        if renderer is None:
            return
        renderer._gl_context.make_current()
        mujoco.mjr_uploadTexture(self.model, renderer._mjr_context, self.tex)


class ImageStyler:
    """Per-frame image effects of an `Appearance` (deterministic from its seed)."""

    def __init__(self, a: Appearance, height: int, width: int):
        self.a = a
        self.h, self.w = height, width
        self.rng = np.random.default_rng(a.rng_seed + 1)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r = np.hypot((xx - width / 2) / (width / 2), (yy - height / 2) / (height / 2))
        self.vignette = (1.0 - a.vignette * np.clip(r - 0.4, 0, None) ** 2)[..., None]
        self.smoke = [cv2.GaussianBlur(self.rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0),
                                       max(height, width) / 8) for _ in range(2)]
        for s in self.smoke:
            s /= max(1e-6, float(np.abs(s).max()))
        self.glints = [(self.rng.uniform(0.2, 0.8) * width, self.rng.uniform(0.3, 0.9) * height,
                        self.rng.uniform(0.8, 2.0)) for _ in range(a.glints)]
        self.frame = 0
        self.tremor = np.zeros(3)

    def view_jitter(self) -> np.ndarray:
        """This frame's (pan, tilt, roll) tremor in degrees (a bounded random walk)."""
        if self.a.tremor:
            self.tremor = np.clip(self.tremor + self.rng.normal(0, TREMOR_STEP_DEG, 3), -TREMOR_MAX_DEG,
                                  TREMOR_MAX_DEG)
        return self.tremor.copy()

    def __call__(self, img: np.ndarray) -> np.ndarray:
        a = self.a
        self.frame += 1
        if a.shift == "none":
            return img
        x = img.astype(np.float32) / 255.0
        grey = x.mean(axis=-1, keepdims=True)
        x = grey + a.saturation * (x - grey)
        x = 0.5 + a.contrast * (x - 0.5)
        x = np.clip(x, 0, 1) ** a.gamma
        for gx, gy, gr in self.glints:
            dx = gx + 2.0 * math.sin(0.05 * self.frame + gx)
            cv2.circle(x, (int(dx), int(gy)), int(round(gr)), (1.0, 1.0, 1.0), -1)
        sigma = a.blur_sigma * (0.7 + 0.3 * math.sin(0.11 * self.frame))
        if sigma > 0.2:
            x = cv2.GaussianBlur(x, (0, 0), sigma)
        if a.haze > 0:
            phase = 0.5 + 0.5 * math.sin(0.03 * self.frame)
            field = np.clip(0.6 + 0.4 * (phase * self.smoke[0] + (1 - phase) * self.smoke[1]), 0, 1)[..., None]
            x = x * (1 - a.haze * field) + a.haze * field * np.array([0.92, 0.9, 0.88], np.float32)
        x = x * self.vignette
        if a.noise_sigma > 0:
            x = x + self.rng.normal(0, a.noise_sigma / 255.0, x.shape).astype(np.float32)
        return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
