"""SurgVLA's image encoder parts and the `Locator` (an encoder of its own with a small head).

    image --conv blocks, each FiLM-modulated by the instruction--> feature map
        -> spatial soft-argmax keypoints (where things are) + pooled features (what is there)

The locator's first two keypoints can be anchors: trained (`surgbot policy train-locator`) to sit on the
scene's grasp point and place point with a cross-entropy on their attention maps, against the points
projected through the episode's camera.  A keypoint trained only through the regression loss above it
starts uniform over the map and gets almost no gradient towards a needle a few pixels long: the locator
stayed at the layouts' mean for 1500-3500 steps, or for good (policies/vla/README.md).  The anchored
keypoint sits on the needle within ~1 px from the first few hundred steps.  The glimpse then looks at
the image around anchor 0 at full resolution: the needle's direction is a few pixels of wire in one
cell of the 10x11 map, which the pooled features did not resolve (32 deg median error, near chance);
from the glimpse it is learnt to a few degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from surgbot.policies.vla.configuration_surgvla import SurgVLAConfig

GROUP_NORM_GROUPS = 8
GOAL_DIM = 3                 # the goal head predicts a position
ANCHORS = 2                  # locator keypoints 0 and 1: the scene's grasp point and place point
GLIMPSE_CHANNELS = (16, 32, 64, 64)   # the glimpse's conv stack: stride 1, then 2, 2, 2


class FiLMBlock(nn.Module):
    """conv(stride) -> GroupNorm -> FiLM(gamma, beta) from the instruction -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.GroupNorm(GROUP_NORM_GROUPS, c_out)

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x * (1.0 + gamma[:, :, None, None]) + beta[:, :, None, None])


class SpatialSoftArgmax(nn.Module):
    """Feature map -> K expected (x, y) image positions in [-1, 1] (where things are)."""

    def __init__(self, channels: int, keypoints: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.positions(self.logits(x), x.shape[-2], x.shape[-1])

    def logits(self, x: Tensor) -> Tensor:
        """[B, C, h, w] -> [B, K, h*w] attention logits."""
        return self.proj(x).flatten(2)

    @staticmethod
    def positions(logits: Tensor, h: int, w: int) -> Tensor:
        """[B, K, h*w] logits -> [B, 2K] expected positions on a grid spanning [-1, 1] (its end cells' centres)."""
        b = logits.shape[0]
        attn = torch.softmax(logits, dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=logits.device, dtype=logits.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=logits.device, dtype=logits.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)  # HW, 2
        return (attn @ grid).reshape(b, -1)


def cell_centres(h: int, w: int, device=None, dtype=None) -> Tensor:
    """[h*w, 2] (x, y) centres of a feature map's cells in the image's normalised coordinates
    (-1 and 1 are the image's outer edges, as grid_sample's align_corners=False)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def film_stack(config: SurgVLAConfig) -> tuple[nn.ModuleList, SpatialSoftArgmax, list[int]]:
    """The FiLM conv blocks, their keypoints and the sizes of their (gamma, beta) pairs.  Stride 2 in
    the first log2(keypoint_stride) blocks, then 1 (default 8: 96 px -> 12x12 map)."""
    chans = list(config.conv_channels)
    halvings = int(config.keypoint_stride).bit_length() - 1
    strides = [2 if i < halvings else 1 for i in range(len(chans))]
    blocks = nn.ModuleList(
        FiLMBlock(c_in, c_out, s) for c_in, c_out, s in zip([3] + chans[:-1], chans, strides, strict=True))
    return blocks, SpatialSoftArgmax(chans[-1], config.num_keypoints), [c for c in chans for _ in (0, 1)]


def identity_film(hidden: int, split: list[int]) -> nn.Linear:
    """Language features -> every block's (gamma, beta), zero at start: FiLM starts as the identity."""
    film = nn.Linear(hidden, sum(split))
    nn.init.zeros_(film.weight)
    nn.init.zeros_(film.bias)
    return film


def feature_map(blocks: nn.ModuleList, film: tuple[Tensor, ...], image: Tensor) -> Tensor:
    """image -> the last FiLM-conditioned block's map."""
    x = image
    for i, block in enumerate(blocks):
        x = block(x, film[2 * i], film[2 * i + 1])
    return x


def encode(blocks: nn.ModuleList, keypoints: SpatialSoftArgmax, film: tuple[Tensor, ...], image: Tensor) -> Tensor:
    """image -> [keypoint positions, pooled last feature map] through FiLM-conditioned blocks."""
    x = feature_map(blocks, film, image)
    return torch.cat([keypoints(x), x.mean(dim=(2, 3))], dim=-1)


def random_shift(image: Tensor, pad: int) -> tuple[Tensor, Tensor]:
    """Shift each image by up to +-pad pixels (edge replicated), one random shift per sample; also the
    shifts [B, 2] (x, y, px) by which the image content moved."""
    b, _, h, w = image.shape
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), device=image.device)
    dy = torch.randint(0, 2 * pad + 1, (b,), device=image.device)
    rows = (torch.arange(h, device=image.device)[None, :] + dy[:, None])          # B, h
    cols = (torch.arange(w, device=image.device)[None, :] + dx[:, None])          # B, w
    idx_b = torch.arange(b, device=image.device)[:, None, None]
    shifted = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return shifted, torch.stack([pad - dx, pad - dy], dim=-1)


