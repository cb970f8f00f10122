"""Settings of `surgbot policy train-locator` (policies/vla/train_locator.py) and its arguments.

Torch-free, so the CLI's argument definitions import nothing heavy (`surgbot --help` stays fast).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

# First layout seed of each task's training frames (the recorded demonstrations' ranges, extended).
FIRST_SEEDS = {"needle_pick": 3000, "reach": 0, "peg_transfer": 6000}
VAL_TASKS = ("needle_pick", "reach", "peg_transfer")
SUMMARY_FILE = "train_summary.json"
APPEARANCES = ("none", "strong")     # policies/video/appearance.py SHIFTS (torch-free module: restated, tested)
MAX_FRAME_PX = 1280                  # frame_size: at most this many pixels a side
CHECKPOINT_SUBDIR = Path("checkpoints") / "last" / "pretrained_model"   # the layout `policy train` writes


@dataclass
class LocatorTrainingConfig:
    """Defaults of the bundled recipe (scripts/train_default_policy.sh)."""

    steps: int = 8000
    needle_layouts: int = 800            # needle_pick layouts (one frame each)
    other_layouts: int = 400             # reach layouts (one frame per target colour), and peg_transfer's
    # unless peg_layouts says otherwise (None: other_layouts).  The bundled locator saw 400: its block
    # is 1.2 mm off (3-D, median; p90 2.4 mm) where the grasp allows ~1.5 mm, and costs peg_transfer
    # ~8 of 50 episodes against the simulator's summary.
    peg_layouts: int | None = None
    batch_size: int = 32
    lr: float = 1e-3                     # AdamW, cosine to lr_end
    lr_end: float = 5e-5
    weight_decay: float = 1e-4
    orientation_loss_weight: float = 1.0  # L1 weight of the orientation pair (the positions' is 1)
    # Anchors and glimpse (policies/vla/encoder_surgvla.py): keypoints 0 and 1 learn to sit on the grasp
    # and place points (cross-entropy against a Gaussian of anchor_sigma_cells on the keypoint map, the
    # points projected through each layout's camera), and the head sees a glimpse_px window around
    # anchor 0.  In training the window is centred on the true point moved by glimpse_noise_px (std),
    # about the anchor's own error, so it learns on windows centred as inference centres them.
    # anchor_loss_weight 0 and glimpse_px 0: the locator bundled until December 2026 (c16a4f994225).
    glimpse_px: int = 24
    anchor_loss_weight: float = 1.0
    anchor_sigma_cells: float = 0.6
    glimpse_noise_px: float = 1.5
    # "strong": every training layout is also rendered once through the `sim` video source's appearance
    # randomisation (tissue, lighting, colour jitter, blur, smoke, noise; drawn from the layout seed, so
    # never an evaluation seed's draw), and the validation error is logged for both looks.  Why: the
    # action head told where things are keeps reach at 25/25 under that shift while the locator trained
    # on one look loses it (2/50).  "none": one look.
    appearance: str = "none"
    # Whole-pixel image shifts of up to +-shift_px in training (None: the bound's --shift-px, which the
    # action head trained with).  A shift moves the objects in the image but not their positions in the
    # world, so a locator trained on shifted images can only place them relative to the pad it also
    # sees; the endoscope of the twin's tasks does not move during a layout's first frame.
    shift_px: int | None = None
    # Render the first frames at this camera size (height, width) instead of the bound's recorded one,
    # and let the glimpse read the pad's crop at that resolution (the joined checkpoint then asks for
    # frames of this size: SurgVLAConfig.frame_size, scene_locator_glimpse_scale).  The encoder still
    # sees the crop resized to the bound's image_size.  None: the bound's frame, one resolution.
    frame_size: tuple[int, int] | None = None
    eval_every_steps: int = 500
    val_seed: int = 60000                # validation layouts: neither training (< 10000) nor evaluation seeds
    val_layouts: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.peg_layouts is None:
            self.peg_layouts = self.other_layouts
        for name in ("steps", "needle_layouts", "other_layouts", "peg_layouts", "batch_size", "eval_every_steps",
                     "val_layouts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("lr", "lr_end"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be finite and > 0, got {getattr(self, name)}")
        if not (math.isfinite(self.orientation_loss_weight) and self.orientation_loss_weight >= 0):
            raise ValueError(f"orientation_loss_weight must be finite and >= 0, got {self.orientation_loss_weight}")
        if isinstance(self.glimpse_px, bool) or not isinstance(self.glimpse_px, int) or self.glimpse_px < 0:
            raise ValueError(f"glimpse_px must be an int >= 0, got {self.glimpse_px!r}")
        for name in ("anchor_loss_weight", "glimpse_noise_px"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.anchor_sigma_cells) and self.anchor_sigma_cells > 0):
            raise ValueError(f"anchor_sigma_cells must be finite and > 0, got {self.anchor_sigma_cells}")
        if self.shift_px is not None and (isinstance(self.shift_px, bool) or not isinstance(self.shift_px, int)
                                          or self.shift_px < 0):
            raise ValueError(f"shift_px must be None or an int >= 0, got {self.shift_px!r}")
        if self.frame_size is not None:
            size = tuple(self.frame_size)
            if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= MAX_FRAME_PX
                                         for v in size):
                raise ValueError(f"frame_size must be None or (height, width) ints in 16..{MAX_FRAME_PX}, "
                                 f"got {self.frame_size!r}")
            self.frame_size = size
            if self.glimpse_px <= 0:
                raise ValueError("frame_size needs glimpse_px > 0 (the glimpse is what reads the finer frame)")
        if self.appearance not in APPEARANCES:
            raise ValueError(f"appearance must be one of {APPEARANCES}, got {self.appearance!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay}")
        top = max(FIRST_SEEDS[t] + n for t, n in (("needle_pick", self.needle_layouts),
                                                   ("reach", self.other_layouts),
                                                   ("peg_transfer", self.peg_layouts)))
        if top > self.val_seed:
            raise ValueError(f"training layouts reach seed {top - 1}, not below the validation seed "
                             f"{self.val_seed}: fewer layouts or a higher val_seed")



def frame_size_arg(text: str) -> tuple[int, int]:
    """`--frame-size HxW` -> (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 240x320, got {text!r}") from None
    return h, w


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = LocatorTrainingConfig()
    p.add_argument("--bound", required=True, metavar="CKPT",
                   help="a checkpoint trained with --scene-input (pretrained_model or training output folder)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder: checkpoints/last/pretrained_model (the joined checkpoint), "
                        f"{SUMMARY_FILE} (validation error every --eval-every steps)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--needle-layouts", type=int, default=d.needle_layouts,
                   help=f"needle_pick layouts from seed {FIRST_SEEDS['needle_pick']}")
    p.add_argument("--other-layouts", type=int, default=d.other_layouts,
                   help=f"reach (from seed {FIRST_SEEDS['reach']}) and peg_transfer (from "
                        f"{FIRST_SEEDS['peg_transfer']}) layouts, each target colour")
    p.add_argument("--peg-layouts", type=int, default=None,
                   help=f"peg_transfer layouts from seed {FIRST_SEEDS['peg_transfer']} (default: --other-layouts)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--orientation-weight", type=float, default=d.orientation_loss_weight, metavar="W",
                   help="L1 weight of the orientation outputs (the positions' weight is 1)")
    p.add_argument("--glimpse-px", type=int, default=d.glimpse_px, metavar="PX",
                   help="full-resolution window around the anchor keypoint the head also sees (0: none)")
    p.add_argument("--anchor-weight", type=float, default=d.anchor_loss_weight, metavar="W",
                   help="weight of the anchor keypoints' cross-entropy (0: the keypoints are not anchored)")
    p.add_argument("--appearance", default=d.appearance, choices=APPEARANCES,
                   help="also render every training layout through this appearance shift")
    p.add_argument("--shift-px", type=int, default=d.shift_px, metavar="PX",
                   help="training image shifts of up to +-PX pixels (default: the bound's --shift-px)")
    p.add_argument("--frame-size", type=frame_size_arg, default=d.frame_size, metavar="HxW",
                   help="render the first frames at this camera size and let the glimpse read the crop at "
                        "that resolution; the joined checkpoint asks for such frames (default: the bound's)")
    p.add_argument("--eval-every", type=int, default=d.eval_every_steps, metavar="N")
    p.add_argument("--val-layouts", type=int, default=d.val_layouts,
                   help=f"validation layouts from seed {d.val_seed} ({', '.join(VAL_TASKS)})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="the locator's initial weights, batch order and augmentation draws (the rendered "
                        "layouts do not depend on it)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
