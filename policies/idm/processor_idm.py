"""IDM pre/post-processing: image preparation, augmentation, normalisation with dataset stats.

* Frames are resized once to `config.load_size` (uint8) and cropped to
  `config.image_size`: a random crop (the same for both frames of a window)
  in training, the centre crop at inference; GR00T-Dreams' IDM trains with
  crop 0.95 and colour jitter, as here.
* Colour jitter (brightness, contrast, saturation, one draw per window) and
  an occasional blur make the encoder care about geometry, not the tissue's
  exact colour: the world-model clips it labels do not look like the demos.
* `IDMStats`: the dataset's state mean/std (inputs and the per-frame pose
  head) and the mean/std of the k chunk offsets (the actions minus the pose
  at the first frame), with a floor per component so a rotation entry that
  barely varies does not turn float noise into large targets; plus the
  error model the fusion weights by (per-offset and per-pose standard
  deviations measured on held-out episodes after training).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from surgbot.policies.idm.configuration_idm import IDMConfig

STD_FLOOR = np.array([1e-4] * 3 + [1e-3] * 6 + [1e-3], np.float32)   # m, 6D, rad
STATE_CLIP = 5.0


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T, h, w, 3] (area filter when shrinking)."""
    h, w = size
    if frames.shape[1:3] == (h, w):
        return np.ascontiguousarray(frames)
    interp = cv2.INTER_AREA if frames.shape[1] > h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def centre_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = size
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def to_float(frames_u8: Tensor) -> Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [0, 1]."""
    return frames_u8.permute(*range(frames_u8.dim() - 3), -1, -3, -2).float().div_(255.0)


def augment_pairs(pairs: Tensor, cfg: IDMConfig, gen: torch.Generator) -> Tensor:
    """float [B, 2, 3, H', W'] at load size -> float [B, 2, 3, h, w]: random crop + colour jitter + blur."""
    b = pairs.shape[0]
    h, w = cfg.image_size
    dy = torch.randint(0, pairs.shape[-2] - h + 1, (b,), generator=gen)
    dx = torch.randint(0, pairs.shape[-1] - w + 1, (b,), generator=gen)
    out = torch.stack([pairs[i, :, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    j = cfg.colour_jitter
    if j > 0:
        def draw():
            return (1.0 + (torch.rand(b, generator=gen) * 2 - 1) * j).view(b, 1, 1, 1, 1)
        bright, contrast, sat = draw(), draw(), draw()
        out = out * bright
        grey = out.mean(dim=2, keepdim=True)
        out = grey + sat * (out - grey)
        mean = out.mean(dim=(2, 3, 4), keepdim=True)
        out = mean + contrast * (out - mean)
        tint = 1.0 + (torch.rand(b, 1, 3, 1, 1, generator=gen) * 2 - 1) * (j / 3)
        out = out * tint
    if cfg.blur_prob > 0:
        blur = torch.rand(b, generator=gen) < cfg.blur_prob
        if blur.any():
            kernel = torch.tensor([1.0, 2.0, 1.0]) / 4.0
            k2 = (kernel[:, None] * kernel[None, :]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
            sel = out[blur].flatten(0, 1)
            sel = F.conv2d(F.pad(sel, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
            out[blur] = sel.view(-1, 2, 3, h, w)
    return out.clamp_(0.0, 1.0)


@dataclass
class IDMStats:
    """Normalisation and the fusion's error model (all float32 numpy)."""

    state_mean: np.ndarray          # [D]
    state_std: np.ndarray           # [D]
    delta_mean: np.ndarray          # [k, D]
    delta_std: np.ndarray           # [k, D]
    sigma_delta: np.ndarray         # [k, D] held-out error of the offsets (physical units)
    sigma_state: np.ndarray         # [D] held-out error of the per-frame pose

    @classmethod
    def from_data(cls, states: np.ndarray, deltas: np.ndarray) -> IDMStats:
        s_std = np.maximum(states.std(axis=0), STD_FLOOR[: states.shape[1]])
        d_std = np.maximum(deltas.std(axis=0), STD_FLOOR[None, : deltas.shape[2]])
        return cls(state_mean=states.mean(axis=0).astype(np.float32), state_std=s_std.astype(np.float32),
                   delta_mean=deltas.mean(axis=0).astype(np.float32), delta_std=d_std.astype(np.float32),
                   sigma_delta=d_std.astype(np.float32), sigma_state=s_std.astype(np.float32))

    def to_tensors(self) -> dict[str, Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k), np.float32)) for k in (
            "state_mean", "state_std", "delta_mean", "delta_std", "sigma_delta", "sigma_state")}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> IDMStats:
        return cls(**{k: t[k].numpy().astype(np.float32) for k in (
            "state_mean", "state_std", "delta_mean", "delta_std", "sigma_delta", "sigma_state")})

    # normalisation helpers (torch)
    def norm_state(self, s: Tensor) -> Tensor:
        m, sd = torch.from_numpy(self.state_mean), torch.from_numpy(self.state_std)
        return ((s - m) / sd).clamp(-STATE_CLIP, STATE_CLIP)

    def norm_delta(self, d: Tensor) -> Tensor:
        return (d - torch.from_numpy(self.delta_mean)) / torch.from_numpy(self.delta_std)

    def unnorm_delta(self, d: Tensor) -> Tensor:
        return d * torch.from_numpy(self.delta_std) + torch.from_numpy(self.delta_mean)

    def unnorm_state(self, s: Tensor) -> Tensor:
        return s * torch.from_numpy(self.state_std) + torch.from_numpy(self.state_mean)
