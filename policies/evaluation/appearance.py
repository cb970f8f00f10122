"""Evaluation under appearance shift: the `sim` video source's randomisation on a task env.

`AppearanceShift` wraps a task environment (sim/envs) so that every episode
is seen through an `Appearance` drawn from its seed (policies/video/appearance.py:
tissue colour and texture, lighting, specular highlights, colour jitter of
the objects (named targets keep their hue), then per frame gamma/contrast/
saturation, blur, haze/smoke, noise, vignette and glints).  The physics, the
layout and the instruction are the env's own, so success means the same as
in a nominal evaluation.  Left out on purpose: the Appearance's view offsets
and tremor (the env already draws the endoscope view per episode within the
holder's range; moving the camera again would change the task, not its look).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from surgbot.policies.video.appearance import SHIFTS, Appearance, ImageStyler, SceneStyler

# Appearance draws use their own stream of the episode seed: the same seed gives the
# same look in every evaluation, independent of how the env uses the seed.
APPEARANCE_SEED_SALT = 0x5EED_A99E


class AppearanceShift(gym.Wrapper):
    def __init__(self, env: gym.Env, shift: str = "strong"):
        if shift not in SHIFTS:
            raise ValueError(f"unknown appearance shift {shift!r} (choose from {', '.join(SHIFTS)})")
        super().__init__(env)
        self.shift = shift
        self._scene = SceneStyler(env.unwrapped.model)
        self._styler: ImageStyler | None = None
        self.appearance: Appearance | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        base = self.env.unwrapped
        draw_seed = [APPEARANCE_SEED_SALT] + ([] if seed is None else [int(seed)])
        self.appearance = Appearance.draw(np.random.default_rng(draw_seed), self.shift)
        self._scene.apply(self.appearance, base.endoscope_renderer())
        h, w = base.image_size
        self._styler = ImageStyler(self.appearance, h, w)
        if "image" in obs:                         # the first frame was rendered before the restyle
            obs = dict(obs, image=self._styler(base.endoscope_image()))
        info = dict(info, appearance=self.appearance.to_json())
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if "image" in obs:
            obs = dict(obs, image=self._styler(obs["image"]))
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._scene.restore()
        super().close()
