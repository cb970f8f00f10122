"""IDM configuration (laid out like a LeRobot policy: configuration / modeling / processor).

Inverse dynamics as GR00T-Dreams' IDM frames it: two endoscope frames k
apart (k = 16) and, when known, the robot state at the first one -> the k
absolute actions (contract section 7: tool-tip position in PSM1_base, 6D
rotation, jaw) that took the robot from the first frame to the second.
The config is plain JSON next to the weights (`config.json`); it is not a
LeRobot `PreTrainedConfig` because the IDM is never trained or served by
LeRobot's tools, only by `surgbot idm`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

POSE_DIM = 10                      # contract section 7
MODEL_TYPE = "surgbot_idm"


@dataclass
class IDMConfig:
    """Sizes and training settings (units in names; checked in __post_init__)."""

    k: int = 16                                   # frames between the two inputs = actions predicted
    pose_dim: int = POSE_DIM
    image_size: tuple[int, int] = (96, 96)        # what the encoder sees (after the crop)
    crop_scale: float = 0.95                      # random crop at training, centre crop at inference
    channels: tuple[int, ...] = (24, 32, 64, 64)
    num_keypoints: int = 32
    hidden_dim: int = 512
    use_state: bool = True                        # accept the first frame's state when known
    state_dropout: float = 0.5                    # training: share of windows shown without a state
    state_loss_weight: float = 1.0                # per-frame absolute pose head
    colour_jitter: float = 0.25                   # brightness/contrast/saturation +- share
    blur_prob: float = 0.3                        # training: share of windows blurred (lens, haze)
    lr: float = 1e-3
    lr_min: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 32
    steps: int = 3000
    val_share: float = 0.1                        # episodes held out to measure the fusion's error model
    seed: int = 0
    model_type: str = MODEL_TYPE

    def __post_init__(self):
        self.image_size = tuple(int(v) for v in self.image_size)
        self.channels = tuple(int(v) for v in self.channels)
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.pose_dim < 1:
            raise ValueError(f"pose_dim must be >= 1, got {self.pose_dim}")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size must be (height, width) >= 16 px, got {self.image_size}")
        if not 0.5 <= self.crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be in [0.5, 1], got {self.crop_scale}")
        if not self.channels:
            raise ValueError("channels must name at least one conv block")
        if not 0.0 <= self.state_dropout <= 1.0:
            raise ValueError(f"state_dropout must be in [0, 1], got {self.state_dropout}")
        if not 0.0 <= self.val_share < 0.5:
            raise ValueError(f"val_share must be in [0, 0.5), got {self.val_share}")
        if self.batch_size < 1 or self.steps < 1 or self.lr <= 0:
            raise ValueError("batch_size, steps and lr must be positive")
        if self.model_type != MODEL_TYPE:
            raise ValueError(f"not an IDM config (model_type {self.model_type!r})")

    @property
    def load_size(self) -> tuple[int, int]:
        """Frames are stored at this size; the (random or centre) crop gives image_size."""
        return tuple(int(round(s / self.crop_scale)) for s in self.image_size)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> IDMConfig:
        raw = json.loads(Path(path).read_text())
        if not isinstance(raw, dict):
            raise ValueError("config.json must hold an object")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"unknown IDM config keys {unknown}")
        return cls(**raw)
