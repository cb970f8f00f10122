"""SurgVLA configuration: a LeRobot `PreTrainedConfig` registered as policy type `surgvla`.

LeRobot finds the policy, its processors and this config by naming convention
(`lerobot/policies/factory.py`: `<Name>Config` in `configuration_<type>` ->
`<Name>Policy` in `modeling_<type>` and `make_<type>_pre_post_processors` in
`processor_<type>`), so these three modules keep those names.  The plugin
distribution `lerobot_policy_surgvla` (packaging/) imports them so that
`lerobot-train --policy.type=surgvla` finds the type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import NormalizationMode
from lerobot.optim.optimizers import AdamWConfig
from lerobot.utils.constants import ACTION, OBS_STATE

POLICY_TYPE = "surgvla"
IMAGE_KEY = "observation.images.endoscope"       # contract section 9
STATE_KEY = OBS_STATE                            # "observation.state", 10 floats
ACTION_KEY = ACTION                              # "action", 10 floats
LANGUAGE_KEY = "observation.language_embedding"  # added by the preprocessor (frozen MiniLM)
POSE_DIM = 10                                    # xyz + 6D rotation + jaw (contract section 7)
JAW_INDEX = POSE_DIM - 1                         # the jaw's column of a pose (radians)
LANGUAGE_DIM = 384                               # all-MiniLM-L6-v2 sentence embedding
# The episode's last action, a training-only target (frame_cache.py).  Under an "observation." key
# because LeRobot's batch <-> transition conversion keeps only those (and a few named extras).
GOAL_KEY = "observation.episode_goal"
GOAL_TARGETS = ("episode_end", "first_grasp")     # SurgVLAConfig.goal_target
# LeRobot's key for privileged simulator state: the scene summary of surgbot.sim.envs.scene_state
# (SurgVLAConfig.scene_dim), metres in the actions' frame.  Not a recorded feature: training
# rebuilds it from the layout seeds, evaluation reads it from the simulator.
SCENE_KEY = "observation.environment_state"
# Per training frame, 1.0 where the image shows the scene as the summary describes it (the episode's
# first scene_locator_frames frames: before the tool covers or moves anything), else 0: the locator's
# loss weight.  Made by the frame cache.
SCENE_SEEN_KEY = "observation.scene_as_reset"
MAX_GLIMPSE_SCALE = 4.0                          # scene_locator_glimpse_scale: at most 16x the pixels
MAX_YAW_NOISE_DEG = 45.0                         # scene_yaw_noise_deg: the block's faces repeat every 90 deg
MAX_AVERAGE_PX = 4                               # scene_locator_average_px: at most 81 locator passes
MAX_EXTRA_LOCATORS = 3                           # scene_locator_extra: at most 4 locators averaged
SCENE_DIM = 8                                    # its length (scene_state.SCENE_DIM, checked by a test)
SCENE_POSITIONS = ((0, 3), (5, 8))               # its two positions (grasp, place): [start, end) columns
SCENE_ORIENTATION = slice(SCENE_POSITIONS[0][1], SCENE_POSITIONS[1][0])   # its (cos k*yaw, sin k*yaw) pair


def check_crop(crop) -> tuple[float, float, float, float]:
    """A fractional crop box (top, left, height, width) inside the frame, or ValueError."""
    try:
        box = tuple(float(v) for v in crop)
    except (TypeError, ValueError):
        raise ValueError(f"crop must be 4 fractions (top, left, height, width), got {crop!r}") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"crop must be 4 finite fractions (top, left, height, width), got {crop!r}")
    top, left, height, width = box
    if not (0 <= top < 1 and 0 <= left < 1 and height > 0 and width > 0
            and top + height <= 1 + 1e-9 and left + width <= 1 + 1e-9):
        raise ValueError(f"crop {box} must lie inside the frame (fractions, top + height <= 1, "
                         "left + width <= 1)")
    return box


def check_keypoint_stride(stride: int, blocks: int) -> int:
    """A power of 2 reachable with one stride-2 conv per block."""
    if isinstance(stride, bool) or stride not in [2 ** k for k in range(blocks + 1)]:
        raise ValueError(f"keypoint_stride must be a power of 2 up to 2**{blocks} (one stride-2 block each), "
                         f"got {stride}")
    return int(stride)


@PreTrainedConfig.register_subclass(POLICY_TYPE)
@dataclass
class SurgVLAConfig(PreTrainedConfig):
    """Endoscope image + instruction + state -> a chunk of absolute 10-d tool poses.

    chunk_size: actions predicted per call (H); n_action_steps: how many of
    them `select_action` plays before asking again (half the chunk, as the
    policy node's scheduler does).  The image is resized to `image_size`
    inside the model, so the encoder's cost does not depend on the camera.
    """

    n_obs_steps: int = 1
    chunk_size: int = 16
    n_action_steps: int = 8

    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.MEAN_STD,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )
    # Added to the std before dividing: a 6D-rotation component that hardly
    # varies in the demos must not turn float noise into large inputs.
    normalization_eps: float = 1e-4

    image_size: tuple[int, int] = (96, 96)        # (height, width) the encoder sees
    # (top, left, height, width) as fractions of the frame, cut before the resize: the box
    # trainer's pad fills only the middle of the endoscope view, and millimetre targets are
    # a few pixels wide, so the pixels go to the pad instead of the dark background.
    # Fractions, so one checkpoint reads any camera size of the same view.  None: the whole frame.
    crop: tuple[float, float, float, float] | None = None
    # (height, width) of the camera frame this checkpoint asks for at inference (the runtime's metadata
    # `image_size`; the evaluation harness renders at it).  None: the training datasets' frame
    # (input_features).  A checkpoint whose locator reads a finer glimpse (scene_locator_glimpse_scale)
    # asks for a larger frame than it was trained on; the action head's encoder resizes any frame.
    frame_size: tuple[int, int] | None = None
    conv_channels: tuple[int, ...] = (24, 48, 96, 128)
    num_keypoints: int = 32                       # spatial soft-argmax points of the last feature map
    # Downsampling from the encoder's input to the keypoint map (stride 2 in the first log2 of it
    # blocks, 1 after).  8: an 80x88 crop gives a 10x11 map, cells of ~24 mm on the pad, against a
    # 3 mm success radius; 4 gives 20x22 at about 2.5x the compute.
    keypoint_stride: int = 8
    language_dim: int = LANGUAGE_DIM
    language_hidden_dim: int = 128
    state_hidden_dim: int = 64
    head_hidden_dim: int = 512
    dropout: float = 0.1
    state_clip: float = 5.0                       # normalised state clamped to +-this many std
    random_shift_px: int = 4                      # training-time image shift augmentation (DrQ style)
    # Auxiliary training loss: predict where the episode ends (its last action's position, from the
    # training batch's GOAL_KEY) from the same features.  Every frame then says where the named
    # target is, not only the few frames whose 1 s chunk already points there.  0: no goal head
    # (checkpoints made before it load unchanged); inference uses it only for the goal memory below.
    goal_loss_weight: float = 0.0
    # The goal head from the image and the instruction only, predicting the absolute position
    # (not an offset from the state).  Why: with the state among its inputs the goal head can say
    # "near where the tool is" on most frames of an episode that is already closing in, and need not
    # learn to find a thin object (needle_pick: the goal head 7.9 mm from the wire, median, while the
    # same encoder trained to find the needle from first frames alone gets 1.5-2.5 mm).  Tried with the
    # bundled recipe: 6.1 mm and no gain in success (policies/vla/README.md).  False: as before.
    goal_from_image: bool = False
    # The goal head with its own image encoder (a second conv stack, keypoints and language MLP; an
    # absolute position from the image and the instruction, trained by the goal loss alone).  Why: the
    # shared encoder, trained mostly by the action loss, places the needle's grasp point 6 mm from the
    # wire (median, both goal heads above), while the same conv stack trained to find the needle alone
    # gets 1.5 mm with 800 layouts (docs/results/probe_needle_localisation); the goal memory is only as
    # good as this estimate.  Costs a second encoder pass per step and per inference.  Tried with
    # first_grasp on 800 needle layouts: 6.5 mm, no gain (policies/vla/README.md).  False: as before.
    goal_encoder: bool = False
    # Goal memory (inference, needs the goal head): the goal head's estimate from the first
    # `goal_memory_chunks` chunk predictions of an episode (`reset()` starts one) is remembered, and
    # a later chunk that ends within `goal_memory_radius_m` (3-D) of it is bent, linearly
    # along the chunk, to end there.  Why: the first view shows the target unoccluded; as the
    # tool closes in, its shaft and jaws cover the target and the per-frame estimate drifts
    # (measured on reach with the bundled checkpoint: the goal estimate 2.0 mm from the disc at
    # the first call, 2.6 mm median and up to 7-11 mm at the last; the failures were those).
    # 0 chunks: off.
    goal_memory_chunks: int = 1
    goal_memory_radius_m: float = 0.01
    # With `goal_memory_max_jaw_rad`, only a chunk whose last jaw command is below it (closed jaws:
    # touching, or carrying what they hold) is bent.  needle_pick's episodes end 35 mm above the
    # needle, right on the way down to it: with open jaws on the way down the memory held the tool
    # up there (measured: hovering 10 s of the 20 s horizon).  None: any jaw (checkpoints made
    # before it act unchanged).
    goal_memory_max_jaw_rad: float | None = None
    # What the goal head learns (training) and which step of a chunk the goal memory moves onto it.
    # "episode_end": the episode's last position, the chunk's last step (as above).  "first_grasp":
    # where the jaws first close in the episode (the commanded jaw falls below `grasp_jaw_rad`
    # after being above it: needle_pick's grasp of the wire, peg_transfer's of the block; the tool
    # stands still there while the jaws close); an episode that never closes (reach: jaws closed
    # throughout) keeps its last position.  The memory then moves a chunk that closes the jaws so
    # that it closes them on the remembered grasp point (ramped up to the closing step, the rest
    # shifted with it); once a grasp within the played steps (n_action_steps) has been sent, no
    # chunk is moved (needle_pick's lift away from its grasp point); a chunk that does not close
    # follows the episode_end rule until then (reach, which never closes).  Why: needle_pick
    # fails at the grasp (the jaws close at the right height 1-14 mm sideways of the wire), while
    # the episode-end goal lies 35 mm above the needle where nothing is decided.  Tried with the
    # bundled recipe: no gain on needle_pick, reach worse (policies/vla/README.md).
    goal_target: str = "episode_end"
    grasp_jaw_rad: float = 0.3
    # Where the objects are, as an input of the action head (SCENE_KEY: grasp point, orientation,
    # place point; surgbot.sim.envs.scene_state, 8 numbers): 0 = no such input.  Why: with the true
    # grasp point fed to the goal memory needle_pick stayed at 3/30 (docs/results/tried_first_grasp):
    # the approach and the jaw's yaw, not the final point, miss the wire.  With the simulator's
    # values this measures what a perfect object locator would give the action head.  Positions
    # are normalised like the actions' (`scene_noise_m`: Gaussian noise added to them in training,
    # metres, for a head that will be fed a locator's estimates).
    scene_dim: int = 0
    scene_noise_m: float = 0.0
    # Training only: the summary's orientation turned by Gaussian noise of this std (the object's yaw,
    # degrees).  Why: the scene-anchored-yaw head trained on exact yaws turns the jaws 2-3 times any
    # error in it (told 5.5 deg off, the jaws closed 10-23 deg off the block's faces, and peg_transfer
    # went from 38 to 20 of 40; policies/vla/README.md "The located yaw"), and a locator is never exact.
    # The object's symmetry k is read off the summary: a place point apart from the grasp point is
    # peg_transfer's block (k 4), otherwise the needle (k 2); reach's (0, 0) pair stays (0, 0).
    scene_yaw_noise_deg: float = 0.0
    # The scene input from the image instead (needs scene_dim): a locator with its own encoder (as
    # goal_encoder's) learns the simulator's summary (L1, normalised, weight `scene_loss_weight`)
    # while the action head trains on the true values (+ scene_noise_m); at inference the locator's
    # estimate from the episode's first image is kept for the episode and nothing from the simulator
    # is needed.
    scene_locator: bool = False
    scene_loss_weight: float = 1.0
    # The locator learns from each episode's first frames only (16: the first second, the tool at most
    # 24 mm along its way down): later ones show the tool over the objects or the needle lifted away
    # from where the summary (taken at reset) says it is; the locator trained on every frame placed
    # the needle 9.5 mm off (median, step 10000 of the bundled recipe).
    scene_locator_frames: int = 16
    # The locator also looks at a window of this many pixels around its anchor keypoint at full
    # resolution (policies/vla/encoder_surgvla.py; trained by `surgbot policy train-locator`, whose
    # anchor loss puts that keypoint on the grasp point): the needle's direction is a few pixels of
    # wire.  0: no window (checkpoints made before it load unchanged).
    scene_locator_glimpse_px: int = 0
    # The glimpse reads the crop resized to this many times image_size (bilinear; none where the frame's
    # crop already has that size) instead of the encoder's image: at 96x128 a pixel is 2.1-3.7 mm of
    # the pad and the 5 mm block 2 pixels, so its yaw (5.5 deg median error) and centre (0.9 mm) were
    # at the pixels' limit.  2.5 with frame_size 240x320 (the twin's view): the crop at full size.
    scene_locator_glimpse_scale: float = 1.0
    # Inference only: the first image's estimate averaged over the image shifted by every whole pixel
    # (dx, dy) up to this many ((2n+1)^2 locator passes, once per episode; Locator.averaged).  Why: the
    # locator trained on shifted images errs by a different fraction of a pixel at each shift; with 2
    # the block's grasp point went from 0.94 to 0.58 mm off (median, 30 validation layouts, locator
    # "L2" of policies/vla/README.md), but validation success did not move (README, "The jaws square
    # to the block").  0: the one image as it is (the bundled checkpoint's).
    scene_locator_average_px: int = 0
    # More locators of the same shape whose estimates are averaged with scene_locator's (`policy
    # join-locator` with several --locator-from; the (cos, sin) yaw pair rescaled to the members' mean
    # length).  Two finer-glimpse locators trained alike but for their seed: the block 0.65 mm off
    # against 0.74 and 0.77 (median, 120 validation layouts), peg_transfer 77 of 120 against 70 with
    # the first alone (policies/vla/README.md, "Two locators averaged").  0: one locator.
    scene_locator_extra: int = 0
    # Also give the action head the scene's two positions relative to the tool (grasp - tool, place -
    # tool; action units): the motion to make, instead of two absolute points its MLP must subtract to
    # millimetres (peg_transfer with the true summary grasped 3.5 mm off the block's centre; the block
    # allows ~2 mm).  False: the summary alone (as the first bound was measured).
    scene_relative: bool = False
    # Each chunk step's position also as an offset from the scene's grasp and place points, mixed with
    # the tool-relative one by learnt per-step weights (policies/vla/anchored_surgvla.py): a grasp is
    # then a near-constant offset from the located block instead of a long regressed motion.  Needs
    # scene_dim.  False: positions are offsets from the tool only (every checkpoint before it).
    scene_anchored: bool = False
    # With scene_anchored, the rotation also mixes in anchors: the jaws-down rotation at the object's
    # yaw (per orientation symmetry, the one nearest the tool's yaw; anchored_surgvla.py), from the
    # world's x and y axes in the actions' frame, `scene_world_axes` (6 numbers; `policy train` reads
    # them from the twin).  Why: told the block's yaw, the head closed its jaws 1.5-35 deg off the
    # block's faces.  False: the rotation is an offset from the tool's only.
    scene_anchored_yaw: bool = False
    scene_world_axes: list[float] | None = None
    # The jaw command as an absolute value instead of an offset from the measured jaw.  Why: the
    # experts' jaw is piecewise constant (open 1.3 or 0.9, squeeze 0.05), and an offset from the
    # measured jaw has a fixed point wherever the head says "about zero": the offset head stopped
    # closing at 0.19 rad on the block and 0.11 rad on the needle.  (That alone does not lose the
    # block, and with the simulator's summary it moved peg_transfer only 21 -> 24 of 40 validation
    # layouts: policies/vla/README.md, "The jaw and the grasp height".)  False: an offset from the
    # measured jaw (every checkpoint before it).
    jaw_absolute: bool = False

    # Instructions seen in training (filled from the dataset's task table at
    # construction); the server reports them in `metadata`.
    known_instructions: list[str] = field(default_factory=list)

    optimizer_lr: float = 3e-4
    optimizer_weight_decay: float = 1e-4
    optimizer_grad_clip_norm: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        if self.n_obs_steps != 1:
            raise ValueError(f"surgvla uses one observation step, got n_obs_steps={self.n_obs_steps}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(f"n_action_steps must be in 1..chunk_size={self.chunk_size}, got {self.n_action_steps}")
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size must be (height, width) >= 16 px, got {self.image_size}")
        if self.crop is not None:
            self.crop = check_crop(self.crop)
        if self.frame_size is not None:
            size = tuple(self.frame_size)
            if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in size):
                raise ValueError(f"frame_size must be None or (height, width) ints >= 16, got {self.frame_size!r}")
            self.frame_size = size
        if not self.conv_channels:
            raise ValueError("conv_channels must name at least one block")
        check_keypoint_stride(self.keypoint_stride, len(self.conv_channels))
        if not (math.isfinite(self.goal_loss_weight) and self.goal_loss_weight >= 0):
            raise ValueError(f"goal_loss_weight must be finite and >= 0, got {self.goal_loss_weight}")
        if self.normalization_eps <= 0:
            raise ValueError("normalization_eps must be > 0")
        if self.goal_memory_chunks < 0:
            raise ValueError(f"goal_memory_chunks must be >= 0, got {self.goal_memory_chunks}")
        if not (math.isfinite(self.goal_memory_radius_m) and self.goal_memory_radius_m >= 0):
            raise ValueError(f"goal_memory_radius_m must be finite and >= 0, got {self.goal_memory_radius_m}")
        if self.goal_memory_max_jaw_rad is not None and not math.isfinite(self.goal_memory_max_jaw_rad):
            raise ValueError(f"goal_memory_max_jaw_rad must be finite or None, got {self.goal_memory_max_jaw_rad}")
        if self.goal_encoder and not self.goal_loss_weight > 0:
            raise ValueError("goal_encoder needs goal_loss_weight > 0 (the goal loss is all that trains it)")
        if self.goal_target not in GOAL_TARGETS:
            raise ValueError(f"goal_target must be one of {GOAL_TARGETS}, got {self.goal_target!r}")
        if not (math.isfinite(self.grasp_jaw_rad) and self.grasp_jaw_rad > 0):
            raise ValueError(f"grasp_jaw_rad must be finite and > 0, got {self.grasp_jaw_rad}")
        if isinstance(self.scene_dim, bool) or self.scene_dim not in (0, SCENE_DIM):
            raise ValueError(f"scene_dim must be 0 (no scene input) or {SCENE_DIM}, got {self.scene_dim!r}")
        if not (math.isfinite(self.scene_noise_m) and self.scene_noise_m >= 0):
            raise ValueError(f"scene_noise_m must be finite and >= 0, got {self.scene_noise_m}")
        if not (math.isfinite(self.scene_yaw_noise_deg) and 0 <= self.scene_yaw_noise_deg <= MAX_YAW_NOISE_DEG):
            raise ValueError(f"scene_yaw_noise_deg must be in 0..{MAX_YAW_NOISE_DEG}, got {self.scene_yaw_noise_deg}")
        if self.scene_yaw_noise_deg and not self.scene_dim:
            raise ValueError("scene_yaw_noise_deg needs scene_dim (the summary it turns)")
        if self.scene_relative and not self.scene_dim:
            raise ValueError("scene_relative needs scene_dim")
        if self.scene_anchored and not self.scene_dim:
            raise ValueError("scene_anchored needs scene_dim (its anchors are the scene's points)")
        if self.scene_anchored_yaw and not self.scene_anchored:
            raise ValueError("scene_anchored_yaw needs scene_anchored")
        if self.scene_anchored_yaw or self.scene_world_axes is not None:
            _check_world_axes(self.scene_world_axes, self.scene_anchored_yaw)
        if self.scene_locator and not self.scene_dim:
            raise ValueError("scene_locator needs scene_dim (it learns the scene summary)")
        if isinstance(self.scene_locator_frames, bool) or not (
                isinstance(self.scene_locator_frames, int) and self.scene_locator_frames >= 1):
            raise ValueError(f"scene_locator_frames must be an int >= 1, got {self.scene_locator_frames!r}")
        if isinstance(self.scene_locator_glimpse_px, bool) or not (
                isinstance(self.scene_locator_glimpse_px, int) and 0 <= self.scene_locator_glimpse_px <= min(
                    self.image_size)):
            raise ValueError(f"scene_locator_glimpse_px must be an int in 0..{min(self.image_size)} (the encoder's "
                             f"image), got {self.scene_locator_glimpse_px!r}")
        average = self.scene_locator_average_px
        if isinstance(average, bool) or not (isinstance(average, int) and 0 <= average <= MAX_AVERAGE_PX):
            raise ValueError(f"scene_locator_average_px must be an int in 0..{MAX_AVERAGE_PX}, got "
                             f"{self.scene_locator_average_px!r}")
        extra = self.scene_locator_extra
        if isinstance(extra, bool) or not (isinstance(extra, int) and 0 <= extra <= MAX_EXTRA_LOCATORS):
            raise ValueError(f"scene_locator_extra must be an int in 0..{MAX_EXTRA_LOCATORS}, got {extra!r}")
        if extra and not self.scene_locator:
            raise ValueError("scene_locator_extra needs scene_locator")
        if self.scene_locator_glimpse_px and not self.scene_locator:
            raise ValueError("scene_locator_glimpse_px needs scene_locator")
        scale = self.scene_locator_glimpse_scale
        if isinstance(scale, bool) or not (isinstance(scale, int | float) and math.isfinite(scale)
                                           and 1.0 <= scale <= MAX_GLIMPSE_SCALE):
            raise ValueError(f"scene_locator_glimpse_scale must be a number in 1..{MAX_GLIMPSE_SCALE}, got {scale!r}")
        if scale != 1.0 and not self.scene_locator_glimpse_px:
            raise ValueError("scene_locator_glimpse_scale needs scene_locator_glimpse_px (a glimpse to read finer)")
        if scale != 1.0 and self.scene_locator_average_px:
            raise ValueError("scene_locator_average_px shifts the encoder's image only: not with a "
                             "scene_locator_glimpse_scale other than 1")
        if not (math.isfinite(self.scene_loss_weight) and self.scene_loss_weight > 0):
            raise ValueError(f"scene_loss_weight must be finite and > 0, got {self.scene_loss_weight}")

    @property
    def scene_input_dim(self) -> int:
        """Width of the action head's scene input: the summary, plus its positions relative to the tool."""
        return self.scene_dim + (3 * len(SCENE_POSITIONS) if self.scene_dim and self.scene_relative else 0)

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, weight_decay=self.optimizer_weight_decay,
                           grad_clip_norm=self.optimizer_grad_clip_norm)

    def get_scheduler_preset(self) -> None:
        return None

    def validate_features(self) -> None:
        """The contract-9 features: the endoscope video, a 10-d state and a 10-d action."""
        missing = [k for k in (IMAGE_KEY, STATE_KEY) if k not in (self.input_features or {})]
        if ACTION_KEY not in (self.output_features or {}):
            missing.append(ACTION_KEY)
        if missing:
            raise ValueError(f"surgvla needs the features {missing} (contract section 9)")
        for key, ft in ((STATE_KEY, self.input_features[STATE_KEY]), (ACTION_KEY, self.output_features[ACTION_KEY])):
            if tuple(ft.shape) != (POSE_DIM,):
                raise ValueError(f"{key} must have shape ({POSE_DIM},) (contract section 7), got {tuple(ft.shape)}")
        shape = tuple(self.input_features[IMAGE_KEY].shape)
        if len(shape) != 3 or shape[0] != 3:
            raise ValueError(f"{IMAGE_KEY} must be a 3-channel image (C, H, W), got {shape}")

    @property
    def observation_delta_indices(self) -> None:
        return None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None


WORLD_AXES_TOLERANCE = 1e-3     # how far from unit length and orthogonal the two saved axes may be


def _check_world_axes(axes, needed: bool) -> None:
    """`scene_world_axes`: the world's x and y axes, 3 numbers each, unit and orthogonal."""
    if axes is None:
        if needed:
            raise ValueError("scene_anchored_yaw needs scene_world_axes (6 numbers: the world's x and y axes "
                             "in the actions' frame)")
        return
    try:
        v = [float(a) for a in axes]
    except (TypeError, ValueError):
        raise ValueError(f"scene_world_axes must be 6 numbers, got {axes!r}") from None
    if len(v) != 6 or not all(math.isfinite(a) for a in v):
        raise ValueError(f"scene_world_axes must be 6 finite numbers, got {axes!r}")
    x, y = v[:3], v[3:]
    dot = sum(a * b for a, b in zip(x, y, strict=True))
    if (abs(math.hypot(*x) - 1) > WORLD_AXES_TOLERANCE or abs(math.hypot(*y) - 1) > WORLD_AXES_TOLERANCE
            or abs(dot) > WORLD_AXES_TOLERANCE):
        raise ValueError(f"scene_world_axes must be two unit, orthogonal axes, got {axes!r}")