def shifted(image: Tensor, dx: int, dy: int) -> Tensor:
    """image [B, C, h, w] with its content moved dx px right and dy px down (edge replicated), as
    `random_shift` moves it."""
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return image
    h, w = image.shape[-2:]
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
    return padded[..., pad - dy:pad - dy + h, pad - dx:pad - dx + w]


class Glimpse(nn.Module):
    """A `size` x `size` px window of the image at full resolution around a point -> features."""

    def __init__(self, size: int):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(GLIMPSE_CHANNELS):
            layers += [nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1),
                       nn.GroupNorm(GROUP_NORM_GROUPS // 2, c), nn.ReLU()]
            c_in = c
        self.net = nn.Sequential(*layers)
        self.size = int(size)
        side = self.size
        for _ in GLIMPSE_CHANNELS[1:]:
            side = math.ceil(side / 2)
        self.out_dim = GLIMPSE_CHANNELS[-1] * side * side

    def forward(self, image: Tensor, centre: Tensor) -> Tensor:
        """image [B, 3, H, W], centre [B, 2] (x, y, normalised as `cell_centres`) -> [B, out_dim]."""
        return self.net(self.window(image, centre)).flatten(1)

    def window(self, image: Tensor, centre: Tensor) -> Tensor:
        """The [B, 3, size, size] pixels around `centre` (bilinear, edges repeated outside the image)."""
        b, c, h, w = image.shape
        theta = torch.zeros(b, 2, 3, device=image.device, dtype=image.dtype)
        theta[:, 0, 0], theta[:, 1, 1] = self.size / w, self.size / h
        theta[:, :, 2] = centre
        grid = F.affine_grid(theta, [b, c, self.size, self.size], align_corners=False)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class LocatorOutput:
    out: Tensor             # [B, out_dim]
    anchor_logits: Tensor   # [B, ANCHORS, h*w] attention logits of keypoints 0 and 1
    anchors: Tensor         # [B, ANCHORS, 2] their expected positions (cell_centres' coordinates)
    map_size: tuple[int, int]


class Locator(nn.Module):
    """Image + instruction -> `out_dim` numbers, with its own conv blocks, keypoints and language MLP, so
    only its own loss trains it and the action head's encoder is not asked to serve two masters: the goal
    head of `SurgVLAConfig.goal_encoder` (an absolute goal position, action units) and the scene locator
    of `SurgVLAConfig.scene_locator` (the scene summary, normalised).

    `glimpse_px` > 0: the head also sees a full-resolution window of that many pixels around anchor 0
    (module doc) and anchor 0's position."""

    def __init__(self, config: SurgVLAConfig, out_dim: int = GOAL_DIM, glimpse_px: int = 0):
        super().__init__()
        self.blocks, self.keypoints, self._split = film_stack(config)
        self.language = nn.Sequential(nn.Linear(config.language_dim, config.language_hidden_dim), nn.ReLU())
        self.film = identity_film(config.language_hidden_dim, self._split)
        feat = 2 * config.num_keypoints + config.conv_channels[-1] + config.language_hidden_dim
        self.glimpse = Glimpse(glimpse_px) if glimpse_px else None
        if self.glimpse is not None:
            if config.num_keypoints < ANCHORS:
                raise ValueError(f"a glimpse needs num_keypoints >= {ANCHORS} (its anchors)")
            feat += self.glimpse.out_dim + 2
        self.head = nn.Sequential(nn.Linear(feat, config.head_hidden_dim // 2), nn.ReLU(),
                                  nn.Linear(config.head_hidden_dim // 2, out_dim))

    def forward(self, image: Tensor, language: Tensor) -> Tensor:
        """image [B,3,h,w] as the encoder sees it, language [B,384] -> [B, out_dim]."""
        return self.locate(image, language).out

    def averaged(self, image: Tensor, language: Tensor, shift_px: int, glimpse_image: Tensor | None = None) -> Tensor:
        """`forward` averaged over the image moved by every (dx, dy) in -shift_px..shift_px: the locator
        was trained on images shifted by whole pixels and errs by a fraction of one differently at each
        shift, so the mean is closer (SurgVLAConfig.scene_locator_average_px).  `glimpse_image`: see
        `locate` (only without shifts: the glimpse's own image is not moved)."""
        if shift_px <= 0:
            return self.locate(image, language, glimpse_image=glimpse_image).out
        if glimpse_image is not None:
            raise ValueError("shift averaging moves the encoder's image only: not with a glimpse image")
        moves = range(-shift_px, shift_px + 1)
        views = torch.cat([shifted(image, dx, dy) for dx in moves for dy in moves])
        out = self(views, language.repeat(len(moves) ** 2, 1))
        return out.reshape(len(moves) ** 2, image.shape[0], -1).mean(dim=0)

    def locate(self, image: Tensor, language: Tensor, glimpse_at: Tensor | None = None,
               glimpse_image: Tensor | None = None) -> LocatorOutput:
        """`forward` with the anchors; `glimpse_at` [B, 2]: look there instead of at anchor 0 (training
        looks near the true point, so the glimpse learns on windows centred as inference will centre them);
        `glimpse_image` [B, 3, H', W']: the same view at a finer resolution for the glimpse to read
        (SurgVLAConfig.scene_locator_glimpse_scale; positions are fractions of the image, so the
        anchor's place in `image` is its place there).  The head is told where the glimpse looked: with
        a glimpse image that is `glimpse_at` in training, because training shifts the encoder's image and
        not the glimpse's, so anchor 0 (on the shifted image) would be off the window's centre by the
        shift and the window's offset could not be added to it; at inference both are anchor 0."""
        lang = self.language(language)
        x = feature_map(self.blocks, torch.split(self.film(lang), self._split, dim=-1), image)
        h, w = x.shape[-2:]
        logits = self.keypoints.logits(x)
        anchor_logits = logits[:, :ANCHORS]
        anchors = torch.softmax(anchor_logits, dim=-1) @ cell_centres(h, w, x.device, x.dtype)
        parts = [self.keypoints.positions(logits, h, w), x.mean(dim=(2, 3)), lang]
        if self.glimpse is not None:
            centre = anchors[:, 0].detach() if glimpse_at is None else glimpse_at
            if glimpse_image is None:
                parts += [self.glimpse(image, centre), anchors[:, 0]]
            else:
                parts += [self.glimpse(glimpse_image, centre), centre]
        return LocatorOutput(self.head(torch.cat(parts, dim=-1)), anchor_logits, anchors, (h, w))


def anchor_loss(output: LocatorOutput, targets: Tensor, sigma_cells: float) -> Tensor:
    """Cross-entropy of the anchors' attention against a Gaussian (sigma in cells) at `targets` [B, ANCHORS, 2]."""
    h, w = output.map_size
    centres = cell_centres(h, w, targets.device, targets.dtype)                       # HW, 2
    cell = torch.tensor([2.0 / w, 2.0 / h], device=targets.device, dtype=targets.dtype)
    d2 = (((centres[None, None] - targets[:, :, None]) / cell) ** 2).sum(-1)          # B, A, HW
    target = torch.softmax(-d2 / (2.0 * sigma_cells ** 2), dim=-1)
    return -(target * F.log_softmax(output.anchor_logits, dim=-1)).sum(-1).mean()


def crop_pixels(height: int, width: int, crop: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """(row, col, rows, cols) of a fractional crop box on a height x width frame (at least 1 pixel)."""
    top, left, h, w = crop
    r0, c0 = min(round(top * height), height - 1), min(round(left * width), width - 1)
    return r0, c0, max(1, min(round(h * height), height - r0)), max(1, min(round(w * width), width - c0))


def crop_image(image: Tensor, crop: tuple[float, float, float, float] | None) -> Tensor:
    """image [..., H, W] cut to the fractional box `crop` (top, left, height, width); None: unchanged."""
    if crop is None:
        return image
    r0, c0, rows, cols = crop_pixels(image.shape[-2], image.shape[-1], crop)
    return image[..., r0:r0 + rows, c0:c0 + cols]


def glimpse_source(frame: Tensor, crop: tuple[float, float, float, float] | None, image_size, scale: float) -> Tensor:
    """frame [B, 3, H, W] -> the crop resized to scale x image_size (bilinear; as it is where it has that
    size): the image a finer glimpse reads (SurgVLAConfig.scene_locator_glimpse_scale)."""
    image = crop_image(frame, crop)
    h, w = (round(v * scale) for v in image_size)
    if image.shape[-2:] != (h, w):
        image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
    return image
