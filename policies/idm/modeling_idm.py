"""The inverse dynamics model: two frames k apart (+ optional state) -> k absolute actions.

    frame (3 x 96 x 96, + 2 coordinate channels) --4 conv blocks (GroupNorm,
        ReLU)--> spatial soft-argmax keypoints (where the tool and objects
        are) + pooled features  = one feature vector per frame, computed once
        per frame (labelling reuses it in every window that frame is in)
    pose head:  features(frame) -> the pose at that frame (normalised)
    chunk head: [f_a, f_b, f_b - f_a, state (normalised) * known, known]
        -> k x D offsets of the actions from the pose at the first frame
    absolute chunk = pose at the first frame (the given state, or the pose
        head's estimate) + offsets

Why the split: the offsets are what the two frames show (motion), the pose
head gives the absolute anchor when no state is known, and `fuse.py`
combines both over overlapping windows.  Training: L1 on normalised offsets
and poses; the state input is dropped for `state_dropout` of the windows so
one model serves clips with and without a first state.

Checkpoint (a folder): `model.safetensors`, `config.json`, `stats.safetensors`
(normalisation + the held-out error model), the id = first 12 hex digits of
the weights' sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from surgbot.policies.idm.configuration_idm import IDMConfig
from surgbot.policies.idm.processor_idm import IDMStats

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
STATS = "stats.safetensors"
GROUPS = 8


class SpatialSoftArgmax(nn.Module):
    """C x H x W -> K expected (x, y) positions in [-1, 1]."""

    def __init__(self, c_in: int, k: int):
        super().__init__()
        self.proj = nn.Conv2d(c_in, k, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        att = F.softmax(self.proj(x).flatten(2), dim=-1)                  # B, K, HW
        ys = torch.linspace(-1, 1, h, device=x.device)
        xs = torch.linspace(-1, 1, w, device=x.device)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx.flatten(), gy.flatten()], dim=-1)          # HW, 2
        return (att @ grid).flatten(1)                                     # B, 2K


class FrameEncoder(nn.Module):
    def __init__(self, cfg: IDMConfig):
        super().__init__()
        layers, c_in = [], 5
        for i, c in enumerate(cfg.channels):
            stride = 2 if i < len(cfg.channels) - 1 else 1
            kernel = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, c, kernel, stride=stride, padding=kernel // 2, bias=False),
                       nn.GroupNorm(min(GROUPS, c), c), nn.ReLU(inplace=True)]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.keypoints = SpatialSoftArgmax(c_in, cfg.num_keypoints)
        self.out_dim = 2 * cfg.num_keypoints + c_in
        h, w = cfg.image_size
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys])[None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """float [N, 3, h, w] in [0, 1] -> [N, out_dim]."""
        x = torch.cat([(x - 0.5) / 0.25, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)
        f = self.convs(x)
        return torch.cat([self.keypoints(f), f.mean(dim=(2, 3))], dim=1)


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, d_out))


class IDMModel(nn.Module):
    def __init__(self, cfg: IDMConfig, stats: IDMStats):
        super().__init__()
        self.cfg = cfg
        self.stats = stats
        self.encoder = FrameEncoder(cfg)
        f = self.encoder.out_dim
        d = cfg.pose_dim
        self.pose_head = mlp(f, cfg.hidden_dim // 2, d)
        self.chunk_head = mlp(3 * f + d + 1, cfg.hidden_dim, cfg.k * d)

    # ----------------------------------------------------------- pieces
    def encode(self, images: Tensor) -> Tensor:
        return self.encoder(images)

    def pose(self, feats: Tensor) -> Tensor:
        """Normalised pose of each frame."""
        return self.pose_head(feats)

    def offsets(self, fa: Tensor, fb: Tensor, state_norm: Tensor | None, known: Tensor | None = None) -> Tensor:
        """Normalised k x D offsets; `known` [B] says which windows come with a state."""
        b, d = fa.shape[0], self.cfg.pose_dim
        if state_norm is None or not self.cfg.use_state:
            state_norm = torch.zeros(b, d, device=fa.device)
            known = torch.zeros(b, device=fa.device)
        elif known is None:
            known = torch.ones(b, device=fa.device)
        x = torch.cat([fa, fb, fb - fa, state_norm * known[:, None], known[:, None]], dim=1)
        return self.chunk_head(x).view(b, self.cfg.k, d)

    # ------------------------------------------------------ training loss
    def loss(self, images: Tensor, ref_a: Tensor, ref_b: Tensor, deltas: Tensor, known: Tensor) -> dict:
        """images [B, 2, 3, h, w]; ref_* [B, D] poses at the two frames; deltas [B, k, D]; known [B]."""
        b = images.shape[0]
        feats = self.encode(images.flatten(0, 1)).view(b, 2, -1)
        fa, fb = feats[:, 0], feats[:, 1]
        st = self.stats
        pred = self.offsets(fa, fb, st.norm_state(ref_a), known)
        chunk = F.l1_loss(pred, st.norm_delta(deltas))
        pose_target = torch.cat([st.norm_state(ref_a), st.norm_state(ref_b)])
        pose = F.l1_loss(self.pose(torch.cat([fa, fb])), pose_target)
        total = chunk + self.cfg.state_loss_weight * pose
        return {"loss": total, "chunk": chunk.detach(), "pose": pose.detach()}

    # ----------------------------------------------------------- checkpoint
    def save(self, folder: Path) -> str:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(folder / WEIGHTS))
        save_file(self.stats.to_tensors(), str(folder / STATS))
        self.cfg.save(folder / CONFIG)
        return checkpoint_id(folder)


def checkpoint_id(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()[:12]


def load_idm(folder: Path, pose_dim: int | None = None) -> IDMModel:
    """The model in eval mode; ValueError naming what is wrong with the folder (or its action size)."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG, STATS):
        if not (folder / name).is_file():
            raise ValueError(f"{folder}: not an IDM checkpoint ({name} missing)")
    try:
        cfg = IDMConfig.load(folder / CONFIG)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{folder}: unreadable IDM config ({type(exc).__name__}: {exc})") from None
    if pose_dim is not None and cfg.pose_dim != pose_dim:
        raise ValueError(f"{folder}: the IDM predicts {cfg.pose_dim}-d actions, the datasets use {pose_dim}-d "
                         "(contract section 7)")
    try:
        stats = IDMStats.from_tensors(load_file(str(folder / STATS)))
        model = IDMModel(cfg, stats)
        model.load_state_dict(load_file(str(folder / WEIGHTS)))
    except Exception as exc:  # noqa: BLE001 - corrupt or mismatched checkpoint: one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{folder}: unreadable IDM checkpoint ({type(exc).__name__}: {first[:200]})") from None
    return model.eval()
